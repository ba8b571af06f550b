"""Dropout with masks drawn by `torch.rand` on CPU, where `bernoulli_` is slow.

A profile of a MiniLM training step on the 2-core CPU (bf16, batch 32) put dropout's
`bernoulli_` at 16% of the step: PyTorch's CPU dropout draws its mask one Bernoulli sample at a
time. `rand(shape) >= p` keeps each unit with the same probability 1 - p, from a vectorised
uniform generator. `use_rand_dropout(model)` swaps every `nn.Dropout` for `RandDropout` and
routes attention with dropout through `attention` (softmax, a rand mask, then the value
product); attention without dropout (evaluation), causal or grouped-query attention still goes
to PyTorch's SDPA. Only the random stream changes, not what is computed. `training/loop.py`
applies it on CPU only; CUDA keeps its own fused dropout.

    use_rand_dropout(model)   # before training on CPU
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION = "tunewise_rand_dropout"


def rand_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p)."""
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * keep * (1.0 / (1.0 - p))


class RandDropout(nn.Dropout):
    """`nn.Dropout` drawing its mask with `rand_dropout`; the same module in evaluation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return rand_dropout(x, self.p)


def attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Transformers' attention signature: the SDPA kernel without dropout, else the same product
    with a `rand_dropout` mask on the attention weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = kwargs.get("is_causal") or getattr(module, "is_causal", False)
    if not dropout or causal or getattr(module, "num_key_value_groups", 1) > 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling or query.shape[-1] ** -0.5)
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # True: attend
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:  # additive
        scores = scores + attention_mask
    weights = rand_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def use_rand_dropout(model: nn.Module) -> int:
    """Swap `model`'s dropout for the rand-mask kind in place; return how many modules changed.

    Attention switches only on transformers models that run its SDPA attention (BERT and most
    encoders); others (a PEFT wrapper, eager attention) get the module swap alone. The choice is
    not saved with the model: a saved config still loads with the default attention.
    """
    from transformers import AttentionInterface, PreTrainedModel
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    swapped = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, RandDropout(child.p).train(child.training))
                swapped += 1
    if isinstance(model, PreTrainedModel) and model.config._attn_implementation == "sdpa":
        AttentionInterface.register(ATTENTION, attention)
        AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the masks SDPA would get
        model.set_attn_implementation(ATTENTION)
    return swapped
