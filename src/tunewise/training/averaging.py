"""Weight averaging: the mean of the last N checkpoints, and interpolation with the start.

Checkpoint averaging: the mean of the weights seen at the last N evaluations.

Why: late in training the weights wander around a wide minimum; their average usually sits
nearer its centre and generalises a little better than any single point (stochastic weight
averaging, Izmailov et al. 2018; checkpoint averaging in machine translation). It costs one
copy of the weights per kept evaluation and one extra validation pass. The average is kept only
when its validation score is at least the early-stopped model's, so it can never make the
chosen model worse on validation:

    tunewise run configs/banking77.yaml train.average_last=3

Interpolation with the start (WiSE-FT, Wortsman et al. 2022): fine-tuning moves the weights away
from a start that was already good (with `adapt.head_init: linear_probe`, the pre-trained
encoder plus a fitted probe); points on the straight line between the two often beat both ends.
`train.interpolate_start: true` scores (1 - a) * start + a * trained for a in ALPHAS on validation
and keeps the best only if it is at least as good as the trained model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunewise.training.callbacks import LOWER_IS_BETTER

ALPHAS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # weight of the trained end


def weights_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every tensor in the model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class CheckpointAverage:
    """Remembers the weights at the last `n` evaluations; `wrap(evaluate)` feeds it."""

    def __init__(self, n: int):
        self.n = n
        self.kept_: deque[dict[str, torch.Tensor]] = deque(maxlen=n)

    def wrap(self, evaluate: Callable[[nn.Module], dict[str, float]]):
        """The same evaluation function, taking a copy of the weights it is shown first."""

        def remembering(model: nn.Module) -> dict[str, float]:
            self.kept_.append(weights_copy(model))
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
    own = weights_copy(model)
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


def interpolate_with_start(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    metric: str,
    current: float | None = None,
) -> dict[str, Any]:
    """Load the best (1 - a) * start + a * trained on validation `metric`, if no worse than now.

    `current` is the trained model's validation `metric` (None evaluates it first). Returns the
    record for training.json: every alpha's score and the one kept (1.0: the trained model).
    """
    if current is None:
        current = evaluate(model)[metric]
    trained = weights_copy(model)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    results: dict[float, dict[str, float]] = {}
    best_alpha, best = 1.0, current
    for alpha in ALPHAS:
        model.load_state_dict(_mix(start, trained, alpha))
        results[alpha] = evaluate(model)
        if sign * (results[alpha][metric] - best) > 0:
            best_alpha, best = alpha, results[alpha][metric]
    model.load_state_dict(_mix(start, trained, best_alpha))
    return {
        "metric": metric,
        "trained": current,
        "by_alpha": {str(a): r[metric] for a, r in results.items()},
        "alpha": best_alpha,
        "chosen": results.get(best_alpha),  # every validation score of the kept mix
    }


def _mix(start: dict, trained: dict, alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * start + alpha * trained for floating tensors; others as trained."""
    if alpha == 1.0:
        return trained
    return {
        k: torch.lerp(start[k].to(v.dtype), v, alpha) if v.is_floating_point() else v
        for k, v in trained.items()
    }
