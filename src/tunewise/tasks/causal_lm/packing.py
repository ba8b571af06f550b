"""Batches for SFT: pad to the longest row, or pack short rows into full-length rows.

Packing concatenates whole examples (first-fit decreasing) into rows of at most `max_length`
tokens. Boundaries stay exact: `position_ids` restart at 0 for each example and no attention mask
is passed, so transformers builds a block-diagonal causal mask from the position resets (no token
attends across examples), and each example's first token carries no label. The same examples give
the same loss packed or padded (tests/test_llm.py checks it). The padding fraction says how much
compute went to pad tokens:

    packed = pack(rows, 512); fit(model, packed, ..., collate_fn=collate_packed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tunewise.data.encode import train_batches
from tunewise.tasks.causal_lm.template import IGNORE, SFTRows


@dataclass
class PackedRows:
    """Packed rows: each a list of example indices into `rows`."""

    rows: SFTRows
    bins: list[list[int]]

    def __len__(self) -> int:
        return len(self.bins)

    def lengths(self) -> np.ndarray:
        sizes = self.rows.lengths()
        return np.array([int(sizes[b].sum()) for b in self.bins], dtype=np.int64)


def pack(rows: SFTRows, max_length: int) -> PackedRows:
    """First-fit decreasing: long examples first, each into the first row with room."""
    sizes = rows.lengths()
    bins: list[list[int]] = []
    room: list[int] = []
    for i in np.argsort(-sizes, kind="stable").tolist():
        slot = next((b for b, r in enumerate(room) if r >= sizes[i]), None)
        if slot is None:
            bins.append([i])
            room.append(max_length - int(sizes[i]))
        else:
            bins[slot].append(i)
            room[slot] -= int(sizes[i])
    return PackedRows(rows, [sorted(b) for b in bins])


def collate_padded(data: SFTRows, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, and labels with -100 on padding."""
    width = max(len(data.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), data.pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        n = len(data.input_ids[i])
        ids[r, :n] = torch.tensor(data.input_ids[i])
        labels[r, :n] = torch.tensor(data.labels[i])
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_packed(data: PackedRows, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """Concatenated examples with per-example position ids; padding is one more 'example'."""
    seqs = []
    for b in rows:
        ids, labels, pos = [], [], []
        for i in data.bins[b]:
            ids += data.rows.input_ids[i]
            labels += [IGNORE, *data.rows.labels[i][1:]]
            pos += list(range(len(data.rows.input_ids[i])))
        seqs.append((ids, labels, pos))
    width = max(len(s[0]) for s in seqs)
    out = {
        k: torch.full((len(seqs), width), v, dtype=torch.long)
        for k, v in (("input_ids", data.rows.pad_id), ("labels", IGNORE), ("position_ids", 0))
    }
    for r, (ids, labels, pos) in enumerate(seqs):
        n = len(ids)
        out["input_ids"][r, :n] = torch.tensor(ids)
        out["labels"][r, :n] = torch.tensor(labels)
        out["position_ids"][r, :n] = torch.tensor(pos)
        out["position_ids"][r, n:] = torch.arange(width - n)  # pads: their own block, unlabelled
    return out


def padding_fraction(
    lengths: np.ndarray, batch_size: int, grad_accum: int, seed: int, grouped: bool
) -> float:
    """Share of batch cells that are padding in the first epoch, batched as `fit` batches it."""
    step_rows = batch_size * grad_accum
    cells = real = 0
    for step in train_batches(lengths, step_rows, seed, grouped):
        for i in range(0, len(step), batch_size):
            part = lengths[step[i : i + batch_size]]
            cells += int(part.max()) * len(part)
            real += int(part.sum())
    return 1.0 - real / cells if cells else 0.0
