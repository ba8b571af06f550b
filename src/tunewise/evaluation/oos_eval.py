"""Out-of-scope evaluation of a run (`eval.oos`), glued to its model and data: metrics.json's
"oos" section and the detector serve abstains by (RUN_DIR/oos.json).

The tuned model and the linear-probe baseline are scored alike: each method's scorer is fitted
on in-scope training rows, its threshold on validation rows (in-scope coverage, or Youden's J
with out-of-scope examples from validation and train), and only then are the test rows scored.

    doc = tuned_oos(cfg, model, tokenizer, bf16, temperature, labels, test, test_oos, run_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.device import uses_bf16
from tunewise.core.errors import InputError
from tunewise.data import curate
from tunewise.data.encode import encode
from tunewise.data.load import Examples, read_examples
from tunewise.data.validate import Splits, load_splits, split_out_oos
from tunewise.evaluation import analyses, oos
from tunewise.models.features import logits_and_features
from tunewise.models.load import load_trained_classifier


def threshold_examples(splits: Splits) -> Examples | None:
    """Out-of-scope rows the threshold may be chosen on: validation's and train's (the model
    never trains on them), never test's."""
    parts = [splits.oos[k] for k in ("validation", "train") if k in splits.oos]
    return curate.concat_all(parts) if parts else None


def run_rows(cfg: Any, labels: list[str]) -> tuple[Examples, np.ndarray, Examples, Examples | None]:
    """The run's in-scope training rows with class ids, its validation rows and the
    out-of-scope rows for the threshold, read and prepared as the run read them."""
    splits = load_splits(cfg.data, cfg.seed, oos_label=cfg.eval.oos_label())
    index = {label: i for i, label in enumerate(labels)}

    def known(ex: Examples) -> Examples:
        return curate.prepare_text(
            cfg, ex.subset([i for i, x in enumerate(ex.labels) if x in index])
        )

    train, validation = known(splits.train), known(splits.validation)
    extra = threshold_examples(splits)
    extra = curate.prepare_text(cfg, extra) if extra is not None and len(extra) else None
    return train, np.array([index[x] for x in train.labels]), validation, extra


def tuned_oos(
    cfg: Any,
    model: Any,
    tokenizer: Any,
    bf16: bool,
    temperature: float | None,
    labels: list[str],
    test: Examples,
    test_oos: Examples | None,
    run_dir: Path | None,
) -> dict[str, Any] | None:
    """metrics.json's "oos" section for the tuned model; with `run_dir`, the configured
    method's detector is saved there for serving. None when eval.oos is off."""
    o = cfg.eval.oos
    if o is None:
        return None
    try:
        train, train_y, validation, threshold_oos = run_rows(cfg, labels)
    except InputError as exc:
        return {"note": f"training or validation rows unavailable: {exc}"}

    def outputs(ex: Examples | None) -> oos.Outputs | None:
        if ex is None or not len(ex):
            return None
        data = encode(tokenizer, ex.texts, None, cfg.model.max_length)
        return oos.Outputs(*logits_and_features(model, data, cfg.eval.batch_size, bf16))

    test_y = np.array([labels.index(x) for x in test.labels])
    tr, va, te = _required(outputs(train), outputs(validation), outputs(test))
    reports, detectors = oos.compare_methods(
        tr,
        train_y,
        va,
        outputs(threshold_oos),
        te,
        test_y,
        outputs(test_oos),
        coverage=o.coverage,
        k=o.k,
        temperature=temperature or 1.0,
    )
    if run_dir is not None:
        oos.save_detector(detectors[o.method], run_dir, label=o.label, coverage=o.coverage)
    doc = section(cfg, reports, len(train), len(validation), threshold_oos, len(test), test_oos)
    _log(doc)
    return doc


def refit(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Fit and save RUN_DIR/model's detector again from `cfg`'s data (after `refine` swapped
    the model): the same rows, temperature and threshold rules as `evaluate`."""
    from transformers import AutoTokenizer

    model = load_trained_classifier(run_dir / rundir.MODEL)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / rundir.MODEL)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    bf16 = uses_bf16(cfg.train.precision, model)
    d = cfg.data
    rows, problems = read_examples(d.test, d.text_col, d.label_col, field="data.test")
    if problems:
        raise InputError(problems)
    test, test_oos = split_out_oos(curate.prepare_text(cfg, rows), cfg.eval.oos_label())
    test = test.subset([i for i, x in enumerate(test.labels) if x in labels])
    fitted = analyses.validation_temperature(cfg, model, tokenizer, labels, bf16)
    temperature = analyses.temperature_of(fitted)
    doc = tuned_oos(cfg, model, tokenizer, bf16, temperature, labels, test, test_oos, run_dir)
    return doc or {}


def _required(train, validation, test) -> tuple[oos.Outputs, oos.Outputs, oos.Outputs]:
    assert train is not None and validation is not None and test is not None
    return train, validation, test


def section(
    cfg: Any,
    reports: dict[str, dict],
    n_train: int,
    n_validation: int,
    threshold_oos: Examples | None,
    n_test: int,
    test_oos: Examples | None,
) -> dict[str, Any]:
    """The "oos" section: settings, row counts and one report per method."""
    o = cfg.eval.oos
    return {
        "label": o.label,
        "method": o.method,
        "coverage": o.coverage,
        "threshold_from": "youden" if threshold_oos is not None else "coverage",
        "rows": {
            "train": n_train,
            "validation": n_validation,
            "threshold_oos": len(threshold_oos) if threshold_oos is not None else 0,
            "test": n_test,
            "test_oos": len(test_oos) if test_oos is not None else 0,
        },
        "methods": reports,
    }


def probe_oos(
    cfg: Any,
    probe: Any,
    emb: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    oos_emb: dict[str, np.ndarray],
) -> dict[str, Any] | None:
    """The same section for the linear-probe baseline: its logits and its head input (the
    untuned encoder's embeddings). `oos_emb` holds "threshold" and "test" embeddings."""
    o = cfg.eval.oos
    if o is None:
        return None

    def outputs(x: np.ndarray | None) -> oos.Outputs | None:
        return oos.Outputs(probe_logits(probe, x), x) if x is not None and len(x) else None

    tr, va, te = _required(outputs(emb["train"]), outputs(emb["validation"]), outputs(emb["test"]))
    reports, _ = oos.compare_methods(
        tr,
        y["train"],
        va,
        outputs(oos_emb.get("threshold")),
        te,
        y["test"],
        outputs(oos_emb.get("test")),
        coverage=o.coverage,
        k=o.k,
    )
    return {"methods": reports}


def probe_logits(probe: Any, x: np.ndarray) -> np.ndarray:
    """Logistic regression's decision values as a row of logits per text (two columns for a
    binary probe, whose decision function is one number)."""
    d = probe.decision_function(x)
    return np.c_[np.zeros(len(d)), d] if d.ndim == 1 else d


def _log(doc: dict[str, Any]) -> None:
    m = doc["methods"].get(doc["method"], {})
    if "auroc" in m:
        console.log(
            f"out of scope ({doc['method']}): AUROC {m['auroc']:.3f}, FPR@95 "
            f"{m['fpr_at_95_recall']:.3f}, oos recall {m['oos_recall']:.3f} at the threshold"
        )
    elif m:
        console.log(
            f"out of scope ({doc['method']}): threshold answers {m['in_scope_answered']:.1%} of "
            "in-scope test rows; no out-of-scope test rows to measure detection on"
        )
