"""The report is one self-contained HTML file that survives missing optional sections."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from tunewise.core.errors import InputError
from tunewise.report.html import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_SRC = re.compile(r"<img[^>]*\ssrc=\"([^\"]*)\"")


def _metrics(n_labels: int = 5) -> dict:
    labels = [f"label_{i}" for i in range(n_labels)]
    cm = [
        [10 if i == j else (3 if j == (i + 1) % n_labels else 0) for j in range(n_labels)]
        for i in range(n_labels)
    ]
    return {
        "task": "classification",
        "name": "toy-run",
        "test_size": 65 * n_labels,
        "labels": labels,
        "baseline_name": "linear_probe",
        "baseline": {
            "accuracy": 0.8123,
            "macro_f1": 0.8011,
            "macro_precision": 0.81,
            "macro_recall": 0.8,
        },
        "baselines": {
            "zero_shot": {"accuracy": 0.4042, "macro_f1": 0.3815},
            "linear_probe": {"accuracy": 0.8123, "macro_f1": 0.8011},
        },
        "tuned": {
            "accuracy": 0.9234,
            "macro_f1": 0.9187,
            "macro_precision": 0.92,
            "macro_recall": 0.91,
        },
        "delta": {
            "accuracy": 0.1111,
            "macro_f1": 0.1176,
            "macro_precision": 0.11,
            "macro_recall": 0.11,
        },
        "ci95": {"accuracy": [0.0811, 0.1402], "macro_f1": [0.0855, 0.1490]},
        "significance": {
            "test": "mcnemar_exact",
            "b": 4,
            "c": 40,
            "p_value": 2.5e-08,
            "bootstrap_resamples": 1000,
        },
        "per_class": [
            {
                "label": lab,
                "precision": 0.9,
                "recall": 0.8 + 0.2 * i / n_labels,
                "f1": 0.7 + 0.3 * i / n_labels,
                "support": 13,
            }
            for i, lab in enumerate(labels)
        ],
        "confusion_matrix": cm,
        "parameters": {"trainable": 22713216, "total": 22713216, "percent": 100.0},
        "training": {
            "steps": 1970,
            "epochs": 7,
            "seconds": 780.5,
            "stopped_early": False,
            "precision": "bf16",
        },
        "validation": {"source": "split", "size": 1000},
    }


def _history() -> list[dict]:
    rows = [
        {"step": s, "epoch": s / 100, "split": "train", "loss": 3.0 / (1 + s / 20), "lr": 1e-4}
        for s in range(20, 201, 20)
    ]
    rows += [
        {"step": 100, "split": "validation", "loss": 0.9, "accuracy": 0.8, "macro_f1": 0.78},
        {"step": 200, "split": "validation", "loss": 0.6, "accuracy": 0.9},
    ]
    return rows


def _run_dir(tmp_path: Path, metrics: dict, history: list[dict] | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = {"task": "classification", "model": {"name": "all-MiniLM-L6-v2"}, "lr": 1e-4}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.json").write_text(json.dumps(metrics))
    lines = [json.dumps(r) for r in (history if history is not None else _history())]
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _check_self_contained(html: str) -> list[str]:
    """Every image is an inline PNG and nothing points at the network; returns image URIs."""
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"(href|src)=\"(?!data:|#)", html)
    assert "<script src" not in html and "@import" not in html  # inline script only
    sources = IMG_SRC.findall(html)
    for src in sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :], validate=True).startswith(PNG_MAGIC)
    return sources


def test_full_report(tmp_path):
    run = _run_dir(tmp_path, _metrics())
    out = write_report(run)
    assert out == run / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")
    for text in (
        "toy-run",
        "classification",
        "325",
        "linear_probe",
        "zero_shot",
        "0.8123",
        "0.8011",
        "0.9234",
        "0.9187",
        "+0.1111",
        "+0.0811",
        "+0.1402",
        "2.5e-08",
        "significantly better",
        "22,713,216",
        "bf16",
        "all-MiniLM-L6-v2",
    ):
        assert text in html, text
    assert len(_check_self_contained(html)) == 3  # curves, confusion, per-class
    assert "label_4" in html and "Most confused pairs" in html


def test_large_confusion_matrix_omits_ticks_and_lists_pairs(tmp_path):
    metrics = _metrics(77)
    metrics["confusion_matrix"][5][9] = 7  # the worst confusion must come first
    html = write_report(_run_dir(tmp_path, metrics)).read_text(encoding="utf-8")
    assert len(_check_self_contained(html)) == 3
    assert "77 classes: tick labels omitted" in html
    pairs = html.split("Most confused pairs")[1].split("</table>")[0]
    assert pairs.count("<tr>") == 11  # header + top 10
    first = pairs.split("<tr>")[2]
    assert "label_5</td><td>label_9</td>" in first and ">7<" in first


def test_findings_are_shown_first_and_escaped(tmp_path):
    run = _run_dir(tmp_path, _metrics())
    audit = [
        {
            "code": "AUD001",
            "severity": "warning",
            "message": "label <b>skew</b>",
            "remedy": "rebalance",
            "evidence": {"share": 0.4},
        }
    ]
    doctor = [
        {
            "code": "DOC007",
            "severity": "error",
            "message": "test rows leak into train",
            "remedy": "dedupe the splits",
            "evidence": "12 overlapping rows",
        }
    ]
    (run / "audit.json").write_text(json.dumps(audit))
    (run / "doctor.json").write_text(json.dumps(doctor))
    html = write_report(run).read_text(encoding="utf-8")
    _check_self_contained(html)
    box = html.split('<section id="verdict"')[1].split("</section>")[0]
    assert "Do not ship" in box and box.index("DOC007") < box.index("AUD001")  # errors first
    assert 'href="#finding-DOC007"' in box and 'id="finding-DOC007"' in html
    assert html.index('id="verdict"') < html.index("Headline") < html.index('id="findings"')
    assert "dedupe the splits" in html and "12 overlapping rows" in html
    assert "&lt;b&gt;skew&lt;/b&gt;" in html and "<b>skew</b>" not in html


def test_verdicts(tmp_path):
    metrics = _metrics()
    metrics["significance"]["p_value"] = 0.4
    html = write_report(_run_dir(tmp_path, metrics)).read_text(encoding="utf-8")
    assert "not significantly different (p=0.400)" in html
    metrics["delta"]["accuracy"] = -0.05
    metrics["significance"]["p_value"] = 0.001
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "significantly worse" in html


def test_minimal_metrics_skip_optional_sections(tmp_path):
    metrics = {"task": "classification", "name": "bare", "tuned": {"accuracy": 0.5}}
    run = _run_dir(tmp_path, metrics, history=[])
    (run / "config.yaml").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert _check_self_contained(html) == []
    assert "bare" in html and "0.5000" in html
    for section in (
        "Confusion matrix",
        "Per-class F1",
        "Learning curves",
        "Resolved config",
        "Training summary",
        "Findings",
    ):
        assert section not in html, section


def test_partial_history_and_bad_lines(tmp_path):
    history = [{"step": 10, "split": "train", "loss": 1.0}, {"step": 20, "split": "train"}]
    run = _run_dir(tmp_path, _metrics(), history=history)
    with (run / "history.jsonl").open("a") as fh:
        fh.write('{"step": 30, "split": "tra')  # truncated by a crash
    html = write_report(run).read_text(encoding="utf-8")
    assert len(_check_self_contained(html)) == 3
    assert "1 unreadable line(s)" in html


def test_missing_metrics_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="metrics.json"):
        write_report(tmp_path)


def _decision(html: str) -> str:
    return html.split('<section id="verdict" class="decision ')[1].split('"')[0]


def test_the_verdict_box_weighs_significance_and_findings(tmp_path):
    run = _run_dir(tmp_path, _metrics())
    html = write_report(run).read_text(encoding="utf-8")
    assert _decision(html) == "ship" and ">Ship<" in html  # significant gain, no findings
    warning = {"code": "slice-gap", "severity": "warning", "message": "short texts lag"}
    (run / "doctor.json").write_text(json.dumps([warning]))
    html = write_report(run).read_text(encoding="utf-8")
    assert _decision(html) == "care" and "Ship with care" in html and "1 warning need" in html
    metrics = _metrics()
    metrics["significance"]["p_value"] = 0.3
    metrics["ci95"]["accuracy"] = [-0.01, 0.2]
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(run).read_text(encoding="utf-8")
    assert _decision(html) == "no" and "not shown to beat linear_probe" in html
    metrics["significance"]["p_value"] = 0.01  # the test says yes, the CI says no
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "doctor.json").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert _decision(html) == "care" and "disagree" in html
    bare = {"task": "classification", "name": "bare", "tuned": {"accuracy": 0.5}}
    (run / "metrics.json").write_text(json.dumps(bare))
    html = write_report(run).read_text(encoding="utf-8")
    assert _decision(html) == "care" and "no significance test" in html


def test_a_finding_both_checks_raise_is_shown_once(tmp_path):
    run = _run_dir(tmp_path, _metrics())
    leak = {"code": "leakage", "severity": "warning", "message": "3 test rows leak", "remedy": "x"}
    noise = {"code": "label-noise", "severity": "info", "message": "60 rows look wrong"}
    audit = [leak, noise, {**leak, "code": "duplicate", "message": "repeats in a.csv"}]
    audit.append({**leak, "code": "duplicate", "message": "repeats in b.csv"})
    doctor = [leak, {**noise, "severity": "warning", "message": "5% of labels look wrong"}]
    (run / "audit.json").write_text(json.dumps(audit))
    (run / "doctor.json").write_text(json.dumps(doctor))
    html = write_report(run).read_text(encoding="utf-8")
    findings = html.split('<section id="findings">')[1].split("</section>")[0]
    assert findings.count('class="finding ') == 4  # leakage and label-noise once each
    assert findings.count("3 test rows leak") == 1 and "(found by audit and doctor)" in findings
    assert "5% of labels look wrong" in findings  # the doctor's other wording is kept
    assert 'class="finding warning" id="finding-label-noise"' in findings  # the worse severity
    assert 'id="finding-duplicate"' in findings and 'id="finding-duplicate-2"' in findings
    assert "Findings (4)" in html


def test_per_class_table_has_baseline_deltas_and_sorts(tmp_path):
    metrics = _metrics()
    metrics["baseline_per_class"] = [{**r, "f1": 0.8} for r in metrics["per_class"]]
    html = write_report(_run_dir(tmp_path, metrics)).read_text(encoding="utf-8")
    table = html.split('<table id="per-class-table"')[1].split("</table>")[0]
    assert "baseline F1" in table and "Δ F1" in table
    assert table.index("label_0") < table.index("label_4")  # worst tuned F1 first
    assert 'data-v="-0.1000' in table and ">-0.100<" in table  # label_0: 0.8 -> 0.7
    assert "better on <strong>3</strong>" in html and "worse on <strong>2</strong>" in html
    assert "aria-sort" in table and "<script>" in html


def test_resolved_config_shows_only_what_applies(tmp_path):
    run = _run_dir(tmp_path, _metrics())
    config = {
        "task": "classification",
        "data": {"train": "t.csv", "pair_cols": ["q", "a", "b"]},
        "adapt": {"method": "freeze", "lora": {"r": 8}},
        "sft": {"packing": True},
        "tune": {"trials": 20},
        "doctor": {"alpha": 0.01},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    html = write_report(run).read_text(encoding="utf-8")
    shown = html.split('<section id="config">')[1].split("</section>")[0]
    pre = shown.split("<pre>")[1]
    assert "train: t.csv" in pre and "freeze" in pre and "alpha: 0.01" in pre
    for gone in ("sft:", "tune:", "pair_cols", "lora:"):
        assert gone not in pre, gone
    assert "Left out: sft, tune, data.pair_cols, adapt.lora (adapt.method is freeze)" in shown
    assert "p = 2.5e-08" in html and _decision(html) == "ship"  # below doctor.alpha too


def test_the_sft_report_gets_the_same_verdict_box(tmp_path):
    from tunewise.report.sft_html import write_sft_report

    scores = {"rougeL": 0.21, "bleu": 4.0, "chrf": 20.0, "exact_match": 0.0, "perplexity": 9.0}
    tuned = {**scores, "rougeL": 0.35, "perplexity": 5.0, "exact_match_rows": 3}
    metrics = {
        "task": "causal_lm",
        "name": "sft",
        "test_size": 40,
        "test_source": "held-out",
        "baselines": {"untuned": scores},
        "baseline_name": "untuned",
        "tuned": tuned,
        "delta": {k: tuned[k] - v for k, v in scores.items()},
        "ci95": {"rougeL": [0.08, 0.2]},
        "significance": {"test": "paired_randomization", "p_value": 0.002},
    }
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = {"task": "causal_lm", "sft": {"packing": True}, "tune": {"trials": 3}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    forgetting = {"code": "forgetting", "severity": "warning", "message": "perplexity doubled"}
    (run / "doctor.json").write_text(json.dumps([forgetting]))
    html = write_sft_report(run).read_text(encoding="utf-8")
    _check_self_contained(html)
    assert _decision(html) == "care" and "significantly better than untuned" in html
    assert "rougeL +0.1400" in html and 'href="#finding-forgetting"' in html
    assert html.index('id="verdict"') < html.index('id="headline"') < html.index('id="findings"')
    assert "packing: true" in html and "Left out: tune" in html
