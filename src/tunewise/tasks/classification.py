"""Task `classification`: an encoder with a classification head (the customer-service case study).

Like every task module it exposes the functions `tunewise.pipeline` runs, in this order:
load_data → audit → prepare → baseline → train → evaluate, then write_report.

    splits = load_data(cfg)                       # every file checked; exit 2 before any model
    findings = audit(cfg, splits, run_dir)        # audit.json, audit.html
    cfg, splits = prepare(cfg, splits, run_dir)   # cleaned rows; a held-out test set is written
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console, step_progress
from tunewise.core.device import uses_bf16
from tunewise.core.errors import InputError, Problem
from tunewise.core.findings import Finding
from tunewise.data import curate
from tunewise.data.encode import encode
from tunewise.data.load import COLUMN_FLAGS, Examples, read_examples, write_examples
from tunewise.data.split import stratified_sample
from tunewise.data.validate import Splits, load_splits, split_out_oos
from tunewise.evaluation import analyses, oos_eval, summary
from tunewise.evaluation import baseline as base
from tunewise.evaluation.metrics import classification_metrics
from tunewise.evaluation.predict import predict_top
from tunewise.models import load as models
from tunewise.models.card import write_model_card
from tunewise.models.embed import embed
from tunewise.report import html
from tunewise.report.audit_html import write_audit
from tunewise.training.classifier import encode_split, train_classifier

NAME = "classification"
RESUMABLE = True  # `train --resume` continues exactly (tests/test_resume.py)


def load_data(cfg: RunConfig) -> Splits:
    """train, validation and test; without data.test a seeded stratified share is held out.
    Rows labelled eval.oos.label go to `splits.oos` (out-of-scope examples, never a class)."""
    return load_splits(cfg.data, cfg.seed, hold_out_test=True, oos_label=cfg.eval.oos_label())


def audit(cfg: RunConfig, splits: Splits, run_dir: Path) -> list[Finding]:
    """The data audit (duplicates, leakage, label noise, PII, ...): audit.json and audit.html."""
    findings, summary_ = curate.audit_splits(cfg, splits)
    write_audit(run_dir, findings, summary_)
    return findings


def prepare(cfg: RunConfig, splits: Splits, run_dir: Path | None) -> tuple[RunConfig, Splits]:
    """Clean, redact and dedup as `tunewise prepare` does, and name a held-out test split in the
    config; `run_dir` None (a second DDP process) writes nothing."""
    if splits.test_source == "held-out":
        cfg, splits = _held_out(cfg, splits, run_dir)
    return cfg, curate.prepare_splits(cfg, splits, run_dir)


def _held_out(cfg: RunConfig, splits: Splits, run_dir: Path | None) -> tuple[RunConfig, Splits]:
    """data/train.csv (every row but the test rows) and data/test.csv, named in config.yaml, so
    `evaluate`, a re-run and `refine` see exactly this split."""
    assert splits.test is not None
    d = cfg.data
    cols = (d.text_col, d.label_col)
    folder = (run_dir or cfg.run_dir()) / rundir.DATA
    train_path, test_path = str(folder / "train.csv"), str(folder / "test.csv")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, train=train_path, test=test_path))
    test = dataclasses.replace(splits.test, source=test_path)
    splits = dataclasses.replace(splits, test=test)
    if run_dir is None:
        return cfg, splits
    oos = splits.oos  # out-of-scope examples go back into the files they came from
    rest = [splits.train, oos.get("train")]
    if not d.validation:
        rest += [splits.validation, oos.get("validation")]
    write_examples(Path(train_path), curate.concat_all(rest), *cols)
    write_examples(Path(test_path), curate.concat_all([test, oos.get("test")]), *cols)
    rundir.dump_config(cfg, run_dir / rundir.CONFIG)
    console.log(
        f"[yellow]warning:[/] no test set given (data.test): held out a seeded stratified "
        f"{d.test_fraction:.0%} of {d.train} as the test set ({len(test)} rows, {test_path}); "
        "give a test file of your own to prove the model on"
    )
    return cfg, splits


def baseline(cfg: RunConfig, splits: Splits, run_dir: Path) -> dict:
    """Zero-shot and linear-probe baselines of the untuned encoder, on the same test rows."""
    assert splits.test is not None
    m = cfg.model
    tokenizer = models.load_tokenizer(m.name, m.trust_remote_code)
    encoder = models.load_encoder(m.name, m.trust_remote_code, m.allow_unsafe_weights)
    bf16 = uses_bf16(cfg.train.precision, encoder)
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    batch = cfg.eval.batch_size
    label_texts = [base.label_text(x) for x in splits.labels]
    rows = sum(len(ex) for ex in parts.values()) + len(label_texts)
    with step_progress("baseline: untuned encoder", rows) as advance:  # all splits, labels
        emb = {
            name: embed(
                encoder, encode_split(tokenizer, ex, splits, m.max_length), batch, bf16, advance
            )
            for name, ex in parts.items()
        }
        label_data = encode(tokenizer, label_texts, None, m.max_length)
        label_emb = embed(encoder, label_data, batch, bf16, advance)
    y = {name: np.array(splits.ids(ex)) for name, ex in parts.items()}
    zero = base.zero_shot(emb["test"], label_emb)
    probe_model, c = base.fit_probe(
        emb["train"], y["train"], emb["validation"], y["validation"], cfg.seed
    )
    probe = probe_model.predict(emb["test"])
    n = len(splits.labels)
    result: dict[str, Any] = {
        "test_size": len(splits.test),
        "test_source": splits.test.source,
        "zero_shot": {
            "predictions": zero.tolist(),
            "metrics": classification_metrics(y["test"], zero, n),
        },
        "linear_probe": {
            "predictions": probe.tolist(),
            "C": c,
            "metrics": classification_metrics(y["test"], probe, n),
            "oos": _probe_oos(cfg, splits, probe_model, emb, y, tokenizer, encoder, bf16),
        },
    }
    (run_dir / rundir.BASELINE).write_text(json.dumps(result))
    for name in ("zero_shot", "linear_probe"):
        console.log(f"baseline {name}: accuracy {result[name]['metrics']['accuracy']:.4f}")
    return result


def _probe_oos(cfg, splits, probe, emb, y, tokenizer, encoder, bf16) -> dict | None:
    """Out-of-scope scores of the linear probe (evaluation/oos_eval.py), on the same rows."""
    if cfg.eval.oos is None:
        return None
    m, batch = cfg.model, cfg.eval.batch_size
    parts = {"threshold": oos_eval.threshold_examples(splits), "test": splits.oos.get("test")}
    oos_emb = {
        name: embed(encoder, encode(tokenizer, ex.texts, None, m.max_length), batch, bf16)
        for name, ex in parts.items()
        if ex is not None and len(ex)
    }
    return oos_eval.probe_oos(cfg, probe, emb, y, oos_emb)


def train(cfg: RunConfig, splits: Splits, run_dir: Path, resume_from: Path | None = None) -> dict:
    """The one classifier training (training/classifier.py): model/ and training.json."""
    return train_classifier(cfg, splits, run_dir, resume_from=resume_from).summary


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    forgetting: bool = True,
    columns: Columns = (None, None),
) -> dict:
    """Score model/ on the test set (or `data`) against the baseline; slices, calibration,
    errors and forgetting; metrics.json and the model card. With `data`, that file's own
    metrics-<stem>.json and its page metrics-<stem>.html, read with `columns` (text, label;
    default the run's). `overrides` change the run's config for this evaluation only.

    `forgetting=False` keeps what the run measured: the encoder has not changed since, and the
    probe trains classifiers on general tasks (minutes on a CPU).
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    path = str(data) if data is not None else cfg.data.test
    if path is None:
        where = str(run_dir / rundir.CONFIG)
        fix = "pass --data FILE"
        raise InputError([Problem(where, None, "data.test", "no test set to evaluate on", fix)])
    model_dir = run_dir / rundir.MODEL
    model = models.load_trained_classifier(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    test = curate.prepare_text(cfg, _read_labelled(path, cfg, labels, columns, data is not None))
    if data is None and cfg.data.max_rows is not None:  # the seeded sample the baseline scored
        test = stratified_sample(test, cfg.data.max_rows, cfg.seed)
    test, test_oos = split_out_oos(test, cfg.eval.oos_label())
    y = np.array([labels.index(t) for t in test.labels])
    bf16 = uses_bf16(cfg.train.precision, model)
    fitted = analyses.validation_temperature(cfg, model, tokenizer, labels, bf16)
    with step_progress(f"evaluate: scoring {Path(path).name}", len(test)) as advance:
        top = predict_top(  # a few numbers a row: memory does not grow by a row of logits
            model,
            tokenizer,
            test.texts,
            cfg.model.max_length,
            cfg.eval.batch_size,
            bf16,
            analyses.temperature_of(fitted),
            advance=advance,
        )
    metrics = summary.metrics_document(run_dir, cfg, labels, y, top.pred, test)
    scored = analyses.Scored(test, y, top, labels, analyses.text_tokens(tokenizer, top.lengths))
    metrics["slices"] = analyses.slices(cfg.eval, scored)
    metrics["calibration"] = analyses.calibration(scored, fitted)
    metrics["errors"] = analyses.errors(scored)
    metrics["forgetting"] = (
        analyses.forgetting(cfg, model.base_model, tokenizer, bf16)
        if forgetting
        else _measured_forgetting(run_dir)
    )
    detector_dir = run_dir if data is None else None  # the run's own test set: serve's detector
    temperature = analyses.temperature_of(fitted)
    found = oos_eval.tuned_oos(
        cfg, model, tokenizer, bf16, temperature, labels, test, test_oos, detector_dir
    )
    if found is not None:
        metrics["oos"] = {**found, "baseline": _baseline_oos(run_dir, metrics)}
    name = rundir.METRICS if data is None else f"metrics-{Path(path).stem}.json"
    (run_dir / name).write_text(json.dumps(metrics, indent=1))
    page = run_dir / rundir.REPORT  # `run` and `tunewise evaluate` write it after the doctor
    if data is None:  # the model card states the run's own test result
        write_model_card(run_dir, metrics)
    else:
        page = html.write_report(run_dir, name, Path(name).with_suffix(".html").name)
    summary.print_summary(metrics, page)
    return metrics


Columns = tuple[str | None, str | None]


def _baseline_oos(run_dir: Path, metrics: dict) -> dict | None:
    """The linear probe's out-of-scope section from baseline.json, when it scored these rows."""
    saved = run_dir / rundir.BASELINE
    doc = json.loads(saved.read_text()) if saved.exists() else {}
    if doc.get("test_size") != metrics["test_size"] or "baselines" not in metrics:
        return None
    return (doc.get("linear_probe") or {}).get("oos")


def _measured_forgetting(run_dir: Path) -> dict[str, Any]:
    """The forgetting probe as the run measured it (same encoder), or a note that it was not."""
    earlier = run_dir / rundir.METRICS
    doc = json.loads(earlier.read_text()).get("forgetting") if earlier.is_file() else None
    if not isinstance(doc, dict):
        return {"tasks": [], "mean_delta": None, "skipped": [],
                "note": "not measured: tunewise evaluate --forgetting measures it"}  # fmt: skip
    if doc.get("tasks"):
        doc["note"] = "as the run measured it (the encoder has not changed since)"
    return doc


def _read_labelled(
    path: str, cfg: RunConfig, labels: list[str], columns: Columns, flags: bool
) -> Examples:
    """The labelled rows to score; labels the model does not know are one summary problem."""
    text_col = columns[0] or cfg.data.text_col
    label_col = columns[1] or cfg.data.label_col
    ex, problems = read_examples(
        path,
        text_col,
        label_col,
        field="--data" if flags else "data.test",
        keep=cfg.eval.slice_cols,
        flags=COLUMN_FLAGS if flags else None,
    )
    oos_label = cfg.eval.oos_label()  # out-of-scope rows are split out after, never a class
    problems += unknown_labels(path, ex, labels, label_col, flags, also=oos_label)
    if problems:
        raise InputError(problems)
    return ex


def unknown_labels(
    path: str,
    ex: Examples,
    labels: list[str],
    label_col: str,
    flags: bool = True,
    also: str | None = None,
) -> list[Problem]:
    """One problem for all rows whose label the model was not trained on, not one per row:
    none known is most often the wrong column or another label set; some unknown, new classes.
    `also` is a label that is fine though not a class (the out-of-scope examples' label)."""
    known = set(labels)
    unknown = Counter(lab for lab in ex.labels if lab not in known and lab != also)
    if not unknown:
        return []
    ours = ", ".join(f"'{lab}'" for lab in sorted(known)[:3]) + (", ..." if len(known) > 3 else "")
    theirs = ", ".join(f"'{lab}' ({n})" for lab, n in unknown.most_common(5))
    theirs += f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    column = "--label-col" if flags else "data.label_col"
    if len(unknown) == len(set(ex.labels) - {also}):
        message = (
            f"none of your {len(unknown)} labels are among the model's {len(known)}: {theirs}; "
            f"the model knows {ours}"
        )
        fix = (
            f"check {column} names the column with these labels, or evaluate a run trained on them"
        )
        return [Problem(path, None, label_col, message, fix)]
    rows = sum(unknown.values())
    lines = [line for line, lab in zip(ex.lines, ex.labels, strict=True) if lab in unknown]
    message = (
        f"{rows} rows have labels the model does not know: {theirs} "
        f"(lines {', '.join(map(str, lines[:5]))}{', ...' if rows > 5 else ''})"
    )
    fix = "remove those rows, or retrain with examples of these labels"
    return [Problem(path, None, label_col, message, fix)]


def write_report(run_dir: str | Path) -> Path:
    """report.html: the headline, learning curves, confusion matrix and findings."""
    return html.write_report(Path(run_dir))
