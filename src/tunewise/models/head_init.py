"""LP-FT: start fine-tuning from a linear probe instead of a random classification head.

Why: a random head sends large, meaningless gradients into the pre-trained encoder during the
first steps and distorts features that were already good (Kumar et al. 2022, "Fine-Tuning can
Distort Pretrained Features"). Fitting the head first, as a logistic regression on the frozen
features the head actually reads, and then fine-tuning everything, starts from a model that is
already as good as the probe. `adapt.head_init: linear_probe` switches it on:

    tunewise run configs/banking77.yaml adapt.head_init=linear_probe

The features are whatever enters the model's last Linear layer with one output per label (BERT:
the pooled [CLS] vector after the pooler), captured with a forward pre-hook, so no architecture
needs its own code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tunewise.data.encode import Encoded, collate, eval_batches

PROBE_C = 1.0  # scikit-learn's default: a confident but not saturated head


def head_layer(model: nn.Module, n_labels: int) -> nn.Linear:
    """The last Linear layer with one output per label: the one that writes the logits."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_labels]
    if not found:
        raise ValueError(f"no Linear layer with {n_labels} outputs: cannot find the head")
    return found[-1]


@torch.inference_mode()
def head_inputs(model: nn.Module, head: nn.Linear, data: Encoded, batch_size: int) -> np.ndarray:
    """The vectors the head receives for each row (eval mode, so no dropout), in input order."""
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(data), head.in_features), dtype=np.float32)
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].float()))
    try:
        for rows in eval_batches(data.lengths(), batch_size):
            batch = collate(data, rows)
            batch.pop("labels")
            seen.clear()
            model(**{k: v.to(device) for k, v in batch.items()})
            out[rows] = seen[-1].cpu().numpy()
    finally:
        hook.remove()
    return out


def fit_probe(features: np.ndarray, labels: np.ndarray, n_labels: int, seed: int, c: float):
    """Weights and bias of a multinomial logistic regression, in the raw feature space.

    Features are centred and divided by one global scale for a well-conditioned fit; both are
    folded back into the weights and bias, so `features @ W.T + b` gives the probe's logits
    directly. One scale, not one per dimension: a pooled encoder has near-constant dimensions,
    and dividing by their tiny spread gives them weights in the thousands, whose gradients then
    wreck the head in the first epoch of fine-tuning.
    """
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(0)
    std = float((features - mean).std()) + 1e-6
    probe = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    probe.fit((features - mean) / std, labels)
    weight = np.zeros((n_labels, features.shape[1]), dtype=np.float64)
    bias = np.full(n_labels, -1e4 if len(probe.classes_) < n_labels else 0.0)  # unseen: never
    coef = probe.coef_ if len(probe.classes_) > 2 else np.vstack([-probe.coef_, probe.coef_]) / 2
    inter = (
        probe.intercept_
        if len(probe.classes_) > 2
        else np.r_[-probe.intercept_, probe.intercept_] / 2
    )
    weight[probe.classes_] = coef / std
    bias[probe.classes_] = inter - (coef / std) @ mean
    return weight, bias


def init_head_from_probe(
    model: Any, data: Encoded, *, seed: int, batch_size: int = 128, c: float = PROBE_C
) -> dict[str, Any]:
    """Replace the head's weights by a linear probe fitted on `data`; return what was done."""
    n_labels = int(model.config.num_labels)
    head = head_layer(model, n_labels)
    features = head_inputs(model, head, data, batch_size)
    y = np.asarray(data.labels)
    weight, bias = fit_probe(features, y, n_labels, seed, c)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    logits = features @ weight.T + bias
    return {
        "method": "linear_probe",
        "C": c,
        "train_accuracy": float((logits.argmax(1) == y).mean()),
    }
