"""Sentence embeddings of a frozen encoder: the masked mean of its token vectors, L2-normalised
(the sentence-transformers recipe). The baselines, the audit's label-noise check, the forgetting
probe and the ranking baseline all embed this way:

    vectors = embed(encoder, encode(tokenizer, texts, None, 64), batch_size=128, bf16=True)
    embed_texts = text_embedder(encoder, tokenizer, max_length=64)   # texts -> vectors
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunewise.core.console import Advance
from tunewise.core.device import autocast
from tunewise.data.encode import Encoded, collate, encode, eval_batches

Embed = Callable[[Sequence[str]], np.ndarray]


@torch.inference_mode()
def embed(
    encoder: Any,
    data: Encoded,
    batch_size: int = 128,
    bf16: bool = False,
    advance: Advance | None = None,
) -> np.ndarray:
    """L2-normalised mean-pooled token embeddings, in input order (batches sorted by length);
    `advance(rows)` after each batch moves the step's progress bar."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = np.zeros((len(data), encoder.config.hidden_size), dtype=np.float32)
    for rows in eval_batches(data.lengths(), batch_size):
        batch = collate(data, rows)
        mask = batch["attention_mask"].to(device)
        with autocast(encoder, bf16):
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask)[0]
        hidden = hidden.float() * mask.unsqueeze(-1)
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        out[rows] = F.normalize(pooled, dim=-1).cpu().numpy()
        if advance is not None:
            advance(len(rows))
    return out


def text_embedder(
    encoder: Any,
    tokenizer: Any,
    max_length: int,
    batch_size: int = 128,
    bf16: bool = False,
    advance: Advance | None = None,
) -> Embed:
    """texts -> embeddings with this encoder and tokenizer."""

    def run(texts: Sequence[str]) -> np.ndarray:
        data = encode(tokenizer, list(texts), None, max_length)
        return embed(encoder, data, batch_size, bf16, advance)

    return run
