"""Learning-rate schedules: linear warmup, then one of six shapes, as multipliers of the peak lr.

Each shape is a pure function of progress in [0, 1] after warmup, so they are easy to test and
to plot. Example: `lr_multiplier("cosine", step=50, total=100, warmup=10)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

RESTART_CYCLES = 3  # cosine_restarts: number of cosine cycles
STEP_MILESTONES = (0.5, 0.75)  # step: multiply by STEP_GAMMA at these fractions of training
STEP_GAMMA = 0.1
EXPONENTIAL_FINAL = 0.01  # exponential: the multiplier reached at the last step

SHAPES: dict[str, Callable[[float], float]] = {
    "constant": lambda p: 1.0,
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "cosine_restarts": lambda p: 0.5 * (1.0 + math.cos(math.pi * ((p * RESTART_CYCLES) % 1.0))),
    "step": lambda p: STEP_GAMMA ** sum(p >= m for m in STEP_MILESTONES),
    "exponential": lambda p: EXPONENTIAL_FINAL**p,
}


def lr_multiplier(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return SHAPES[schedule](min(1.0, progress))


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total: int, warmup: int):
    """A LambdaLR following `lr_multiplier`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(schedule, step, total, warmup)
    )
