"""Checkpoint averaging: the mean of the weights seen at the last N evaluations.

Why: late in training the weights wander around a wide minimum; their average usually sits
nearer its centre and generalises a little better than any single point (stochastic weight
averaging, Izmailov et al. 2018; checkpoint averaging in machine translation). It costs one
copy of the weights per kept evaluation and one extra validation pass. The average is kept only
when its validation score is at least the early-stopped model's, so it can never make the
chosen model worse on validation:

    tunewise run configs/banking77.yaml train.average_last=3
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunewise.training.callbacks import LOWER_IS_BETTER


class CheckpointAverage:
    """Remembers the weights at the last `n` evaluations; `wrap(evaluate)` feeds it."""

    def __init__(self, n: int):
        self.n = n
        self.kept_: deque[dict[str, torch.Tensor]] = deque(maxlen=n)

    def wrap(self, evaluate: Callable[[nn.Module], dict[str, float]]):
        """The same evaluation function, taking a copy of the weights it is shown first."""

        def remembering(model: nn.Module) -> dict[str, float]:
            self.kept_.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return evaluate(model)

        return remembering

    def average(self) -> dict[str, torch.Tensor]:
        """The mean of every floating-point tensor; others (position ids) from the latest copy."""
        latest = self.kept_[-1]
        out = {}
        for key, value in latest.items():
            if value.is_floating_point():
                out[key] = torch.stack([k[key].float() for k in self.kept_]).mean(0).to(value.dtype)
            else:
                out[key] = value
        return out


def apply_average(
    model: nn.Module,
    averager: CheckpointAverage,
    evaluate: Callable[[nn.Module], dict[str, float]],
    metric: str,
    current: float | None = None,
) -> dict[str, Any]:
    """Load the averaged weights into `model` if they score at least `current` on validation.

    `current` is the validation `metric` of the model as it stands (the early-stopped best);
    None evaluates it first. Returns the record for training.json.
    """
    if len(averager.kept_) < 2:
        return {"kept": False, "evaluations": len(averager.kept_), "reason": "fewer than 2"}
    if current is None:
        current = evaluate(model)[metric]
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(averager.average())
    scores = evaluate(model)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    kept = sign * (scores[metric] - current) >= 0
    if not kept:
        model.load_state_dict(own)
    return {
        "kept": bool(kept),
        "evaluations": len(averager.kept_),
        "metric": metric,
        "averaged": scores,
        "single": current,
    }
