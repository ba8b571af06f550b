"""R-Drop's two passes over a batch, parting only where training starts.

R-Drop (Liang et al., 2021) runs every batch twice, each copy under its own dropout masks, and
adds alpha x the symmetric KL between the two predictions to the loss
(`losses.rdrop_consistency`). Stacking the batch twice at the input doubles the forward pass of
every layer, frozen ones included. Frozen layers below the first trainable block get no gradient,
so when the embeddings and the lower blocks are frozen (the shipped BANKING77 recipe freezes 3 of
6) `twice` runs them once and doubles the batch at the input of the first trainable block.

What changes: the two copies share the frozen layers' dropout masks and differ in the trainable
layers' masks. The consistency term then asks the trainable layers to agree with themselves under
their own dropout, not under the frozen layers' noise as well. Models with causal attention
(decoder classifiers read the last real token, found from the input ids), gradient
checkpointing and models with more than one stack of blocks keep the stacked input.

    logits = twice(model, batch)   # 2 x rows: the batch's two copies, one after the other
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import nn

from tunewise.models.layers import BLOCK_PATTERN, depth, num_layers

_BLOCKS: WeakKeyDictionary[nn.Module, list[nn.Module]] = WeakKeyDictionary()


def twice(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of `batch` (no labels) run twice, stacked: rows 0..n-1, then their copies."""
    rows = len(next(iter(batch.values())))
    blocks = upper_blocks(model)
    if blocks:
        with doubled_at(blocks, rows):
            logits = model(**batch).logits
    else:
        logits = model(**{k: torch.cat([v, v]) for k, v in batch.items()}).logits
    if logits.shape[0] != 2 * rows:
        raise RuntimeError(f"R-Drop expected {2 * rows} rows of logits, got {logits.shape[0]}")
    return logits


def upper_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks from the first trainable one up, when everything beneath it is frozen; else
    [] (the embeddings train, only the head trains, causal attention, gradient checkpointing,
    several stacks of blocks). Called every step: what trains may change (gradual unfreezing),
    the blocks do not, so they are found once per model."""
    if model not in _BLOCKS:
        _BLOCKS[model] = _blocks(model)
    blocks = _BLOCKS[model]
    n = len(blocks)
    trained = [depth(name, n) for name, p in model.named_parameters() if p.requires_grad]
    lowest = min(trained, default=0)
    return blocks[lowest - 1 :] if 1 <= lowest <= n else []


def _blocks(model: nn.Module) -> list[nn.Module]:
    """`model`'s blocks in order, or [] where doubling inside it cannot apply."""
    flags = ("is_causal", "gradient_checkpointing")  # a recomputed block would miss the hooks
    if any(getattr(m, flag, False) is True for m in model.modules() for flag in flags):
        return []
    found = [(int(m.group(1)), module) for name, module in model.named_modules()
             if (m := BLOCK_PATTERN.search(name))]  # fmt: skip
    blocks = dict(found)
    n = num_layers(name for name, _ in model.named_parameters())
    if len(blocks) != len(found) or sorted(blocks) != list(range(n)):
        return []
    return [blocks[i] for i in range(n)]


@contextmanager
def doubled_at(blocks: list[nn.Module], rows: int):
    """While open, every per-row tensor going into `blocks` is stacked twice: the hidden states at
    the first block, the attention mask (still `rows` long) at each of them."""

    def double(module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        return _twice(args, rows), {k: _twice(v, rows) for k, v in kwargs.items()}

    handles = [b.register_forward_pre_hook(double, with_kwargs=True) for b in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _twice(x: Any, rows: int) -> Any:
    if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] == rows:
        return torch.cat([x, x])
    if isinstance(x, tuple):
        return tuple(_twice(v, rows) for v in x)
    return x
