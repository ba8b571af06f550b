"""Tokenise once, then batch by length so little compute is spent on padding.

Length grouping (shuffle, sort within chunks of 50 batches, shuffle the batches) keeps
batches random across epochs while padding each batch only to its own longest row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

CHUNK_BATCHES = 50


@dataclass
class Encoded:
    """Token ids per row (no padding yet) and the label id of each row (-1 when unknown)."""

    input_ids: list[list[int]]
    labels: list[int]
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter(
            (len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids)
        )


def encode(
    tokenizer, texts: Sequence[str], labels: Sequence[int] | None, max_length: int
) -> Encoded:
    """Tokenise every text once, truncating to `max_length` tokens."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(list(ids), list(labels) if labels is not None else [-1] * len(ids), pad)


def collate(data: Encoded, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad the chosen rows to their longest member (dynamic padding)."""
    width = max(len(data.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), data.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        seq = data.input_ids[i]
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    batch["labels"] = torch.tensor([data.labels[i] for i in rows], dtype=torch.long)
    return batch


def train_batches(
    lengths: np.ndarray, batch_size: int, seed: int, grouped: bool = True
) -> list[list[int]]:
    """Row indices for one epoch: shuffled, and length-grouped when asked."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    if grouped:
        chunk = batch_size * CHUNK_BATCHES
        order = np.concatenate(
            [
                part[np.argsort(lengths[part], kind="stable")]
                for part in np.array_split(order, max(1, -(-len(order) // chunk)))
            ]
        )
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if grouped:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> Iterator[list[int]]:
    """Rows sorted by length (fastest inference); callers put results back by index."""
    order = np.argsort(lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size].tolist()
