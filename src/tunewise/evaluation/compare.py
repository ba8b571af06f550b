"""Is the tuned model really better than the baseline on the same test rows?

Both models are scored on identical rows, so the comparison is paired: the bootstrap resamples
row indices once and scores both predictions on the same resample, and McNemar's exact test
looks only at the rows where exactly one of the two is right. Pairing removes the between-row
variance that an unpaired comparison would wrongly count as uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest

from tunewise.evaluation.metrics import (
    METRIC_NAMES,
    IdArray,
    as_class_ids,
    classification_metrics,
    metrics_from_confusion,
)

DELTA_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall")
CI_METRICS = ("accuracy", "macro_f1")
# Cap on elements per vectorised chunk (indices or confusion cells) to bound memory use.
_CHUNK_ELEMENTS = 4_000_000


def _aligned(y_true: IdArray, *preds: IdArray, n_classes: int) -> list[np.ndarray]:
    """Validate truth and predictions together; misaligned rows would void the pairing."""
    arrays = [as_class_ids(y_true, n_classes, "y_true")]
    arrays += [as_class_ids(p, n_classes, f"predictions {i}") for i, p in enumerate(preds)]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"truth and predictions differ in length: {[a.size for a in arrays]}")
    if not arrays[0].size:
        raise ValueError("cannot compare predictions on an empty test set")
    return arrays


def _batched_confusion(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrices for a `(B, N)` block of `true*K + pred` codes, one bincount for all."""
    cells = n_classes * n_classes
    offsets = np.arange(codes.shape[0], dtype=np.int64)[:, None] * cells
    counts = np.bincount((codes + offsets).ravel(), minlength=codes.shape[0] * cells)
    return counts.reshape(codes.shape[0], n_classes, n_classes)


def paired_bootstrap(
    y_true: IdArray,
    pred_a: IdArray,
    pred_b: IdArray,
    n_classes: int,
    metrics: Sequence[str] = CI_METRICS,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile interval of metric(b) - metric(a) over paired row resamples.

    Each resample draws row indices with replacement and scores *both* predictions on the
    same rows. Returns `{metric: (low, high)}`; identical predictions give exactly (0, 0).
    """
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRIC_NAMES)}")
    if n < 1:
        raise ValueError(f"n (bootstrap resamples) must be at least 1, got {n}")
    t, a, b = _aligned(y_true, pred_a, pred_b, n_classes=n_classes)
    codes_a, codes_b = t * n_classes + a, t * n_classes + b
    rng = np.random.default_rng(seed)
    deltas = {m: np.empty(n) for m in metrics}
    chunk = max(1, _CHUNK_ELEMENTS // max(t.size, n_classes * n_classes))
    for start in range(0, n, chunk):
        idx = rng.integers(0, t.size, size=(min(chunk, n - start), t.size))
        scores_a = metrics_from_confusion(_batched_confusion(codes_a[idx], n_classes))
        scores_b = metrics_from_confusion(_batched_confusion(codes_b[idx], n_classes))
        for m in metrics:
            deltas[m][start : start + idx.shape[0]] = scores_b[m] - scores_a[m]
    bounds = {m: np.percentile(d, [2.5, 97.5]) for m, d in deltas.items()}
    return {m: (float(lo), float(hi)) for m, (lo, hi) in bounds.items()}


def mcnemar_exact(y_true: IdArray, pred_a: IdArray, pred_b: IdArray) -> dict:
    """McNemar's exact test: are a's and b's errors on the same rows equally likely?

    `b` counts rows a gets right and b gets wrong, `c` the reverse. Under the null each
    discordant row is a fair coin, so p is the two-sided binomial test of `b` out of `b + c`.
    """
    t, a, pb = (np.asarray(x) for x in (y_true, pred_a, pred_b))
    if not t.shape == a.shape == pb.shape:
        raise ValueError(f"shapes differ: {t.shape}, {a.shape}, {pb.shape}")
    right_a, right_b = a == t, pb == t
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": p_value}


def compare(
    y_true: IdArray,
    base_pred: IdArray,
    tuned_pred: IdArray,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Tuned-minus-baseline deltas, their bootstrap 95% CIs and McNemar significance.

    The result holds only plain ints, floats, lists and strings so it goes straight into
    metrics.json.
    """
    t, base, tuned = _aligned(y_true, base_pred, tuned_pred, n_classes=n_classes)
    base_scores = classification_metrics(t, base, n_classes)
    tuned_scores = classification_metrics(t, tuned, n_classes)
    ci = paired_bootstrap(t, base, tuned, n_classes, CI_METRICS, n=n_boot, seed=seed)
    return {
        "delta": {m: tuned_scores[m] - base_scores[m] for m in DELTA_METRICS},
        "ci95": {m: [lo, hi] for m, (lo, hi) in ci.items()},
        "significance": {
            "test": "mcnemar_exact",
            **mcnemar_exact(t, base, tuned),
            "bootstrap_resamples": int(n_boot),
        },
    }
