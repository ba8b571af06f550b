"""Precision on the device at hand: bf16 autocast where the hardware runs it fast, else fp32.

Training, evaluation, serving and the baselines all ask here, so a run is scored in the
precision it was trained in:

    bf16 = resolve_precision(cfg.train.precision, model_device(model)) == "bf16"
    with autocast(model, bf16):
        logits = model(**batch).logits
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is fast here (CUDA with bf16, or a CPU with AVX-512 bf16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` becomes bf16 where supported, else fp32; `bf16` and `fp32` stay as asked."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def uses_bf16(precision: str, model: nn.Module) -> bool:
    """Whether `model` runs under bf16 autocast for a run whose train.precision is `precision`."""
    return resolve_precision(precision, model_device(model)) == "bf16"


def autocast(model: nn.Module, bf16: bool):
    """bf16 autocast on the model's device, or a no-op context."""
    device = model_device(model)
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
