"""Error analysis: the most confident wrong predictions and the most confused pairs."""

from __future__ import annotations

import json

import numpy as np

from tunewise.evaluation.error_analysis import error_report
from tunewise.evaluation.metrics import confusion

LABELS = ["a", "b", "c"]


def test_confident_wrong_are_the_wrong_rows_by_confidence():
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33], [0.1, 0.6, 0.3]]
    )
    y = np.array([0, 0, 1, 2, 1])  # rows 1, 2 and 3 are wrong
    texts = [f"text {i}" for i in range(5)]
    doc = error_report(probs.argmax(1), probs.max(1), y, texts, [10, 11, 12, 13, 14], LABELS, k=2)
    assert doc["confident_wrong"] == [
        {"text": "text 2", "true": "b", "predicted": "c", "confidence": 0.8, "line": 12},
        {"text": "text 1", "true": "a", "predicted": "b", "confidence": 0.7, "line": 11},
    ]
    json.dumps(doc)


def test_confused_pairs_follow_the_confusion_matrix_with_examples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.3, rng.integers(0, 3, 200), y)
    probs = np.eye(3)[pred] * 0.9 + 0.1 / 3
    texts = [f"row {i}" for i in range(200)]
    pairs = error_report(pred, probs.max(1), y, texts, list(range(200)), LABELS)["confused_pairs"]
    cm = confusion(y, pred, 3)
    off = [(int(cm[i, j]), LABELS[i], LABELS[j]) for i in range(3) for j in range(3) if i != j]
    expected = sorted((c for c in off if c[0]), key=lambda c: -c[0])
    assert [(p["count"], p["true"], p["predicted"]) for p in pairs] == expected
    for p in pairs:
        assert 1 <= len(p["examples"]) <= 3
        for text in p["examples"]:
            i = int(text.split()[1])
            assert (LABELS[y[i]], LABELS[pred[i]]) == (p["true"], p["predicted"])


def test_no_errors_gives_empty_lists():
    doc = error_report(np.arange(3), np.ones(3), np.arange(3), ["x", "y", "z"], [1, 2, 3], LABELS)
    assert doc == {"confident_wrong": [], "confused_pairs": []}
