"""The tokenizer's chat template, with a loss only on what the assistant says.

Completion-only masking: prompt, system and user tokens get label -100, so the model learns to
answer, not to imitate customers. Assistant spans are found by rendering growing prefixes of the
conversation (`render(messages[:i], add_generation_prompt=True)` ends where turn i's reply
starts) and mapping character spans to tokens through the fast tokenizer's offsets, so any
template works without `{% generation %}` markers. Over-length rows follow a policy:

    rows, report = encode_conversations(tokenizer, convs, max_length=512, overlength="truncate")
    report  # {"rows": 480, "truncated": 31, "dropped_all_truncated": 2, ...}

A truncated row whose assistant tokens were all cut away would train as a silent zero loss: it
is dropped and counted instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunewise.core.errors import InputError, Problem
from tunewise.tasks.causal_lm.data import Conversation

IGNORE = -100
OVERLENGTH = ("truncate", "drop", "error")


@dataclass
class SFTRows:
    """Token ids and labels (-100 outside assistant turns) per row, unpadded."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    pad_id: int
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    def label_tokens(self) -> int:
        return sum(sum(1 for t in row if t != IGNORE) for row in self.labels)


def render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    out = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return out if isinstance(out, str) else str(out)


def assistant_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant reply (end included).

    Raises ValueError when the template does not render prefixes as prefixes.
    """
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = render(tokenizer, messages[:i], generation_prompt=True)
        end = render(tokenizer, messages[: i + 1])
        if not full.startswith(start) or not full.startswith(end) or len(end) < len(start):
            raise ValueError(
                "the chat template does not render a conversation's prefixes as its prefix"
            )
        spans.append((len(start), len(end)))
    return full, spans


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation; labels copy ids inside assistant spans only."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    k = 0
    for t, (a, _b) in enumerate(enc["offset_mapping"]):
        while k < len(spans) and a >= spans[k][1]:
            k += 1
        if k < len(spans) and spans[k][0] <= a < spans[k][1]:
            labels[t] = ids[t]
    if labels:
        labels[0] = IGNORE  # nothing predicts a row's first token, packed or not
    return ids, labels


def encode_conversations(
    tokenizer,
    convs: list[Conversation],
    max_length: int,
    overlength: str = "truncate",
    source: str = "data.train",
) -> tuple[SFTRows, dict]:
    """Encode every conversation and apply the over-length policy; the report counts each case."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = SFTRows([], [], pad)
    report: dict[str, Any] = {
        "rows_in": len(convs),
        "over_length": 0,
        "truncated": 0,
        "dropped_over_length": 0,
        "dropped_all_truncated": 0,
        "policy": overlength,
        "max_length": max_length,
    }
    problems = []
    for conv in convs:
        try:
            ids, labels = encode_chat(tokenizer, conv.messages)
        except ValueError as exc:
            fix = "use a model whose chat template renders prefixes consistently"
            raise InputError([Problem(source, conv.line, "model.name", str(exc), fix)]) from None
        if len(ids) > max_length:
            report["over_length"] += 1
            if overlength == "error":
                msg = f"{len(ids)} tokens > model.max_length {max_length}"
                fix = "raise model.max_length or set sft.overlength: truncate or drop"
                problems.append(Problem(source, conv.line, "sft.overlength", msg, fix))
                continue
            if overlength == "drop":
                report["dropped_over_length"] += 1
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            report["truncated"] += 1
        if all(t == IGNORE for t in labels):
            report["dropped_all_truncated"] += 1  # no assistant token left: never a zero loss
            continue
        rows.input_ids.append(ids)
        rows.labels.append(labels)
        rows.lines.append(conv.line)
    if problems:
        raise InputError(problems)
    report["rows"] = len(rows)
    report["label_tokens"] = rows.label_tokens()
    report["tokens"] = int(rows.lengths().sum()) if len(rows) else 0
    return rows, report


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation so far, ending with the assistant's generation prompt."""
    text = render(tokenizer, messages, generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
