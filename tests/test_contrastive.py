"""The contrastive stage (training/contrastive.py): its pairs, when it runs, what it learns, and
that it is undone when the probe it serves gets worse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert
from tests.test_recipe_ingredients import toy_encoded
from tunewise.config.schema import ContrastiveConfig
from tunewise.models.features import logits_and_features
from tunewise.training import contrastive
from tunewise.training.contrastive import applies, contrastive_stage, pairs


def test_pairs_match_same_class_with_1_other_classes_with_0_and_never_a_row_with_itself():
    labels = [0, 0, 0, 1, 1, 2]  # class 2 has one row: no positive pair for it
    index, target = pairs(labels, per_row=4, seed=0)
    y = np.asarray(labels)
    assert len(index) == 4 * (5 + 6)  # 5 rows have a class mate, all 6 get an other-class row
    assert np.array_equal(target, (y[index[:, 0]] == y[index[:, 1]]).astype(np.float32))
    assert not (index[:, 0] == index[:, 1]).any()
    assert set(index[target == 1, 0]) == {0, 1, 2, 3, 4}
    assert np.array_equal(pairs(labels, 4, seed=0)[0], index)  # seeded
    assert not np.array_equal(pairs(labels, 4, seed=1)[0], index)


def test_it_runs_on_few_rows_a_class_only():
    c = ContrastiveConfig(max_rows_per_class=30)
    assert applies(c, [i % 10 for i in range(200)])  # 20 rows a class
    assert not applies(c, [i % 10 for i in range(400)])  # 40 rows a class
    assert applies(ContrastiveConfig(max_rows_per_class=None), [i % 10 for i in range(400)])
    assert not applies(None, [0, 1, 0, 1])  # train.contrastive: null
    assert not applies(c, [3, 3, 3])  # one class: no pair of different labels


def within_minus_across(model, data) -> float:
    """Mean cosine similarity of head inputs within a class minus across classes."""
    x = logits_and_features(model, data)[1]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims, y = x @ x.T, np.asarray(data.labels)
    same = y[:, None] == y[None, :]
    return float(sims[same & ~np.eye(len(y), dtype=bool)].mean() - sims[~same].mean())


def test_the_stage_pulls_a_class_together_and_records_what_it_did():
    model, data = tiny_bert(num_labels=3, seed=1), toy_encoded(8)
    before = within_minus_across(model, data)  # a random tiny BERT: every vector alike
    c = ContrastiveConfig(max_rows_per_class=None, pairs_per_row=20, lr=3e-3)
    record = contrastive_stage(model, data, toy_encoded(3), c, seed=0, bf16=False)
    assert record is not None and record["kept"]
    assert record["pairs"] == 20 * 2 * 24 and record["steps"] == 60
    assert record["loss_last"] < record["loss_first"] / 2
    assert within_minus_across(model, data) > before + 0.3
    assert torch.is_grad_enabled() and not model.training


@pytest.mark.parametrize(
    "probe, steps",
    [
        ([0.9, 0.5], 4),  # worse a quarter of the way in: it stops there (18 steps planned)
        ([0.5, 0.7, 0.4], 18),  # better at a quarter, worse at the end
    ],
)
def test_the_stage_is_undone_when_the_probe_gets_worse(monkeypatch, probe, steps):
    model, data = tiny_bert(num_labels=3, seed=1), toy_encoded(8)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scores = iter(probe)  # the probe's validation accuracy before, at a quarter, at the end
    monkeypatch.setattr(contrastive, "probe_accuracy", lambda *a: next(scores))
    c = ContrastiveConfig(max_rows_per_class=None, pairs_per_row=6, lr=1e-3)
    record = contrastive_stage(model, data, toy_encoded(3), c, seed=0, bf16=False)
    assert record is not None and not record["kept"]
    assert record["steps"] == steps and record["planned_steps"] == 18
    assert list(record["probe_validation_accuracy"].values()) == probe
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_nothing_happens_when_only_the_head_trains():
    model, data = tiny_bert(num_labels=3, seed=1), toy_encoded(8)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")
    c = ContrastiveConfig(max_rows_per_class=None)
    assert contrastive_stage(model, data, toy_encoded(3), c, seed=0, bf16=False) is None


def test_max_steps_caps_the_stage():
    model, data = tiny_bert(num_labels=3, seed=1), toy_encoded(8)
    c = ContrastiveConfig(max_rows_per_class=None, max_steps=5)
    record = contrastive_stage(model, data, toy_encoded(3), c, seed=0, bf16=False)
    assert record is not None and record["steps"] == 5
