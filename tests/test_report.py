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
    assert "<script" not in html and "@import" not in html
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
    assert html.index("DOC007") < html.index("AUD001") < html.index("Headline")
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
