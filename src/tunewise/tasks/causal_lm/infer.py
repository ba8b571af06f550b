"""What a causal LM says and how surprised it is: greedy replies, perplexity, continuation scores.

Replies are generated greedily (deterministic, so baseline and tuned are compared on equal
terms) in left-padded batches sorted by prompt length. Perplexity counts only labelled tokens
(the assistant's), so it measures the replies, not the prompts:

    replies = generate(model, tokenizer, prompts, max_new_tokens=64)
    ppl = perplexity(model, rows)          # exp(mean NLL of assistant tokens)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from tunewise.core.device import autocast
from tunewise.tasks.causal_lm.packing import collate_padded
from tunewise.tasks.causal_lm.template import IGNORE, SFTRows


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    bf16: bool = False,
) -> list[str]:
    """Greedy replies to token-id prompts, decoded without special tokens, in input order."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} - {None}
    out: list[str] = [""] * len(prompts)
    order = np.argsort([len(p) for p in prompts], kind="stable").tolist()
    for i in range(0, len(order), batch_size):
        part = order[i : i + batch_size]
        width = max(len(prompts[j]) for j in part)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for r, j in enumerate(part):
            ids[r, width - len(prompts[j]) :] = torch.tensor(prompts[j])
            mask[r, width - len(prompts[j]) :] = 1
        with autocast(model, bf16):
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=sorted(stops) or None,
            )
        for r, j in enumerate(part):
            out[j] = tokenizer.decode(gen[r, width:], skip_special_tokens=True).strip()
    return out


@torch.no_grad()
def token_nll(model, rows: SFTRows, batch_size: int = 8, bf16: bool = False) -> tuple[float, int]:
    """Summed negative log-likelihood of all labelled tokens, and how many there were."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    order = np.argsort(rows.lengths(), kind="stable").tolist()
    for i in range(0, len(order), batch_size):
        batch = {
            k: v.to(device) for k, v in collate_padded(rows, order[i : i + batch_size]).items()
        }
        labels = batch.pop("labels")
        with autocast(model, bf16):
            logits = model(**batch).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = labels[:, 1:]
        keep = target != IGNORE
        picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total -= float(picked[keep].sum())
        count += int(keep.sum())
    return total, count


def perplexity(model, rows: SFTRows, batch_size: int = 8, bf16: bool = False) -> float:
    """exp(mean NLL) over labelled tokens; nan when there are none."""
    if not len(rows):
        return math.nan
    total, count = token_nll(model, rows, batch_size, bf16)
    return math.exp(total / count) if count else math.nan


@torch.no_grad()
def continuation_logprobs(
    model, prefix: list[int], continuations: Sequence[list[int]], batch_size: int = 128
) -> np.ndarray:
    """log P(continuation | prefix) for each continuation (all the same length), batched.

    The prefix runs once; its key/value cache is copied and repeated for each batch, so a
    candidate costs only its own few tokens (canary exposure scores hundreds of them).
    """
    import copy

    model.eval()
    device = next(model.parameters()).device
    cont = torch.tensor(np.asarray(continuations), dtype=torch.long, device=device)
    first = model(input_ids=torch.tensor([prefix], device=device), use_cache=True)
    start = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
    out = []
    for i in range(0, len(cont), batch_size):
        part = cont[i : i + batch_size]
        cache = copy.deepcopy(first.cache)
        cache.batch_repeat_interleave(len(part))
        logits = model(input_ids=part[:, :-1], cache=cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, part[:, 1:].unsqueeze(-1))
        out.append((start[part[:, 0]] + logp.squeeze(-1).sum(1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
