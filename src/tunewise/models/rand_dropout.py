"""Dropout with cheap masks on CPU, where PyTorch draws its random numbers one at a time.

A profile of a MiniLM training step on the 2-core CPU (bf16, batch 32) put dropout's
`bernoulli_` at 16% of the step, and `torch.rand` masks still at 9%: PyTorch's CPU generator
(Mersenne Twister) fills a tensor serially, one 32-bit draw per element. `keep_mask` instead
hashes a counter, as GPU dropout does with Philox: one draw from torch's generator seeds the
call, two rounds of the `lowbias32` integer hash (Wellons) turn the counter into 32 random bits,
and each half decides one unit (16 bits: the rate is p rounded to a multiple of 2^-16). It is
vectorised and threaded, 2.7x faster than `torch.rand` on a MiniLM hidden state, and
reproducible under `torch.manual_seed`.

`use_rand_dropout(model)` swaps every `nn.Dropout` for `RandDropout` and routes attention with
dropout, or in bf16, through `attention` (softmax over rows padded to a multiple of 16, where
PyTorch's CPU kernel is fast, a mask, then the value product: PyTorch's SDPA is several times
slower in bf16 on CPU); fp32 attention without dropout (evaluation), causal or grouped-query
attention still goes to SDPA. Only the random stream changes, not what is computed. A mask
multiplies as 0s and 1s, then the scale (`where` is slow on CPU). `training/loop.py` applies it
on CPU only; CUDA keeps its own fused dropout.

    use_rand_dropout(model)   # before training on CPU
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION = "tunewise_rand_dropout"


def rand_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p)."""
    keep, p = keep_mask(x.shape, p, x.device)
    # x times 0 or 1, then the scale: the same numbers as `where(keep, x / (1 - p), 0)` at half
    # the cost forward and backward (CPU `where` and bool-to-float casts are slow; a uint8 view
    # casts fast)
    return (x * keep.view(torch.uint8).to(x.dtype)).mul_(1.0 / (1.0 - p))


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask, True with probability 1 - p', and the rate p' it was drawn at: p itself
    off the CPU (`torch.rand`), p rounded to a multiple of 2^-16 on it (the hashed counter)."""
    if device.type != "cpu":
        return torch.rand(shape, device=device) >= p, p
    n = shape.numel()
    drop = min(round(p * 65536), 65535)  # p < 1 stays under 1: the kept units' scale is finite
    seed = int(torch.randint(-(2**31), 2**31 - 1, ()))  # torch's generator: manual_seed holds
    bits = _lowbias32(_hashed_counter((n + 1) // 2) + seed)  # hash(hash(i) + seed)
    keep = bits.view(torch.int16)[:n] >= drop - 32768  # uniform over -32768 ... 32767
    return keep.view(shape), drop / 65536


_HASHED = torch.arange(0, dtype=torch.int32)


def _hashed_counter(n: int) -> torch.Tensor:
    """lowbias32(0 ... n-1), cut from one cached range: the seed-free half of the hash."""
    global _HASHED
    if len(_HASHED) < n:
        _HASHED = _lowbias32(torch.arange(max(n, 2 * len(_HASHED)), dtype=torch.int32))
    return _HASHED[:n]


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' lowbias32 integer hash, in place on int32 (products wrap around, and the
    masks after each shift make it the unsigned shift)."""
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B - 2**32)):
        x ^= (x >> shift) & ((1 << (32 - shift)) - 1)
        x *= factor
    x ^= (x >> 16) & 0xFFFF
    return x


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
    """Transformers' attention signature: the same product as SDPA, with a `rand_dropout` mask
    on the attention weights when training. PyTorch's SDPA kernel still runs fp32 attention
    without dropout, and causal or grouped-query attention; in bf16 on CPU it is slower than
    the plain product (17 tokens, batch 32: 0.76 against 0.30 ms forward, 11.1 against 1.0 ms
    forward and backward)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = kwargs.get("is_causal") or getattr(module, "is_causal", False)
    bf16_cpu = query.dtype == torch.bfloat16 and query.device.type == "cpu"
    if causal or getattr(module, "num_key_value_groups", 1) > 1 or not (dropout or bf16_cpu):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling or query.shape[-1] ** -0.5)
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # True: attend
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    elif attention_mask is not None:  # additive
        scores = scores + attention_mask
    weights = softmax_padded(scores)
    if dropout:
        weights = rand_dropout(weights, dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def softmax_padded(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, computed on rows padded to a multiple of 16 with the
    lowest float (weight 0): PyTorch's CPU softmax is several times slower on rows of other
    lengths (17 keys, batch 32 x 12 heads, bf16: 479 against 196 µs forward and backward)."""
    n = scores.shape[-1]
    pad = -n % 16
    if not pad:
        return torch.softmax(scores, dim=-1)
    padded = torch.nn.functional.pad(scores, (0, pad), value=torch.finfo(scores.dtype).min)
    return torch.softmax(padded, dim=-1)[..., :n]


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
