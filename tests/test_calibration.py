"""Calibration: ECE, reliability bins and temperature scaling on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from tunewise.evaluation.calibration import (
    N_BINS,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def calibrated_logits(n: int, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution each label is drawn from."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, y


def top(logits: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top class and its softmax probability at `temperature`."""
    probs = softmax(logits / temperature, axis=1)
    return probs.argmax(1), probs.max(1)


def test_perfectly_calibrated_predictor_has_ece_near_zero():
    logits, y = calibrated_logits(200_000)
    pred, conf = top(logits)
    assert expected_calibration_error(conf, pred == y) < 0.01


def test_ece_is_the_confidence_accuracy_gap():
    assert expected_calibration_error(np.full(10, 0.6), np.ones(10)) == pytest.approx(0.4)
    assert expected_calibration_error(np.ones(10), np.ones(10)) == 0.0
    # two bins, half the rows each: |0.9 - 0.5| and |0.3 - 0.3|
    conf = np.array([0.9] * 4 + [0.3] * 4)
    right = np.array([1, 1, 0, 0, 1, 0, 0, 1])
    expected = 0.5 * abs(0.9 - 0.5) + 0.5 * abs(0.3 - 0.5)
    assert expected_calibration_error(conf, right) == pytest.approx(expected)


def test_bins_are_fifteen_equal_width_with_empty_bins_null():
    conf = np.array([0.0, 1 / 15, 0.5, 0.99, 1.0])
    bins = reliability_bins(conf, np.array([1, 0, 1, 1, 0]))
    assert len(bins) == N_BINS and sum(b["count"] for b in bins) == 5
    assert [b["count"] for b in bins][:2] == [2, 0]  # 0 and 1/15 both in the first bin (lo, hi]
    assert bins[0]["accuracy"] == 0.5 and bins[0]["confidence"] == pytest.approx(1 / 30)
    assert bins[1]["confidence"] is None and bins[1]["accuracy"] is None
    assert bins[-1]["count"] == 2 and bins[-1]["upper"] == 1.0


def test_temperature_scaling_fixes_an_over_confident_predictor():
    val_logits, val_y = calibrated_logits(20_000, seed=1)
    test_logits, test_y = calibrated_logits(20_000, seed=2)
    t = fit_temperature(3.0 * val_logits, val_y)
    assert t == pytest.approx(3.0, rel=0.05)
    pred, conf = top(3.0 * test_logits)
    scaled = top(3.0 * test_logits, t)[1]
    doc = calibration_report(conf, pred == test_y, t, scaled, len(val_y))
    assert doc["ece"] > 0.1
    assert doc["ece_after_temperature"] < 0.02 < doc["ece"]
    assert doc["temperature"] == pytest.approx(t) and doc["validation_size"] == 20_000


def test_report_without_validation_says_why():
    logits, y = calibrated_logits(100)
    pred, conf = top(logits)
    doc = calibration_report(conf, pred == y, note="no validation rows")
    assert doc["temperature"] is None and doc["ece_after_temperature"] is None
    assert doc["note"] == "no validation rows" and len(doc["bins"]) == N_BINS
