"""Sequence packing: several short examples per row, so almost no padding is computed.

A batch of 32 random BANKING77 questions (median 13 tokens, longest 64) padded to its longest
member is about 35% real tokens; packed first-fit-decreasing into rows as wide as that longest
member it is about 92% real, with fully random batches (no length grouping needed). Each packed
row carries a block-diagonal attention mask (a token sees only its own example), position ids
that restart at 0 for every example, and the flat index of every example's first token, so the
classifier pools exactly what the unpacked model pools: BERT's [CLS] token through its pooler.

    model, collate_fn, train_cfg = packing.prepare(model, cfg.train)
    fit(model, data, evaluate, train_cfg, collate_fn=collate_fn, seed=13)

Models whose head pools differently (mean pooling, last token, PEFT wrappers, regression or
multi-label heads) are left unpacked: `packable` says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tunewise.core.console import console
from tunewise.data.encode import Encoded, collate
from tunewise.training.distributed import is_main

PACKED_KEYS = ("seq_ids", "starts")


def first_fit_decreasing(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Positions of `lengths` grouped into rows of at most `width` tokens, longest first.

    >>> first_fit_decreasing([5, 3, 4, 2], 8)
    [[0, 3], [2, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(width - n)
    return rows


def pack_collate(data: Encoded, rows: Sequence[int], width: int | None = None) -> dict[str, Any]:
    """One packed batch of the given example rows; labels and `starts` keep the order of `rows`.

    Row width is `width` or the longest example. `seq_ids` holds each token's example number
    (-1 on padding); `starts` the flat index (row * width + column) of each example's first token.
    """
    seqs = [data.input_ids[i] for i in rows]
    lengths = [len(s) for s in seqs]
    width = max(width or 0, max(lengths))
    bins = first_fit_decreasing(lengths, width)
    ids = torch.full((len(bins), width), data.pad_id, dtype=torch.long)
    pos = torch.zeros((len(bins), width), dtype=torch.long)
    seq_ids = torch.full((len(bins), width), -1, dtype=torch.long)
    starts = torch.zeros(len(rows), dtype=torch.long)
    for b, members in enumerate(bins):
        col = 0
        for k in members:
            n = lengths[k]
            ids[b, col : col + n] = torch.tensor(seqs[k])
            pos[b, col : col + n] = torch.arange(n)
            seq_ids[b, col : col + n] = k
            starts[k] = b * width + col
            col += n
    labels = torch.tensor([data.labels[i] for i in rows], dtype=torch.long)
    return {"input_ids": ids, "position_ids": pos, "seq_ids": seq_ids, "starts": starts,
            "labels": labels}  # fmt: skip


def block_mask(seq_ids: torch.Tensor, additive: bool, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1, width, width) mask: a token attends to its own example only.

    Padding tokens attend to each other (never to real tokens, never seen by them), so no
    softmax row is empty. SDPA takes the boolean form; eager attention adds 0 / -inf-ish.
    """
    same = (seq_ids.unsqueeze(2) == seq_ids.unsqueeze(1)).unsqueeze(1)
    if not additive:
        return same
    return torch.zeros(same.shape, dtype=dtype, device=seq_ids.device).masked_fill(
        ~same, torch.finfo(dtype).min
    )


def packable(model: nn.Module) -> bool:
    """True for single-label BERT-style classifiers: a base model with a [CLS] pooler, then
    dropout and a linear classifier (BertForSequenceClassification and its kin)."""
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", None)
    return (
        config is not None
        and base is not None
        and base is not model
        and getattr(base, "pooler", None) is not None
        and isinstance(getattr(model, "classifier", None), nn.Linear)
        and isinstance(getattr(model, "dropout", None), nn.Dropout)
        and getattr(config, "num_labels", 0) > 1
        and getattr(config, "problem_type", None) in (None, "single_label_classification")
        and getattr(config, "_attn_implementation", "eager") in ("sdpa", "eager")
    )


def packed_forward(model, input_ids, seq_ids, starts, position_ids=None, labels=None, **_):
    """Logits (and loss) of every example in a packed batch, in the order of the batch's rows."""
    base = model.base_model
    additive = model.config._attn_implementation != "sdpa"
    mask = block_mask(seq_ids, additive, base.embeddings.word_embeddings.weight.dtype)
    hidden = base(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids,
        token_type_ids=torch.zeros_like(input_ids),
    ).last_hidden_state
    first = hidden.flatten(0, 1)[starts].unsqueeze(1)  # each example's [CLS], input order
    logits = model.classifier(model.dropout(base.pooler(first)))
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits.view(-1, model.config.num_labels), labels.view(-1))
    return SequenceClassifierOutput(loss=loss, logits=logits)


def enable(model: nn.Module) -> nn.Module:
    """Let `model(**batch)` take packed batches too; ordinary batches run as before.

    The forward is replaced on this instance only, so parameter names, state_dict, checkpoints
    and save_pretrained stay exactly those of the plain model.
    """
    if getattr(model, "_tunewise_packed", False):
        return model
    original = model.forward

    def forward(*args, seq_ids=None, starts=None, **kwargs):
        if seq_ids is None:
            return original(*args, **kwargs)
        return packed_forward(model, *args, seq_ids=seq_ids, starts=starts, **kwargs)

    model.forward = forward  # type: ignore[method-assign]
    object.__setattr__(model, "_tunewise_packed", True)  # a flag, not a module or tensor
    return model


def prepare(
    model: nn.Module, train_cfg: Any
) -> tuple[nn.Module, Callable[[Encoded, list[int]], dict[str, Any]], Any]:
    """The model, collate function and train config `fit` should use.

    With `train.packing` on and a packable model: the model (packing enabled), `pack_collate`, the
    config with length grouping off (packing removes padding without it, and fully random
    batches train like the unpacked reference). Otherwise everything unchanged.
    """
    if not getattr(train_cfg, "packing", False):
        return model, collate, train_cfg
    why = None  # asked for, so say why it is not done
    if not packable(model):
        why = f"{type(model).__name__} has no [CLS] pooler to pack"
    elif getattr(train_cfg, "rdrop", 0.0):
        why = "train.rdrop stacks each batch twice, which packed rows cannot"
    if why:
        if is_main():
            console.log(f"train.packing ignored: {why}")
        return model, collate, train_cfg
    return enable(model), pack_collate, dataclasses.replace(train_cfg, group_by_length=False)
