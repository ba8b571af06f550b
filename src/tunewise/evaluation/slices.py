"""Slices: is the model good for everyone, or only on average?

A test accuracy of 0.93 can hide a group of users (long messages, one channel, one language)
served far worse. This module scores the tuned model on each slice of the test rows, by
text-length bucket (token-count quartiles) and by any metadata column the user names
(`eval.slice_cols`), and names the worst slice so the headline shows it.

Slice metrics are the metrics *of the subset*: macro-F1 averages over the classes present in the
slice (in its truth or predictions), as scikit-learn's `f1_score(average="macro")` does on that
subset; averaging over all classes would score every slice near zero on 77 intents. Slices with
fewer than `min_size` rows are too noisy to rank and are listed under `skipped`, never hidden.

The result goes into metrics.json as `"slices"`:

    {"by": ["length", "channel"], "min_size": 20,
     "overall": {"accuracy": 0.93, "macro_f1": 0.92, "size": 3080},
     "groups": [{"slice": "length", "value": "≤8 tokens", "size": 812,
                 "accuracy": 0.95, "macro_f1": 0.94}, ...],
     "skipped": [{"slice": "channel", "value": "fax", "size": 4, "reason": "fewer than 20 rows"}],
     "worst": {<a group>, "gap": overall accuracy − slice accuracy} | null,
     "notes": ["column 'channel' is not in the test file"]}      # notes only when there are any
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.evaluation.metrics import classification_metrics

LENGTH = "length"
LENGTH_BUCKETS = 4
MIN_SLICE_SIZE = 20
MISSING = "(missing)"


def subset_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present in `y` or `pred` (sklearn's default)."""
    present, codes = np.unique(np.concatenate([y, pred]), return_inverse=True)
    t, p = codes[: len(y)], codes[len(y) :]
    scores = classification_metrics(t, p, len(present))
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def length_buckets(
    lengths: Sequence[int] | np.ndarray, n_buckets: int = LENGTH_BUCKETS
) -> list[str]:
    """A label per row naming its token-count bucket, cut at the length quantiles.

    Cuts are actual lengths (so labels read as whole token counts) and repeated cuts merge, so
    data where most rows share a length gets fewer, non-empty buckets.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if not lengths.size:
        return []
    quantiles = np.linspace(0, 1, n_buckets + 1)[1:-1]
    cuts = np.unique(np.quantile(lengths, quantiles, method="lower"))
    cuts = cuts[cuts < lengths.max()]  # a top cut at the maximum would leave an empty bucket
    names = _bucket_names(cuts.tolist())
    return [names[i] for i in np.searchsorted(cuts, lengths, side="left")]


def _bucket_names(cuts: list[int]) -> list[str]:
    """Names for the len(cuts) + 1 buckets (lo, hi] between consecutive cuts."""
    if not cuts:
        return ["all lengths"]
    names = [f"≤{cuts[0]} tokens"]
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        names.append(f"{lo + 1} tokens" if lo + 1 == hi else f"{lo + 1}–{hi} tokens")
    return names + [f"≥{cuts[-1] + 1} tokens"]


def _natural_key(value: str) -> list[Any]:
    """Sort "≤8 tokens" < "9–12 tokens" < "≥13 tokens", and "item 2" before "item 10"."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", value)]


def _order(values: Sequence[str]) -> list[str]:
    """Distinct values, naturally sorted; a leading '≤' bucket counts as smallest."""
    return sorted(set(values), key=lambda v: _natural_key(v.lstrip("≤")))


def slice_report(
    y: np.ndarray,
    pred: np.ndarray,
    columns: Mapping[str, Sequence[str]],
    min_size: int = MIN_SLICE_SIZE,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The `"slices"` section of metrics.json; `columns` maps a slice name to a value per row."""
    y, pred = np.asarray(y), np.asarray(pred)
    overall = {**subset_scores(y, pred), "size": int(len(y))}
    groups: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name, values in columns.items():
        if len(values) != len(y):
            raise ValueError(f"slice '{name}' has {len(values)} values for {len(y)} rows")
        for group, rows in _groups(name, values):
            if group["size"] < min_size:
                skipped.append({**group, "reason": f"fewer than {min_size} rows"})
            else:
                groups.append({**group, **subset_scores(y[rows], pred[rows])})
    doc = {"by": list(columns), "min_size": min_size, "overall": overall, "groups": groups}
    doc.update(skipped=skipped, worst=worst_slice(groups, overall["accuracy"]))
    if notes:
        doc["notes"] = list(notes)
    return doc


def _groups(name: str, values: Sequence[str]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(group header, row mask) per distinct value in natural order; blanks become (missing)."""
    values = [v if v.strip() else MISSING for v in values]
    masks = [(v, np.array([x == v for x in values], dtype=bool)) for v in _order(values)]
    return [({"slice": name, "value": v, "size": int(m.sum())}, m) for v, m in masks]


def worst_slice(groups: Sequence[dict[str, Any]], overall_accuracy: float) -> dict | None:
    """The group with the lowest accuracy (the larger one on ties), with its gap to overall."""
    if not groups:
        return None
    worst = min(groups, key=lambda g: (g["accuracy"], -g["size"]))
    return {**worst, "gap": overall_accuracy - worst["accuracy"]}
