"""LP-FT: start fine-tuning from a linear probe instead of a random classification head.

Why: a random head sends large, meaningless gradients into the pre-trained encoder during the
first steps and distorts features that were already good (Kumar et al. 2022, "Fine-Tuning can
Distort Pretrained Features"). Fitting the head first, as a logistic regression on the frozen
features the head actually reads, and then fine-tuning everything, starts from a model that is
already as good as the probe. `adapt.head_init: linear_probe` switches it on:

    tunewise run configs/banking77.yaml adapt.head_init=linear_probe

The features are whatever enters the model's last Linear layer with one output per label (BERT:
the pooled [CLS] vector after the pooler), the vectors models/features.py captures for the
out-of-scope scores too, so no architecture needs its own code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tunewise.data.encode import Encoded
from tunewise.models.features import head_layer, logits_and_features

PROBE_C = 1.0  # scikit-learn's default: a confident but not saturated head


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
    head = head_layer(model)
    features = logits_and_features(model, data, batch_size)[1]
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
