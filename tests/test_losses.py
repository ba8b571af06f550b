"""Losses: each reduces to cross-entropy where theory says it must, and trains what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tunewise.config import LOSSES as CONFIG_LOSSES
from tunewise.training.losses import (
    LOSSES,
    balanced_weights,
    build_loss,
    focal,
    pairwise_ranking,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 5, generator=g) * 3, torch.randint(0, 5, (32,), generator=g)


def test_config_and_losses_name_the_same_losses():
    assert CONFIG_LOSSES == LOSSES


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_with_gamma_0_equals_cross_entropy(batch, smoothing):
    logits, labels = batch
    expected = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    got = build_loss("focal", gamma=0.0, label_smoothing=smoothing)(logits, labels)
    assert torch.allclose(got, expected, atol=1e-6)


def test_focal_down_weights_easy_examples(batch):
    logits, labels = batch
    ce = F.cross_entropy(logits, labels, reduction="none")
    easy, hard = ce.argmin(), ce.argmax()
    ratio = [
        (focal(logits[i : i + 1], labels[i : i + 1], gamma=2.0) / ce[i]).item()
        for i in (int(easy), int(hard))
    ]
    assert ratio[0] < ratio[1] < 1.0  # the easy row loses more of its weight


def test_focal_alpha_per_class_scales_each_class(batch):
    logits, labels = batch
    alpha = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0])
    only1 = labels == 1
    base = focal(logits[only1], labels[only1], gamma=2.0)
    assert torch.allclose(focal(logits[only1], labels[only1], gamma=2.0, alpha=alpha), 2 * base)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weighted_loss_with_equal_weights_equals_cross_entropy(batch, smoothing):
    logits, labels = batch
    expected = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    for weights in ([1.0] * 5, [3.0] * 5):
        loss = build_loss(
            "weighted_cross_entropy", class_weights=weights, label_smoothing=smoothing
        )
        assert torch.allclose(loss(logits, labels), expected, atol=1e-6)
    balanced = build_loss(
        "weighted_cross_entropy", train_label_counts=[7] * 5, label_smoothing=smoothing
    )
    assert torch.allclose(balanced(logits, labels), expected, atol=1e-6)


def test_balanced_weights_favour_rare_classes():
    w = balanced_weights([100, 10, 1])
    assert w[2] > w[1] > w[0] and torch.isclose(w[0] * 100, w[2] * 1)
    assert torch.isclose((w * torch.tensor([100.0, 10.0, 1.0])).sum(), torch.tensor(111.0))


def test_weighted_loss_counts_rare_class_errors_more():
    loss = build_loss("weighted_cross_entropy", train_label_counts=[9, 1])
    labels = torch.tensor([0, 1])
    rare_wrong = torch.tensor([[5.0, 0.0], [5.0, 0.0]])  # the rare-class row is badly wrong
    common_wrong = torch.tensor([[0.0, 5.0], [0.0, 5.0]])  # the same error on the common row
    assert F.cross_entropy(rare_wrong, labels) == F.cross_entropy(common_wrong, labels)
    assert loss(rare_wrong, labels) > 5 * loss(common_wrong, labels)


def test_weighted_loss_keeps_cross_entropy_scale_over_the_training_rows():
    counts = [90, 9, 1]
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    logits = torch.zeros(100, 3)  # every row has loss log 3
    loss = build_loss("weighted_cross_entropy", train_label_counts=counts)
    assert torch.isclose(loss(logits, labels), F.cross_entropy(logits, labels))


def test_pairwise_losses_prefer_a_larger_margin():
    labels = torch.tensor([1, 1, 0, 0])
    good = torch.tensor([2.0, 1.0, -1.0, 0.0])  # preferred scores above their rejected pair
    bad = torch.tensor([-1.0, 0.0, 2.0, 1.0])
    assert pairwise_ranking(good, labels) < pairwise_ranking(bad, labels)
    assert pairwise_ranking(good, labels, margin=1.0) == 0.0
    assert pairwise_ranking(bad, labels, margin=1.0) == pytest.approx(3.0)  # (4 + 2) / 2
    # logistic loss at equal scores is log 2
    assert pairwise_ranking(torch.zeros(4), labels).item() == pytest.approx(0.6931, abs=1e-4)


def test_ranking_loss_learns_to_prefer_the_preferred_item():
    torch.manual_seed(0)
    scorer = torch.nn.Linear(8, 1)
    preferred, rejected = torch.randn(64, 8) + 0.5, torch.randn(64, 8) - 0.5
    x = torch.cat([preferred, rejected])
    labels = torch.cat([torch.ones(64), torch.zeros(64)]).long()
    loss_fn = build_loss("pairwise_ranking")
    opt = torch.optim.SGD(scorer.parameters(), lr=0.5)

    def accuracy() -> float:
        s = scorer(x).squeeze(-1)
        return (s[:64] > s[64:]).float().mean().item()

    before = accuracy()
    for _ in range(20):
        opt.zero_grad()
        loss_fn(scorer(x), labels).backward()
        opt.step()
    assert before < 0.6 < 0.95 < accuracy()


def test_unknown_loss_and_missing_weights_are_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge")
    with pytest.raises(ValueError, match="class_weights or train_label_counts"):
        build_loss("weighted_cross_entropy")
