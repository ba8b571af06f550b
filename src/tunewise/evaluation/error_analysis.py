"""Error analysis: which mistakes to read first.

Two lists a practitioner should read before trusting a model: the wrong predictions it was most
sure of (often label errors in the test set, or a systematic blind spot) and the class pairs it
mixes up most (often overlapping label definitions that no amount of training will fix), each
with example texts and source line numbers so a row can be found and fixed.

The result goes into metrics.json as `"errors"`:

    {"confident_wrong": [{"text": "...", "true": "card_arrival", "predicted": "card_delivery",
                          "confidence": 0.97, "line": 214}, ...],                  # top 10
     "confused_pairs": [{"true": "a", "predicted": "b", "count": 12,
                         "examples": ["...", "...", "..."]}, ...]}                # top 10

`confidence` is the softmax probability of the predicted class (before any temperature scaling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOP_K = 10
EXAMPLES_PER_PAIR = 3


def confident_wrong(
    pred: np.ndarray,
    conf: np.ndarray,
    y: np.ndarray,
    texts: Sequence[str],
    lines: Sequence[int],
    labels: Sequence[str],
    k: int = TOP_K,
) -> list[dict[str, Any]]:
    """The `k` wrong predictions with the highest confidence, most confident first."""
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:k]  # ties keep test-file order
    return [
        {
            "text": texts[i],
            "true": labels[y[i]],
            "predicted": labels[pred[i]],
            "confidence": float(conf[i]),
            "line": int(lines[i]),
        }
        for i in order
    ]


def confused_pairs(
    y: np.ndarray,
    pred: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    k: int = TOP_K,
    n_examples: int = EXAMPLES_PER_PAIR,
) -> list[dict[str, Any]]:
    """The `k` (true, predicted) pairs with the most errors, with up to `n_examples` texts each."""
    n = len(labels)
    wrong = np.flatnonzero(y != pred)
    codes = y[wrong] * n + pred[wrong]
    counts = np.bincount(codes, minlength=n * n)
    top = [c for c in np.argsort(-counts, kind="stable")[:k] if counts[c] > 0]
    return [
        {
            "true": labels[c // n],
            "predicted": labels[c % n],
            "count": int(counts[c]),
            "examples": [texts[i] for i in wrong[codes == c][:n_examples]],
        }
        for c in top
    ]


def error_report(
    pred: np.ndarray,
    confidence: np.ndarray,
    y: np.ndarray,
    texts: Sequence[str],
    lines: Sequence[int],
    labels: Sequence[str],
    k: int = TOP_K,
) -> dict[str, Any]:
    """The `"errors"` section of metrics.json (shape in the module docstring), from each row's
    predicted class and its probability."""
    y, pred, confidence = np.asarray(y), np.asarray(pred), np.asarray(confidence)
    return {
        "confident_wrong": confident_wrong(pred, confidence, y, texts, lines, labels, k),
        "confused_pairs": confused_pairs(y, pred, texts, labels, k),
    }
