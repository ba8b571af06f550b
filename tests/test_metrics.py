"""Metrics must equal scikit-learn's; the comparison statistics must behave as statistics do."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from tunewise.evaluation.compare import compare, mcnemar_exact, paired_bootstrap
from tunewise.evaluation.metrics import (
    METRIC_NAMES,
    classification_metrics,
    confusion,
    metrics_from_confusion,
    per_class,
)


def _sklearn_metrics(y_true, y_pred, n_classes):
    labels = list(range(n_classes))
    out = {"accuracy": accuracy_score(y_true, y_pred)}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out.update({f"{avg}_precision": p, f"{avg}_recall": r, f"{avg}_f1": f})
    return out


def _noisy(rng, y_true, n_classes, accuracy):
    """Predictions that copy the truth with probability `accuracy`, else a random class."""
    keep = rng.random(y_true.size) < accuracy
    return np.where(keep, y_true, rng.integers(0, n_classes, y_true.size))


@pytest.mark.parametrize("seed", range(6))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 12
    # truth uses classes 0..9, predictions 0..7: classes 10, 11 absent everywhere,
    # 8, 9 absent from predictions (zero-division cases for precision and F1).
    y_true = rng.integers(0, 10, 300)
    y_pred = np.where(rng.random(300) < 0.6, np.minimum(y_true, 7), rng.integers(0, 8, 300))
    ours = classification_metrics(y_true.tolist(), y_pred, n_classes)
    expected = _sklearn_metrics(y_true, y_pred, n_classes)
    assert set(ours) == set(METRIC_NAMES) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
        assert type(ours[name]) is float


def test_metrics_perfect_and_all_wrong():
    y = np.array([0, 1, 2, 2])
    assert all(v == 1.0 for v in classification_metrics(y, y, 3).values())
    wrong = classification_metrics(y, (y + 1) % 3, 3)
    assert all(v == 0.0 for v in wrong.values())


def test_batched_metrics_match_single():
    rng = np.random.default_rng(7)
    cms = [confusion(rng.integers(0, 4, 50), rng.integers(0, 4, 50), 4) for _ in range(3)]
    batched = metrics_from_confusion(np.stack(cms))
    for i, cm in enumerate(cms):
        single = metrics_from_confusion(cm)
        for name in METRIC_NAMES:
            assert batched[name][i] == pytest.approx(float(single[name]), abs=1e-15)


def test_confusion_matches_sklearn():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 6, 200), rng.integers(0, 5, 200)
    expected = sk_confusion(y_true, y_pred, labels=list(range(7)))
    np.testing.assert_array_equal(confusion(y_true, y_pred, 7), expected)


def test_per_class_matches_sklearn():
    rng = np.random.default_rng(4)
    labels = ["a", "b", "c", "d", "e"]
    y_true, y_pred = rng.integers(0, 4, 120), rng.integers(0, 5, 120)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(5)), average=None, zero_division=0
    )
    rows = per_class(y_true, y_pred, labels)
    assert [row["label"] for row in rows] == labels
    for i, row in enumerate(rows):
        assert row["precision"] == pytest.approx(p[i], abs=1e-12)
        assert row["recall"] == pytest.approx(r[i], abs=1e-12)
        assert row["f1"] == pytest.approx(f[i], abs=1e-12)
        assert row["support"] == s[i] and isinstance(row["support"], int)
    assert rows[4]["support"] == 0 and rows[4]["recall"] == 0.0


@pytest.mark.parametrize("bad", [[0, 5], [-1, 0], [0.5, 1.0]])
def test_invalid_ids_rejected(bad):
    with pytest.raises(ValueError):
        classification_metrics([0, 1], bad, 5)


def test_length_mismatch_rejected():
    with pytest.raises(ValueError):
        confusion([0, 1, 2], [0, 1], 3)


def test_bootstrap_contains_observed_delta():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 8, 600)
    a, b = _noisy(rng, y, 8, 0.7), _noisy(rng, y, 8, 0.75)
    ci = paired_bootstrap(y, a, b, 8, metrics=("accuracy", "macro_f1", "weighted_f1"), n=500)
    ma, mb = classification_metrics(y, a, 8), classification_metrics(y, b, 8)
    for name, (lo, hi) in ci.items():
        assert lo < mb[name] - ma[name] < hi, name
        assert isinstance(lo, float) and isinstance(hi, float)


def test_bootstrap_is_zero_for_identical_predictions():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 5, 200)
    a = _noisy(rng, y, 5, 0.6)
    assert paired_bootstrap(y, a, a.copy(), 5, n=200) == {
        "accuracy": (0.0, 0.0),
        "macro_f1": (0.0, 0.0),
    }


def test_bootstrap_excludes_zero_for_clearly_better():
    rng = np.random.default_rng(13)
    y = rng.integers(0, 10, 1000)
    ci = paired_bootstrap(y, _noisy(rng, y, 10, 0.5), _noisy(rng, y, 10, 0.8), 10, n=400)
    assert ci["accuracy"][0] > 0 and ci["macro_f1"][0] > 0


def test_bootstrap_is_seeded_and_rejects_unknown_metric():
    rng = np.random.default_rng(14)
    y = rng.integers(0, 4, 100)
    a, b = _noisy(rng, y, 4, 0.5), _noisy(rng, y, 4, 0.7)
    assert paired_bootstrap(y, a, b, 4, n=100, seed=3) == paired_bootstrap(
        y, a, b, 4, n=100, seed=3
    )
    with pytest.raises(ValueError):
        paired_bootstrap(y, a, b, 4, metrics=("auc",))


def test_bootstrap_is_fast_at_banking77_scale():
    rng = np.random.default_rng(15)
    y = rng.integers(0, 77, 3000)
    a, b = _noisy(rng, y, 77, 0.85), _noisy(rng, y, 77, 0.9)
    paired_bootstrap(y, a, b, 77, n=10)  # warm-up
    start = time.perf_counter()
    paired_bootstrap(y, a, b, 77, n=1000)
    assert time.perf_counter() - start < 2.0


def test_mcnemar_matches_hand_computed_binomial():
    # 3 rows a right / b wrong (b=3), 9 rows a wrong / b right (c=9), 8 concordant rows.
    y_true = np.zeros(20, dtype=int)
    pred_a = np.array([0] * 3 + [1] * 9 + [0] * 5 + [1] * 3)
    pred_b = np.array([1] * 3 + [0] * 9 + [0] * 5 + [1] * 3)
    result = mcnemar_exact(y_true, pred_a, pred_b)
    # two-sided exact: 2 * P(X <= 3), X ~ Binomial(12, 0.5) = 2 * 299 / 4096
    assert result["b"] == 3 and result["c"] == 9
    assert result["p_value"] == pytest.approx(2 * 299 / 4096, rel=1e-12)
    assert result["p_value"] == pytest.approx(2 * binom.cdf(3, 12, 0.5), rel=1e-12)


def test_mcnemar_no_discordant_pairs():
    y = np.array([0, 1, 2])
    assert mcnemar_exact(y, y, y.copy()) == {"b": 0, "c": 0, "p_value": 1.0}


def test_compare_is_json_serialisable_and_consistent():
    rng = np.random.default_rng(16)
    y = rng.integers(0, 6, 400)
    base, tuned = _noisy(rng, y, 6, 0.5), _noisy(rng, y, 6, 0.8)
    result = compare(y, base, tuned, 6, n_boot=300, seed=1)
    decoded = json.loads(json.dumps(result))
    assert decoded == result
    assert set(result["delta"]) == {"accuracy", "macro_f1", "macro_precision", "macro_recall"}
    expected = accuracy_score(y, tuned) - accuracy_score(y, base)
    assert result["delta"]["accuracy"] == pytest.approx(expected, abs=1e-12)
    lo, hi = result["ci95"]["accuracy"]
    assert lo < result["delta"]["accuracy"] < hi
    sig = result["significance"]
    assert sig["test"] == "mcnemar_exact" and sig["bootstrap_resamples"] == 300
    assert sig["c"] > sig["b"] and sig["p_value"] < 1e-6
