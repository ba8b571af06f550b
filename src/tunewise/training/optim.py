"""AdamW with decoupled weight decay, not applied to biases or normalisation weights.

Decaying LayerNorm gains and biases pulls them toward zero for no regularisation benefit;
every major recipe (BERT, HF Trainer, nanoGPT) exempts them. Optional layer-wise learning-rate
decay (ELECTRA, BEiT) gives each layer below the top a smaller learning rate.
"""

from __future__ import annotations

import torch
from torch import nn

from tunewise.models.layers import depths

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


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, grouped by weight decay and learning rate.

    With `layer_decay` (e.g. 0.8) a parameter `k` layers below the top gets lr * decay**k
    (layer-wise learning-rate decay: lower layers hold general features, so they move less).
    The top group comes first, so `get_last_lr()[0]` is the head's learning rate.
    """
    skip = no_decay_names(model)
    scale = layer_scales(model, layer_decay) if layer_decay else {}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (scale.get(name, 1.0), 0.0 if name in skip else weight_decay)
            groups.setdefault(key, []).append(param)
    ordered = sorted(groups.items(), key=lambda item: (-item[0][0], -item[0][1]))
    params = [p for _, ps in ordered for p in ps]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(  # fused: one kernel over all tensors, not ~10 ops per tensor
        [{"params": ps, "lr": lr * m, "weight_decay": wd} for (m, wd), ps in ordered],
        lr=lr,
        fused=fused or None,
    )


def layer_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Learning-rate multiplier per parameter name: decay ** (layers below the top)."""
    d = depths(model)
    top = max(d.values(), default=0)
    return {name: decay ** (top - depth) for name, depth in d.items()}
