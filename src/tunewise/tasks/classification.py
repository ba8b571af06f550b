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
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.device import uses_bf16
from tunewise.core.errors import InputError, Problem
from tunewise.core.findings import Finding
from tunewise.data import curate
from tunewise.data.encode import encode
from tunewise.data.load import Examples, read_examples, write_examples
from tunewise.data.split import stratified_sample
from tunewise.data.validate import Splits, load_splits
from tunewise.evaluation import analyses, summary
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
    """train, validation and test; without data.test a seeded stratified share is held out."""
    return load_splits(cfg.data, cfg.seed, hold_out_test=True)


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
    folder = (run_dir or cfg.run_dir()) / rundir.DATA
    train_path, test_path = str(folder / "train.csv"), str(folder / "test.csv")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, train=train_path, test=test_path))
    test = dataclasses.replace(splits.test, source=test_path)
    splits = dataclasses.replace(splits, test=test)
    if run_dir is None:
        return cfg, splits
    rest = splits.train if d.validation else curate.concat(splits.train, splits.validation)
    write_examples(Path(train_path), rest, d.text_col, d.label_col)
    write_examples(Path(test_path), test, d.text_col, d.label_col)
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
    console.log("baseline: embedding train, validation and test with the untuned encoder")
    m = cfg.model
    tokenizer = models.load_tokenizer(m.name, m.trust_remote_code)
    encoder = models.load_encoder(m.name, m.trust_remote_code, m.allow_unsafe_weights)
    bf16 = uses_bf16(cfg.train.precision, encoder)
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    batch = cfg.eval.batch_size
    emb = {
        name: embed(encoder, encode_split(tokenizer, ex, splits, m.max_length), batch, bf16)
        for name, ex in parts.items()
    }
    y = {name: np.array(splits.ids(ex)) for name, ex in parts.items()}
    label_texts = [base.label_text(x) for x in splits.labels]
    label_emb = embed(encoder, encode(tokenizer, label_texts, None, m.max_length), batch, bf16)
    zero = base.zero_shot(emb["test"], label_emb)
    probe, c = base.linear_probe(
        emb["train"], y["train"], emb["validation"], y["validation"], emb["test"], cfg.seed
    )
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
        },
    }
    (run_dir / rundir.BASELINE).write_text(json.dumps(result))
    for name in ("zero_shot", "linear_probe"):
        console.log(f"baseline {name}: accuracy {result[name]['metrics']['accuracy']:.4f}")
    return result


def train(cfg: RunConfig, splits: Splits, run_dir: Path, resume_from: Path | None = None) -> dict:
    """The one classifier training (training/classifier.py): model/ and training.json."""
    return train_classifier(cfg, splits, run_dir, resume_from=resume_from).summary


def evaluate(run_dir: str | Path, data: str | Path | None = None) -> dict:
    """Score model/ on the test set (or `data`) against the baseline; slices, calibration,
    errors and forgetting; metrics.json and the model card."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / rundir.CONFIG)
    path = str(data) if data is not None else cfg.data.test
    if path is None:
        where = str(run_dir / rundir.CONFIG)
        fix = "pass --data FILE"
        raise InputError([Problem(where, None, "data.test", "no test set to evaluate on", fix)])
    model_dir = run_dir / rundir.MODEL
    model = models.load_trained_classifier(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    test = curate.prepare_text(cfg, _read_labelled(path, cfg, labels))  # as trained
    if data is None and cfg.data.max_rows is not None:  # the seeded sample the baseline scored
        test = stratified_sample(test, cfg.data.max_rows, cfg.seed)
    y = np.array([labels.index(t) for t in test.labels])
    bf16 = uses_bf16(cfg.train.precision, model)
    fitted = analyses.validation_temperature(cfg, model, tokenizer, labels, bf16)
    top = predict_top(  # a few numbers a row: memory does not grow by a row of logits
        model,
        tokenizer,
        test.texts,
        cfg.model.max_length,
        cfg.eval.batch_size,
        bf16,
        analyses.temperature_of(fitted),
    )
    metrics = summary.metrics_document(run_dir, cfg, labels, y, top.pred, test)
    scored = analyses.Scored(test, y, top, labels, analyses.text_tokens(tokenizer, top.lengths))
    metrics["slices"] = analyses.slices(cfg.eval, scored)
    metrics["calibration"] = analyses.calibration(scored, fitted)
    metrics["errors"] = analyses.errors(scored)
    metrics["forgetting"] = analyses.forgetting(cfg, model.base_model, tokenizer, bf16)
    out = run_dir / (rundir.METRICS if data is None else f"metrics-{Path(path).stem}.json")
    out.write_text(json.dumps(metrics, indent=1))
    write_model_card(run_dir, metrics)
    summary.print_summary(metrics, run_dir)
    return metrics


def _read_labelled(path: str, cfg: RunConfig, labels: list[str]) -> Examples:
    ex, problems = read_examples(
        path, cfg.data.text_col, cfg.data.label_col, field="data.test", keep=cfg.eval.slice_cols
    )
    known = set(labels)
    problems += [
        Problem(
            path,
            line,
            cfg.data.label_col,
            f"label '{lab}' was not in training",
            "remove the row or retrain with examples of this label",
        )
        for line, lab in zip(ex.lines, ex.labels, strict=True)
        if lab not in known
    ]
    if problems:
        raise InputError(problems)
    return ex


def write_report(run_dir: str | Path) -> Path:
    """report.html: the headline, learning curves, confusion matrix and findings."""
    return html.write_report(Path(run_dir))
