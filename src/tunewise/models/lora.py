"""LoRA through PEFT: low-rank updates W + (alpha / r) B A on chosen Linear layers (Hu 2021).

Why: a rank-8 update of the attention projections trains well under 1% of the weights, yet
usually lands close to full fine-tuning; the frozen base cannot drift far, so less forgetting.
The task head trains in full and is saved with the adapter (PEFT's `modules_to_save`).
A run saves both `adapter/` (small, PEFT format) and a merged `model/` that plain
`transformers.pipeline` loads:

    model = add_lora(model, r=8, alpha=16, dropout=0.1)
    ... train ...
    plain = save_adapter_and_merge(model, run_dir / rundir.ADAPTER)
    plain.save_pretrained(run_dir / rundir.MODEL)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import nn

from tunewise.core.errors import InputError, Problem
from tunewise.models.layers import HEAD_PATTERN


def add_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.1,
    target_modules: list[str] | None = None,
) -> nn.Module:
    """Wrap a sequence classifier with LoRA adapters; None targets PEFT's default per architecture.

    The head modules (classifier, pre_classifier, score) train fully and are saved with the
    adapter, since a fresh head has no pre-trained weights to adapt.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    heads = [name for name, _ in model.named_children() if HEAD_PATTERN.match(name + ".")]
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # PEFT hints int; alpha / r works for floats
        lora_dropout=dropout,
        target_modules=list(target_modules) if target_modules else None,
        modules_to_save=heads or None,
    )
    try:
        with warnings.catch_warnings():  # PEFT calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as exc:
        raise InputError([_target_problem(model, exc)]) from None


def _target_problem(model: nn.Module, exc: ValueError) -> Problem:
    """Name the Linear layers a user could target when PEFT cannot pick or find them."""
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_linear(m)})
    return Problem(
        "config",
        None,
        "adapt.lora.target_modules",
        f"LoRA cannot be applied: {exc}",
        f"name Linear layers to adapt, e.g. from: {', '.join(linear[:12])}",
    )


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def is_peft(model: nn.Module) -> bool:
    """True for a PEFT-wrapped model (it has adapters to save and merge)."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_adapter_and_merge(model: Any, adapter_dir: Path) -> nn.Module:
    """Save the adapter (safetensors, head included), then return the merged plain model.

    Merging folds B A into W, so the returned model has the original architecture and runs
    at the base model's speed; it is no longer wrapped and trains no adapters.
    """
    model.save_pretrained(str(adapter_dir), safe_serialization=True)
    return model.merge_and_unload()
