"""Out-of-scope scores and thresholds (evaluation/oos.py): each method separates rows unlike the
training data, thresholds are set on validation rows only, and the report's numbers are right."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.evaluation import oos


def clusters(rng, n=60, dim=8, classes=3):
    centres = rng.normal(0, 4, (classes, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0, 0.5, (n, dim)), y, centres


def test_feature_scores_rank_far_rows_above_near_ones():
    rng = np.random.default_rng(0)
    x, y, centres = clusters(rng)
    near = centres[[0, 1, 2]] + rng.normal(0, 0.5, (3, 8))
    far = rng.normal(0, 4, (3, 8)) + 20
    for scorer in (oos.KNNScorer(k=3).fit(x), oos.MahalanobisScorer().fit(x, y)):
        assert scorer.score(far).min() > scorer.score(near).max()


def test_knn_is_exact_and_chunked():
    rng = np.random.default_rng(1)
    bank, query = rng.normal(size=(50, 4)), rng.normal(size=(7, 4))
    scorer = oos.KNNScorer(k=5).fit(bank)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    expected = 1 - np.sort(q @ b.T, axis=1)[:, -5]
    assert np.allclose(scorer.score(query, chunk=3), expected, atol=1e-6)
    again = oos.KNNScorer.from_state(scorer.state(), k=5)
    assert np.allclose(again.score(query), expected, atol=1e-6)


def test_mahalanobis_matches_the_textbook_formula():
    rng = np.random.default_rng(2)
    x, y, _ = clusters(rng, n=200, dim=3)
    scorer = oos.MahalanobisScorer(ridge=0.0).fit(x, y)
    point = rng.normal(size=(1, 3))
    distances = [((point - m) @ scorer.precision_ @ (point - m).T).item() for m in scorer.means_]
    assert scorer.score(point)[0] == pytest.approx(float(np.sqrt(min(distances))), rel=1e-9)
    again = oos.MahalanobisScorer.from_state(scorer.state())
    assert again.score(point)[0] == pytest.approx(scorer.score(point)[0])


def test_logit_scores():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    msp = oos.msp_score(logits)
    assert msp[0] < 1e-3 and msp[1] == pytest.approx(2 / 3)
    assert oos.msp_score(logits, temperature=10)[0] > msp[0]  # a temperature softens it
    energy = oos.energy_score(logits)
    assert energy[0] < energy[1]


def test_thresholds_are_set_from_validation_scores():
    ins = np.linspace(0, 1, 101)
    assert oos.coverage_threshold(ins, 0.95) == pytest.approx(0.95)
    assert np.mean(ins <= oos.coverage_threshold(ins, 0.9)) == pytest.approx(0.91, abs=0.01)
    separated = oos.youden_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8]))
    assert 0.3 <= separated < 0.7


def test_auroc_and_fpr():
    assert oos.auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert oos.auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert oos.auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5  # ties count half
    ins = np.linspace(0, 1, 101)
    assert oos.fpr_at_recall(ins, np.array([0.5, 0.99, 2.0]), 0.95) == pytest.approx(1 / 3)


def test_report_counts_abstention_as_wrong():
    ins = np.array([0.1, 0.2, 0.9, 0.3])
    correct = np.array([True, False, True, True])
    doc = oos.oos_report(ins, np.array([0.95, 0.1]), threshold=0.5, correct=correct)
    assert doc["in_scope_answered"] == 0.75
    assert doc["in_scope_accuracy_with_abstention"] == 0.5  # the abstained right answer is lost
    assert doc["oos_recall"] == 0.5 and doc["oos_precision"] == 0.5  # 1 of 2 flagged is oos
    assert oos.oos_report(ins, None, 0.5, correct)["oos_rows"] == 0
