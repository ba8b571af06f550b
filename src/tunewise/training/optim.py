"""AdamW with decoupled weight decay, not applied to biases or normalisation weights.

Decaying LayerNorm gains and biases pulls them toward zero for no regularisation benefit;
every major recipe (BERT, HF Trainer, nanoGPT) exempts them.
"""

from __future__ import annotations

import torch
from torch import nn

NO_DECAY_MODULES = (nn.LayerNorm, nn.Embedding)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of trainable parameters that get no weight decay: biases and normalisation weights."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            is_norm = isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()
            if param_name == "bias" or is_norm:
                names.add(full)
    return names


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, in a decay and a no-decay group."""
    skip = no_decay_names(model)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if n not in skip], "weight_decay": weight_decay},
        {"params": [p for n, p in trainable if n in skip], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
