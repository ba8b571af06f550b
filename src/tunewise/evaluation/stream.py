"""Streamed evaluation: metrics from a running confusion matrix, memory flat in the data size.

Validation during training needs only loss, accuracy and macro-F1, which a K x K confusion
matrix and a loss sum carry exactly; so nothing grows with the number of rows. (`tunewise
evaluate` needs per-row outcomes for its slices and error analysis, and keeps a few numbers a
row: `predict.predict_top`.) `stream_texts` also tokenises chunk by chunk, for files too big
to encode at once:

    scores = stream_scores(model, val_data, n_classes=77, batch_size=128, bf16=True)
    scores = stream_texts(model, tokenizer, iter(texts), iter(label_ids), 77, max_length=64)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunewise.core.device import autocast
from tunewise.data.encode import Encoded, collate, encode, eval_batches
from tunewise.evaluation.metrics import metrics_from_confusion


class RunningScores:
    """Confusion matrix and loss sum, updated batch by batch (labels < 0 are not counted)."""

    def __init__(self, n_classes: int):
        self.n = n_classes
        self.cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.loss_sum = 0.0
        self.rows = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        known = labels >= 0
        if not bool(known.any()):
            return
        logits, labels = logits[known].float(), labels[known]
        self.loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        pred = logits.argmax(1)
        flat = (labels * self.n + pred).cpu().numpy()
        self.cm += np.bincount(flat, minlength=self.n * self.n).reshape(self.n, self.n)
        self.rows += int(known.sum())

    def result(self) -> dict[str, float]:
        scores = metrics_from_confusion(self.cm)
        return {
            "loss": self.loss_sum / max(self.rows, 1),
            "accuracy": float(scores["accuracy"]),
            "macro_f1": float(scores["macro_f1"]),
        }


@torch.inference_mode()
def update_scores(
    running: RunningScores, model: Any, data: Encoded, batch_size: int, bf16: bool
) -> None:
    """Add every row of `data` to `running`, shortest rows first (least padding)."""
    model.eval()
    device = next(model.parameters()).device
    for rows in eval_batches(data.lengths(), batch_size):
        batch = {k: v.to(device) for k, v in collate(data, rows).items()}
        labels = batch.pop("labels")
        with autocast(model, bf16):
            running.update(model(**batch).logits, labels)


def stream_scores(
    model: Any, data: Encoded, n_classes: int, batch_size: int = 128, bf16: bool = False
) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of `model` on encoded `data`, keeping no per-row outputs."""
    running = RunningScores(n_classes)
    update_scores(running, model, data, batch_size, bf16)
    return running.result()


def _chunks(texts: Iterable[str], labels: Iterable[int], size: int) -> Iterator[tuple]:
    pairs = zip(texts, labels, strict=True)
    while chunk := list(islice(pairs, size)):
        yield [t for t, _ in chunk], [y for _, y in chunk]


def stream_texts(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    labels: Iterable[int],
    n_classes: int,
    max_length: int = 64,
    batch_size: int = 128,
    bf16: bool = False,
    chunk_rows: int = 4096,
) -> dict[str, float]:
    """`stream_scores` over texts read lazily: tokenised `chunk_rows` at a time, sorted by
    length within the chunk, so peak memory depends on the chunk, not on the file."""
    running = RunningScores(n_classes)
    for chunk_texts, chunk_labels in _chunks(texts, labels, chunk_rows):
        data = encode(tokenizer, chunk_texts, chunk_labels, max_length)
        update_scores(running, model, data, batch_size, bf16)
    out = running.result()
    out["rows"] = running.rows
    return out
