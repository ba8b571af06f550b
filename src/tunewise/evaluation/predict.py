"""Batched inference sorted by length: logits for classifiers, embeddings for baselines.

Rows are processed shortest first (little padding) and written back in input order.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunewise.data.encode import Encoded, collate, eval_batches


def _autocast(model: nn.Module, bf16: bool):
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.inference_mode()
def predict_logits(
    model: Any, data: Encoded, batch_size: int = 128, bf16: bool = False
) -> tuple[np.ndarray, float]:
    """Logits in input order and the mean cross-entropy over rows with a known label."""
    model.eval()
    device = next(model.parameters()).device
    logits = np.zeros((len(data), model.config.num_labels), dtype=np.float32)
    loss_sum, counted = 0.0, 0
    for rows in eval_batches(data.lengths(), batch_size):
        batch = {k: v.to(device) for k, v in collate(data, rows).items()}
        labels = batch.pop("labels")
        with _autocast(model, bf16):
            out = model(**batch).logits.float()
        logits[rows] = out.cpu().numpy()
        known = labels >= 0
        if known.any():
            loss_sum += F.cross_entropy(out[known], labels[known], reduction="sum").item()
            counted += int(known.sum())
    return logits, loss_sum / max(counted, 1)


@torch.inference_mode()
def embed(encoder: Any, data: Encoded, batch_size: int = 128, bf16: bool = False) -> np.ndarray:
    """L2-normalised mean-pooled token embeddings (the sentence-transformers recipe)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = np.zeros((len(data), encoder.config.hidden_size), dtype=np.float32)
    for rows in eval_batches(data.lengths(), batch_size):
        batch = collate(data, rows)
        mask = batch["attention_mask"].to(device)
        with _autocast(encoder, bf16):
            hidden = encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask)[0]
        hidden = hidden.float() * mask.unsqueeze(-1)
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        out[rows] = F.normalize(pooled, dim=-1).cpu().numpy()
    return out
