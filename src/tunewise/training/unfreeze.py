"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the head first, then one more layer down.

Why: a fresh random head sends large, noisy gradients into the pre-trained layers during the
first steps; training the head alone first, then unfreezing from the top (most task-specific)
down to the embeddings (most general), limits that damage and the forgetting it causes.

It is a loop callback. The optimizer is built before the first step, over every parameter the
adapt method made trainable, so unfreezing later only flips `requires_grad`; a frozen parameter
gets no gradient, and AdamW leaves a parameter without a gradient untouched (no decay either).

    fit(model, data, evaluate, cfg.train, seed=13, callbacks=[GradualUnfreezing(every=1)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tunewise.models.layers import depths

UNITS = ("epoch", "step")


@dataclass
class GradualUnfreezing:
    """Stage s trains the parameters within s layers of the top; a stage lasts `every` units."""

    every: int
    unit: str = "epoch"  # "epoch" or "step"
    depths_: dict[str, int] = field(default_factory=dict)
    stage_: int = -1
    log_: list[dict[str, int]] = field(default_factory=list)

    def on_step_begin(self, state: Any, model: nn.Module) -> None:
        """Before each optimizer step: unfreeze the layers this step's stage allows."""
        params = dict(model.named_parameters())
        if not self.depths_:  # first call: remember what the adapt method made trainable
            self.depths_ = {n: d for n, d in depths(model).items() if params[n].requires_grad}
        clock = state.step if self.unit == "step" else state.epoch
        stage = clock // self.every
        if stage == self.stage_:
            return
        top = max(self.depths_.values(), default=0)
        for name, d in self.depths_.items():
            params[name].requires_grad = d >= top - stage
        self.stage_ = stage
        self.log_.append({"step": state.step, "stage": stage, "trainable_depth_from": top - stage})
