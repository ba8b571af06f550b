"""Training losses as plain callables `loss_fn(logits, labels) -> scalar`, chosen by `train.loss`.

Why more than cross-entropy: on long-tailed data the frequent classes dominate the gradient of
plain cross-entropy. Weighting each class by its inverse frequency, or down-weighting examples
the model already gets right (focal loss, Lin et al. 2017), trades a little accuracy on frequent
classes for recall on rare ones, which is what macro-F1 rewards. `pairwise_ranking` trains a
single-score model (reranker, reward model) from (query, preferred, rejected) rows.

    loss_fn = build_loss("focal", gamma=2.0, label_smoothing=0.1)
    loss = loss_fn(model(**batch).logits, batch["labels"])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from tunewise.config.schema import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy in float32; with `weight`, each row's loss times its class's weight.

    Still a plain mean over rows, not PyTorch's sum(w * loss) / sum(w): a per-row mean lets
    micro-batches add up exactly under gradient accumulation. With weights normalised to mean 1
    over the training rows (`build_loss` does it) both agree in expectation.
    """
    if weight is None:
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    rows = F.cross_entropy(
        logits.float(), labels, reduction="none", label_smoothing=label_smoothing
    )
    return (rows * weight.to(logits.device)[labels]).mean()


def smoothed_targets(labels: torch.Tensor, n_classes: int, label_smoothing: float) -> torch.Tensor:
    """One-hot targets mixed with the uniform distribution, as `F.cross_entropy` smooths them."""
    onehot = F.one_hot(labels, n_classes).float()
    return onehot * (1.0 - label_smoothing) + label_smoothing / n_classes


def focal(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss: cross-entropy scaled by (1 - p)^gamma, so easy examples count less.

    `alpha` is one factor for every class or a tensor with one per class (alpha_t); with
    gamma 0 and no alpha this is exactly (label-smoothed) cross-entropy.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    per_class = (1.0 - log_p.exp()).pow(gamma) * -log_p
    if isinstance(alpha, torch.Tensor):
        per_class = per_class * alpha.to(logits.device)
    elif alpha is not None:
        per_class = per_class * alpha
    target = smoothed_targets(labels, logits.shape[-1], label_smoothing)
    return (target * per_class).sum(-1).mean()


def pairwise_ranking(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Loss over (preferred, rejected) score pairs: label 1 marks preferred rows, 0 rejected.

    The i-th preferred row pairs with the i-th rejected row (the order `collate_pairs` writes).
    Without `margin` it is the logistic (RankNet / Bradley-Terry) loss -log sigmoid(s+ - s-),
    with smoothing toward 1/2; with a margin it is the hinge max(0, margin - (s+ - s-)).
    """
    s = scores.float().reshape(-1)
    diff = s[labels == 1] - s[labels == 0]
    if margin is not None:
        return F.relu(margin - diff).mean()
    target = torch.full_like(diff, 1.0 - label_smoothing / 2)
    return F.binary_cross_entropy_with_logits(diff, target)


def rdrop_consistency(logits: torch.Tensor) -> torch.Tensor:
    """R-Drop's regulariser (Liang et al. 2021): `logits` are a batch run twice, stacked, so each
    half saw its own dropout masks; returns the symmetric KL divergence between the halves'
    predicted distributions, (KL(p1 || p2) + KL(p2 || p1)) / 2, averaged over rows."""
    a, b = F.log_softmax(logits.float(), dim=-1).chunk(2)
    kl_ab = F.kl_div(b, a, log_target=True, reduction="batchmean")  # KL(p_a || p_b)
    kl_ba = F.kl_div(a, b, log_target=True, reduction="batchmean")
    return (kl_ab + kl_ba) / 2


def balanced_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency class weights n / (k * n_c) (scikit-learn's "balanced"), mean 1."""
    c = torch.tensor(counts, dtype=torch.float32).clamp(min=1.0)
    return c.sum() / (len(counts) * c)


def _class_weights(given: Sequence[float] | None, counts: Sequence[int] | None) -> torch.Tensor:
    """Given or balanced weights, scaled to mean 1 over the training rows (over classes when the
    counts are unknown), so the loss keeps cross-entropy's scale and equal weights give exactly
    cross-entropy."""
    if given is None and counts is None:
        raise ValueError("weighted_cross_entropy needs class_weights or train_label_counts")
    w = torch.tensor(list(given), dtype=torch.float32) if given is not None else None
    if counts is None:
        assert w is not None
        return w / w.mean()
    n = torch.tensor(list(counts), dtype=torch.float32)
    w = balanced_weights(list(counts)) if w is None else w
    return w * n.sum() / (w * n).sum()


def build_loss(
    name: str,
    *,
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    class_weights: Sequence[float] | None = None,
    margin: float | None = None,
    train_label_counts: Sequence[int] | None = None,
) -> LossFn:
    """The loss named `name` with its options bound; unknown names raise ValueError.

    `weighted_cross_entropy` uses `class_weights` when given, else inverse frequencies of
    `train_label_counts` (one count per class id); either way scaled to mean 1 per row.
    """
    if name == "cross_entropy":
        return partial(cross_entropy, label_smoothing=label_smoothing)
    if name == "weighted_cross_entropy":
        weight = _class_weights(class_weights, train_label_counts)
        return partial(cross_entropy, weight=weight, label_smoothing=label_smoothing)
    if name == "focal":
        a = torch.tensor(list(alpha), dtype=torch.float32) if isinstance(alpha, Sequence) else alpha
        return partial(focal, gamma=gamma, alpha=a, label_smoothing=label_smoothing)
    if name == "pairwise_ranking":
        return partial(pairwise_ranking, margin=margin, label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
