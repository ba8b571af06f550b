"""The deeper analyses `tunewise evaluate` adds to metrics.json, glued to a run's model and data.

Accuracy with a CI says whether the tuned model is better on average; these say whether it is
safe to ship: `slices` (is some group served worse?), `calibration` (can its confidence be
trusted?), `errors` (which mistakes to read first) and `forgetting` (did it lose general
ability?). The maths lives in pure functions over numpy arrays (slices.py, calibration.py,
error_analysis.py, forgetting.py); this module only fetches what they need from the run. The
temperature is fitted before the test pass, which applies it as it goes (no test logits kept):

    fitted = validation_temperature(cfg, model, tokenizer, labels, bf16)
    top = predict_top(model, tokenizer, test.texts, 64, temperature=temperature_of(fitted))
    scored = Scored(test, y, top, labels, text_tokens(tokenizer, top.lengths))
    metrics["slices"] = slices(cfg.eval, scored)
    metrics["calibration"] = calibration(scored, fitted)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.core.console import console, step_progress
from tunewise.core.errors import InputError
from tunewise.data import sources
from tunewise.data.encode import encode
from tunewise.data.load import Examples
from tunewise.data.validate import load_splits
from tunewise.evaluation.calibration import calibration_report, fit_temperature
from tunewise.evaluation.error_analysis import error_report
from tunewise.evaluation.forgetting import forgetting_report
from tunewise.evaluation.predict import TopPredictions, predict_logits
from tunewise.evaluation.slices import LENGTH, length_buckets, slice_report
from tunewise.models.embed import text_embedder
from tunewise.models.load import load_encoder


@dataclass
class Scored:
    """The test rows and what the tuned model made of them."""

    test: Examples
    y: np.ndarray
    top: TopPredictions
    labels: list[str]
    token_counts: np.ndarray  # tokens per row, special tokens excluded, after truncation


def text_tokens(tokenizer: Any, lengths: np.ndarray) -> np.ndarray:
    """Text tokens per row: the encoded length minus [CLS]/[SEP]-style special tokens."""
    special = tokenizer.num_special_tokens_to_add(pair=False)
    return np.maximum(np.asarray(lengths) - special, 0)


def slices(eval_cfg: Any, scored: Scored) -> dict[str, Any]:
    """Per-slice accuracy and macro-F1 by length bucket and by each `eval.slice_cols` column."""
    columns: dict[str, Sequence[str]] = {LENGTH: length_buckets(scored.token_counts)}
    notes = []
    for col in eval_cfg.slice_cols:
        if col in scored.test.meta:
            columns[col] = scored.test.meta[col]
        else:
            notes.append(f"column '{col}' is not in {scored.test.source}; not sliced by it")
    return slice_report(scored.y, scored.top.pred, columns, eval_cfg.min_slice_size, notes)


def errors(scored: Scored) -> dict[str, Any]:
    """The most confident wrong predictions and the most confused class pairs, with texts."""
    top, test = scored.top, scored.test
    return error_report(top.pred, top.confidence, scored.y, test.texts, test.lines, scored.labels)


Fitted = tuple[float, int] | str  # (temperature, validation rows), or why none was fitted


def validation_temperature(
    cfg: Any, model: Any, tokenizer: Any, labels: list[str], bf16: bool
) -> Fitted:
    """Temperature scaling's T, fitted on the run's validation rows (or why it was not)."""
    if not cfg.eval.temperature_scaling:
        return "temperature scaling is off (eval.temperature_scaling: false)"
    val = validation_logits(cfg, model, tokenizer, labels, bf16)
    if isinstance(val, str):
        return val
    return fit_temperature(*val), len(val[1])


def temperature_of(fitted: Fitted) -> float | None:
    return None if isinstance(fitted, str) else fitted[0]


def calibration(scored: Scored, fitted: Fitted) -> dict:
    """ECE and reliability bins on test, before and after the validation temperature."""
    top, correct = scored.top, scored.top.pred == scored.y
    if isinstance(fitted, str):
        return calibration_report(top.confidence, correct, note=fitted)
    t, rows = fitted
    return calibration_report(top.confidence, correct, t, top.scaled_confidence, rows)


def validation_logits(
    cfg: Any, model: Any, tokenizer: Any, labels: list[str], bf16: bool
) -> tuple[np.ndarray, np.ndarray] | str:
    """Logits and class ids of the run's validation rows, or why they are unavailable.

    `load_splits` with the run's data config and seed rebuilds the same validation split
    training used (the split is seeded and stratified), or reads the validation file. Its
    size is the run's, whatever file `evaluate --data` scores.
    """
    try:
        validation = load_splits(cfg.data, cfg.seed).validation
    except InputError as exc:
        first = exc.problems[0] if exc.problems else exc
        return f"validation data unavailable, temperature not fitted ({first})"
    index = {label: i for i, label in enumerate(labels)}
    rows = [i for i, label in enumerate(validation.labels) if label in index]
    if not rows:
        return "no validation rows with a known label; temperature not fitted"
    validation = validation.subset(rows)
    y = np.array([index[label] for label in validation.labels])
    data = encode(tokenizer, validation.texts, list(y), cfg.model.max_length)
    logits, _ = predict_logits(model, data, cfg.eval.batch_size, bf16)
    return logits, y


def forgetting(cfg: Any, tuned_encoder: Any, tokenizer: Any, bf16: bool) -> dict[str, Any]:
    """Linear-probe accuracy of base vs tuned encoder on general tasks (`eval.forgetting`)."""
    if not cfg.eval.forgetting:
        return {"tasks": [], "mean_delta": None, "skipped": [], "note": "eval.forgetting is empty"}
    start = time.perf_counter()
    try:
        base_encoder = load_encoder(cfg.model.name, cfg.model.trust_remote_code)
    except InputError as exc:
        reason = f"base model {cfg.model.name} unavailable ({exc})"
        skipped = [{"name": name, "reason": reason} for name in cfg.eval.forgetting]
        return {"tasks": [], "mean_delta": None, "skipped": skipped}
    base_encoder.to(next(tuned_encoder.parameters()).device)
    e = cfg.eval
    rows = len(e.forgetting) * 2 * (e.forgetting_rows + e.forgetting_test_rows)  # at most
    title = f"forgetting probe: {', '.join(Path(str(t)).stem for t in e.forgetting)}"
    with step_progress(title, rows) as advance:
        base, tuned = (
            text_embedder(encoder, tokenizer, cfg.model.max_length, e.batch_size, bf16, advance)
            for encoder in (base_encoder, tuned_encoder)
        )
        doc = forgetting_report(
            e.forgetting,
            base,
            tuned,
            sources.data_dir(),
            e.forgetting_rows,
            e.forgetting_test_rows,
            e.bootstrap,
            cfg.seed,
        )
    console.log(
        f"forgetting probe: {len(doc['tasks'])} task(s) in {time.perf_counter() - start:.0f} s"
    )
    return doc


def summary_lines(metrics: dict) -> list[str]:
    """One line each for the worst slice, calibration and forgetting, for the final table."""
    lines = []
    worst = (metrics.get("slices") or {}).get("worst")
    if worst:
        lines.append(
            f"worst slice: {worst['slice']} = {worst['value']} ({worst['size']} rows), accuracy "
            f"{worst['accuracy']:.4f} ({-worst['gap']:+.4f} vs overall)"
        )
    cal = metrics.get("calibration") or {}
    if cal.get("ece") is not None:
        after, t = cal.get("ece_after_temperature"), cal.get("temperature")
        fixed = f", {after:.3f} after temperature T={t:.2f}" if after is not None else ""
        lines.append(f"calibration: ECE {cal['ece']:.3f}{fixed}")
    for task in (metrics.get("forgetting") or {}).get("tasks", []):
        ci = task["ci95"]
        ci_text = f" (95% CI {ci[0]:+.4f} … {ci[1]:+.4f})" if ci else ""
        lines.append(
            f"forgetting {task['name']}: probe accuracy {task['base_accuracy']:.4f} → "
            f"{task['tuned_accuracy']:.4f}, {task['delta']:+.4f}{ci_text}"
        )
    return lines
