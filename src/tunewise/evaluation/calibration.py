"""Calibration: does a predicted confidence of 0.9 mean right nine times in ten?

A classifier's softmax confidence feeds thresholds, human hand-off and active learning, so a
confident-but-wrong model is a real risk even when its accuracy is fine. Fine-tuned encoders are
usually over-confident. This module measures it (expected calibration error over 15 equal-width
confidence bins, plus the bins for a reliability diagram) and fixes what a single number can
fix: temperature scaling, one scalar T fitted on validation logits by minimising the negative
log-likelihood, then applied to the test logits (predictions do not change, only confidences).
The report itself needs only each test row's top confidence (at T = 1 and at the fitted T) and
whether it was right, so `tunewise evaluate` keeps no test logits.

The result goes into metrics.json as `"calibration"`:

    {"ece": 0.041, "ece_after_temperature": 0.012 | null, "temperature": 1.62 | null,
     "n_bins": 15, "validation_size": 1000 | null, "note": "..." (only when T was not fitted),
     "bins": [{"lower": 0.0, "upper": 0.0667, "confidence": 0.05 | null,
               "accuracy": 0.0 | null, "count": 3}, ...]}          # always 15 bins, test logits

`bins` describe the *uncalibrated* test predictions; an empty bin has count 0 and null
confidence and accuracy. `ece_after_temperature` and `temperature` are null when no validation
logits were available (or temperature scaling is off).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

N_BINS = 15
LOG_T_BOUNDS = (-3.0, 3.0)  # T from 0.05 to 20: far wider than any trained classifier needs


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence; bins are (lo, hi], the first one also takes 0 exactly."""
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS
) -> list[dict[str, Any]]:
    """Mean confidence, accuracy and row count per equal-width confidence bin."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = _bin_index(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    right_sum = np.bincount(index, weights=correct, minlength=n_bins)
    return [
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "confidence": float(conf_sum[b] / count[b]) if count[b] else None,
            "accuracy": float(right_sum[b] / count[b]) if count[b] else None,
            "count": int(count[b]),
        }
        for b in range(n_bins)
    ]


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS
) -> float:
    """Sum over bins of (bin share of rows) × |accuracy − mean confidence|; 0 is perfect."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    gaps = (b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    return float(sum(gaps) / total)


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean cross-entropy of `logits / temperature` against class ids `y`."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y)), np.asarray(y)].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising validation NLL of `logits / T` (searched over log T: scale-free).

    NLL in T is smooth and has one minimum for almost all logits, so a bounded scalar search
    is enough; the result is deterministic.
    """
    if not len(y):
        raise ValueError("cannot fit a temperature on zero rows")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, y, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibration_report(
    confidence: np.ndarray,
    correct: np.ndarray,
    temperature: float | None = None,
    scaled_confidence: np.ndarray | None = None,
    validation_size: int | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The `"calibration"` section of metrics.json (shape in the module docstring), from each
    test row's top-class confidence and whether the top class was right.

    `temperature` (fitted on `validation_size` validation rows) comes with the test rows'
    `scaled_confidence` at that temperature; without them `note` says why not.
    """
    doc: dict[str, Any] = {
        "ece": expected_calibration_error(confidence, correct),
        "ece_after_temperature": None,
        "temperature": None,
        "n_bins": N_BINS,
        "validation_size": None,
        "bins": reliability_bins(confidence, correct),
    }
    if temperature is not None and scaled_confidence is not None:
        doc["temperature"] = temperature
        doc["ece_after_temperature"] = expected_calibration_error(scaled_confidence, correct)
        doc["validation_size"] = validation_size
    elif note:
        doc["note"] = note
    return doc
