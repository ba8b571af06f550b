"""Batched inference sorted by length: logits for classifiers, embeddings for baselines, and
the top class with its confidence for `tunewise evaluate`.

Rows are processed shortest first (little padding) and written back in input order.
`predict_top` keeps a few numbers a row instead of a row of logits, and tokenises a chunk of
rows at a time, so scoring a file 4x the size costs little more memory than the texts:

    top = predict_top(model, tokenizer, texts, max_length=64, bf16=True, temperature=1.4)
    top.pred, top.confidence, top.scaled_confidence, top.lengths
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunewise.core.console import Advance
from tunewise.core.device import autocast
from tunewise.data.encode import Encoded, collate, encode, eval_batches

CHUNK_ROWS = 4096


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
        with autocast(model, bf16):
            out = model(**batch).logits.float()
        logits[rows] = out.cpu().numpy()
        known = labels >= 0
        if known.any():
            loss_sum += F.cross_entropy(out[known], labels[known], reduction="sum").item()
            counted += int(known.sum())
    return logits, loss_sum / max(counted, 1)


@dataclass
class TopPredictions:
    """What a classifier made of each row: all that metrics, slices, calibration and error
    analysis read, so no row of logits outlives its batch."""

    pred: np.ndarray  # class id
    confidence: np.ndarray  # softmax probability of `pred`
    scaled_confidence: np.ndarray | None  # the same at `temperature` (None without one)
    lengths: np.ndarray  # tokens after truncation, special tokens included


@torch.inference_mode()
def predict_top(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 128,
    bf16: bool = False,
    temperature: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    advance: Advance | None = None,
) -> TopPredictions:
    """Top class and its probability per text, in input order. Texts are tokenised
    `chunk_rows` at a time and sorted by length within the chunk; a `temperature` adds the
    confidence of `logits / temperature` (temperature scaling; the class does not change)."""
    model.eval()
    device = next(model.parameters()).device
    n = len(texts)
    pred, lengths = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    confidence = np.zeros(n)  # float64 softmax: a sure row reads 0.9999999, not 1.0
    scaled = np.zeros(n) if temperature else None
    for start in range(0, n, chunk_rows):
        data = encode(tokenizer, texts[start : start + chunk_rows], None, max_length)
        lengths[start : start + len(data)] = data.lengths()
        for rows in eval_batches(data.lengths(), batch_size):
            batch = {k: v.to(device) for k, v in collate(data, rows).items() if k != "labels"}
            with autocast(model, bf16):
                logits = model(**batch).logits.double()
            at = start + np.asarray(rows)
            top = logits.softmax(-1).max(-1)
            pred[at], confidence[at] = top.indices.cpu().numpy(), top.values.cpu().numpy()
            if scaled is not None:
                scaled[at] = (logits / temperature).softmax(-1).amax(-1).cpu().numpy()
            if advance is not None:
                advance(len(rows))
    return TopPredictions(pred, confidence, scaled, lengths)
