"""Choose which parameters train: small functions over `named_parameters()`.

`full` trains everything; `head` is a linear probe (encoder frozen); `freeze` freezes the
embeddings and the first N encoder layers; `bitfit` trains only bias terms plus the head
(Ben Zaken et al., 2022). Example: `adapt(model, "bitfit")` then `count_parameters(model)`.
"""

from __future__ import annotations

import re

from torch import nn

from tunewise.errors import InputError, Problem

HEAD_PATTERN = re.compile(r"^(classifier|score|pre_classifier|lm_head)\.")
LAYER_PATTERN = re.compile(r"\.layers?\.(\d+)\.")


def _head(name: str) -> bool:
    return bool(HEAD_PATTERN.match(name))


def adapt(model: nn.Module, method: str, freeze_layers: int = 0) -> nn.Module:
    """Set `requires_grad` per the method; returns the same model."""
    rules = {
        "full": lambda name: True,
        "head": _head,
        "bitfit": lambda name: _head(name) or name.endswith(".bias"),
        "freeze": lambda name: _head(name) or _above(name, freeze_layers),
    }
    if method not in rules:
        raise InputError(
            [
                Problem(
                    "config",
                    None,
                    "adapt.method",
                    f"'{method}' is not available in this version",
                    f"use one of {', '.join(rules)}",
                )
            ]
        )
    for name, param in model.named_parameters():
        param.requires_grad = rules[method](name)
    return model


def _above(name: str, first_trainable: int) -> bool:
    """True for parameters after the embeddings and the first `first_trainable` layers."""
    if "embeddings" in name:
        return False
    match = LAYER_PATTERN.search(name)
    return match is None or int(match.group(1)) >= first_trainable


def count_parameters(model: nn.Module) -> dict[str, float]:
    """Trainable, total and percentage: printed by the run and stored in metrics.json."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "percent": round(100.0 * trainable / total, 4)}
