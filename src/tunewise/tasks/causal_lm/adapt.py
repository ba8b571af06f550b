"""Which weights SFT trains: LoRA on every Linear layer (the default recipe) or all of them.

LoRA on all linear layers (attention and MLP projections; PEFT's "all-linear" leaves the
output head alone) comes close to full fine-tuning for chat SFT at a small fraction of the
trainable weights, and the frozen base limits forgetting. QLoRA (`sft.quantize: 4bit`) loads
the base in 4-bit NF4 on CUDA when bitsandbytes is installed:

    model, params = adapt_causal_lm(model, cfg)   # cfg.adapt.method: lora | full
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

from torch import nn

from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.models.adapt import count_parameters, describe_parameters


def adapt_causal_lm(model: nn.Module, cfg: Any) -> tuple[nn.Module, dict[str, float]]:
    """The model to train (adapt.method lora or full, checked with the config), and its trainable
    / total parameter counts."""
    method = cfg.adapt.method
    if method == "lora":
        model = add_causal_lora(model, cfg.adapt.lora, cfg.sft.quantize == "4bit")
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    params = count_parameters(model)
    console.log(describe_parameters(params, method))
    return model, params


def add_causal_lora(model: nn.Module, lora: Any, quantized: bool = False) -> nn.Module:
    """PEFT LoRA for a causal LM; target_modules null means every Linear layer but the head."""
    from peft import LoraConfig, TaskType, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if lora.target_modules else "all-linear",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def quantization_config(quantize: str) -> Any:
    """transformers' 4-bit NF4 config for QLoRA, or None; errors say what is missing."""
    if quantize == "none":
        return None
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package")
    if missing:
        fix = "set sft.quantize: none (plain LoRA), or install bitsandbytes on a CUDA machine"
        msg = f"4-bit QLoRA needs {' and '.join(missing)}"
        raise InputError([Problem("config", None, "sft.quantize", msg, fix)])
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
