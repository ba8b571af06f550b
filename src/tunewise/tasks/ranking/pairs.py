"""Preference pairs for rerankers and reward models: rows of (query, preferred, rejected).

Format: CSV, TSV or JSON Lines with the three columns `data.pair_cols` names (default
`query, preferred, rejected`). Without a query column each row compares two texts alone (a
reward model). A model scores one (query, text) sequence with a single logit; training pushes
score(preferred) above score(rejected), and pairwise accuracy is the share of pairs ordered right.

    {"query": "lost card", "preferred": "Freeze your card in the app.", "rejected": "Our rates."}
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunewise.core.errors import InputError, Problem
from tunewise.data.sources import resolve

DEFAULT_COLS = ("query", "preferred", "rejected")


@dataclass
class Pairs:
    """Preference rows from one file; `queries` are "" when the file has no query column."""

    queries: list[str]
    preferred: list[str]
    rejected: list[str]
    lines: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.preferred)

    def subset(self, idx: Sequence[int]) -> Pairs:
        return Pairs(
            [self.queries[i] for i in idx],
            [self.preferred[i] for i in idx],
            [self.rejected[i] for i in idx],
            [self.lines[i] for i in idx],
            self.source,
        )


def read_pairs(path: str | Path, cols: Sequence[str] = DEFAULT_COLS, field: str = "data.train"):
    """All valid rows of a pairs file; every bad row or missing column in one `InputError`."""
    resolved = resolve(path, field)
    query_col, pref_col, rej_col = cols
    pairs, problems = Pairs([], [], [], [], str(path)), list[Problem]()
    for line, row in _records(resolved, problems):
        missing = [c for c in (pref_col, rej_col) if not str(row.get(c) or "").strip()]
        if missing:
            fix = f"fill in {' and '.join(missing)} or delete the row (columns: {', '.join(row)})"
            problems.append(Problem(str(path), line, missing[0], "text is missing", fix))
            continue
        pairs.queries.append(str(row.get(query_col) or "").strip())
        pairs.preferred.append(str(row[pref_col]).strip())
        pairs.rejected.append(str(row[rej_col]).strip())
        pairs.lines.append(line)
    if problems or not len(pairs):
        raise InputError(problems or [Problem(str(path), None, "rows", "no pairs", "add rows")])
    return pairs


def _records(path: Path, problems: list[Problem]) -> Iterator[tuple[int, dict]]:
    """(line, row) from CSV/TSV (header row) or JSON Lines; malformed JSON lines are reported."""
    if path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    yield number, dict(json.loads(text))
                except (json.JSONDecodeError, TypeError, ValueError):
                    fix = "write one JSON object per line"
                    problems.append(Problem(str(path), number, "json", "malformed JSON", fix))
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            yield reader.line_num, row


@dataclass
class EncodedPairs:
    """Token ids of the preferred sequences (rows 0..n-1) then the rejected ones (n..2n-1)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids) // 2

    def lengths(self) -> np.ndarray:
        """Per pair, the longer of its two sequences (for length-grouped batches)."""
        sizes = np.array([len(ids) for ids in self.input_ids])
        return np.maximum(sizes[: len(self)], sizes[len(self) :])


def encode_pairs(tokenizer, pairs: Pairs, max_length: int) -> EncodedPairs:
    """Tokenise (query, text) for both sides; the query is the first segment when present."""
    texts = pairs.preferred + pairs.rejected
    queries = pairs.queries + pairs.queries
    if any(queries):
        out = tokenizer(queries, texts, truncation="longest_first", max_length=max_length)
    else:
        out = tokenizer(texts, truncation=True, max_length=max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return EncodedPairs(list(out["input_ids"]), out.get("token_type_ids"), pad)


def collate_pairs(data: EncodedPairs, rows: Sequence[int]) -> dict[str, torch.Tensor]:
    """A batch of the chosen pairs: preferred sequences first, then rejected, in the same order;
    labels 1 (preferred) and 0 (rejected) tell `pairwise_ranking` which is which."""
    seqs = [*rows, *(r + len(data) for r in rows)]
    width = max(len(data.input_ids[i]) for i in seqs)
    batch = {
        "input_ids": torch.full((len(seqs), width), data.pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long),
    }
    if data.token_type_ids is not None:
        batch["token_type_ids"] = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, i in enumerate(seqs):
        n = len(data.input_ids[i])
        batch["input_ids"][r, :n] = torch.tensor(data.input_ids[i])
        batch["attention_mask"][r, :n] = 1
        if data.token_type_ids is not None:
            batch["token_type_ids"][r, :n] = torch.tensor(data.token_type_ids[i])
    batch["labels"] = torch.tensor([1] * len(rows) + [0] * len(rows))
    return batch


@torch.inference_mode()
def score_pairs(model, data: EncodedPairs, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the preferred and of the rejected side of every pair, in input order."""
    model.eval()
    device = next(model.parameters()).device
    scores = np.zeros(2 * len(data), dtype=np.float32)
    order = np.argsort(data.lengths(), kind="stable").tolist()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate_pairs(data, rows).items() if k != "labels"}
        out = model(**batch).logits.float().reshape(-1).cpu().numpy()
        scores[rows] = out[: len(rows)]
        scores[[r + len(data) for r in rows]] = out[len(rows) :]
    return scores[: len(data)], scores[len(data) :]


def pairwise_accuracy(preferred: np.ndarray, rejected: np.ndarray) -> float:
    """Share of pairs scored in the right order; a tie counts half (as in ROC AUC)."""
    right = (preferred > rejected).astype(float) + 0.5 * (preferred == rejected)
    return float(right.mean()) if len(right) else 0.0
