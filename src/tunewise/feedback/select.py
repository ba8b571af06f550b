"""`tunewise select`: which unlabelled texts experts should label next (active learning).

Why uncertainty with diversity: the texts a model is least sure about teach it the most per label
paid for, but uncertain texts come in clusters ("card not arrived", "card hasn't arrived!"), and
labelling ten paraphrases of one query buys little more than labelling one. So candidates are
ranked by predictive entropy (or by the margin between the two likeliest labels) and taken
greedily, skipping any text whose character 3-gram Jaccard similarity to a text already picked
reaches `similarity` (MinHash LSH finds the candidates, the true Jaccard confirms them). Texts
already in the run's training or test file are never proposed: labelling them again is wasted,
and training on test texts would leak.

    tunewise select runs/banking77 --pool unlabelled.csv --n 100 --out to_label.csv
    # to_label.csv: rank, text, label (empty: for the expert), predicted, confidence, ...
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from tunewise.config import load_config
from tunewise.config.schema import SELECT_STRATEGIES
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.data.curate import prepare_text
from tunewise.data.dedup import exact_key, jaccard, shingles
from tunewise.data.encode import encode
from tunewise.data.load import Examples, read_examples
from tunewise.evaluation.predict import predict_logits
from tunewise.models.load import load_trained_classifier


def uncertainty(probs: np.ndarray, strategy: str = "entropy") -> np.ndarray:
    """Per row, higher = less sure: entropy / log(K) in [0, 1], or 1 - (p1 - p2) in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    if strategy == "entropy":
        return -(p * np.log(p)).sum(1) / math.log(max(p.shape[1], 2))
    if strategy == "margin":
        top = np.sort(p, axis=1)[:, ::-1]
        return 1.0 - (top[:, 0] - top[:, 1])
    raise ValueError(f"strategy must be one of {SELECT_STRATEGIES}, got {strategy!r}")


def diverse_top(
    texts: list[str], scores: np.ndarray, n: int, similarity: float, num_perm: int = 64
) -> tuple[list[int], int]:
    """Indices of up to `n` texts, highest score first, no two near-duplicates; and how many
    candidates were skipped as near-duplicates of a pick."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=max(0.05, similarity - 0.1), num_perm=num_perm)
    picked: list[int] = []
    grams: dict[int, set[str]] = {}
    seen_keys: set[str] = set()
    skipped = 0
    for i in np.argsort(-scores, kind="stable"):
        i = int(i)
        g = shingles(texts[i])
        sig = MinHash(num_perm=num_perm, seed=1)
        sig.update_batch([s.encode("utf-8") for s in g])
        near = any(jaccard(g, grams[j]) >= similarity for j in lsh.query(sig))
        if exact_key(texts[i]) in seen_keys or near:
            skipped += 1
            continue
        picked.append(i)
        grams[i] = g
        seen_keys.add(exact_key(texts[i]))
        lsh.insert(i, sig)
        if len(picked) == n:
            break
    return picked, skipped


def select(
    run_dir: str | Path,
    pool: str | Path,
    n: int,
    out: str | Path | None = None,
    strategy: str = "entropy",
    text_col: str | None = None,
    similarity: float = 0.7,
) -> Path:
    """Score the pool with the run's model; write the `n` texts to label next as a CSV."""
    run_dir = Path(run_dir)
    cfg = _checked_config(run_dir, n, strategy, similarity)
    text_col = text_col or cfg.data.text_col
    ex = _read_pool(pool, text_col)
    known = _labelled_texts(cfg)
    fresh = [i for i, t in enumerate(ex.texts) if exact_key(t) not in known]
    candidates = ex.subset(fresh)
    labels, probs = _probabilities(run_dir, cfg, candidates)
    scores = uncertainty(probs, strategy)
    picked, skipped = diverse_top(candidates.texts, scores, n, similarity)
    out = Path(out) if out else run_dir / "select.csv"
    _write(out, candidates, picked, labels, probs, scores, strategy, cfg)
    console.log(
        f"select: {len(picked)} of {len(ex)} pool texts by {strategy} "
        f"({len(ex) - len(fresh)} already labelled in train/test, {skipped} near-duplicates "
        f"of a pick skipped); label the '{cfg.data.label_col}' column of {out}, then run "
        f"tunewise refine {run_dir} --data {out}"
    )
    return out


def _checked_config(run_dir: Path, n: int, strategy: str, similarity: float):
    """Usage problems, all at once, before any model loads (exit 2)."""

    problems = []
    if n < 1:
        problems.append(Problem("command line", None, "--n", f"got {n}", "pick at least 1"))
    if strategy not in SELECT_STRATEGIES:
        problems.append(
            Problem("command line", None, "--strategy", repr(strategy), "|".join(SELECT_STRATEGIES))
        )
    if not 0 < similarity <= 1:
        problems.append(
            Problem("command line", None, "--similarity", f"got {similarity}", "a value in (0, 1]")
        )
    if not (run_dir / rundir.MODEL).is_dir() or not (run_dir / rundir.CONFIG).is_file():
        problems.append(
            Problem(
                str(run_dir),
                None,
                "run directory",
                "no model/ and config.yaml here",
                "give a finished run directory (tunewise run or train)",
            )
        )
    if problems:
        raise InputError(problems)
    return load_config(run_dir / rundir.CONFIG)


def _read_pool(pool: str | Path, text_col: str) -> Examples:
    flags = {"text_col": "--text-col"}
    ex, problems = read_examples(
        pool, text_col, "label", field="--pool", require_labels=False, flags=flags
    )
    if problems:
        raise InputError(problems)
    if not len(ex):
        raise InputError([Problem(str(pool), None, text_col, "no texts in the pool", "add rows")])
    return ex


def _labelled_texts(cfg) -> set[str]:
    """Exact keys of the run's train, validation and test texts (unreadable files are skipped)."""
    keys: set[str] = set()
    for path in (cfg.data.train, cfg.data.validation, cfg.data.test):
        if not path:
            continue
        try:
            ex, _ = read_examples(path, cfg.data.text_col, cfg.data.label_col, require_labels=False)
        except InputError:
            continue
        keys.update(exact_key(t) for t in ex.texts)
    return keys


def _probabilities(run_dir: Path, cfg, ex: Examples) -> tuple[list[str], np.ndarray]:
    """The run's model on the pool texts, prepared the way its training text was."""
    from transformers import AutoTokenizer

    model = load_trained_classifier(run_dir / rundir.MODEL)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / rundir.MODEL)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if not len(ex):
        return labels, np.zeros((0, len(labels)))
    texts = prepare_text(cfg, ex).texts
    logits, _ = predict_logits(
        model, encode(tokenizer, texts, None, cfg.model.max_length), cfg.eval.batch_size
    )
    logits = logits.astype(np.float64) - logits.max(1, keepdims=True)
    return labels, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def _write(
    out: Path,
    ex: Examples,
    picked: list[int],
    labels: list[str],
    probs: np.ndarray,
    scores: np.ndarray,
    strategy: str,
    cfg,
) -> None:
    """One row per pick, most uncertain first; the empty label column is for the expert."""
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "rank",
        cfg.data.text_col,
        cfg.data.label_col,
        "predicted",
        "confidence",
        "second",
        "second_confidence",
        strategy,
        "pool_line",
    ]
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for rank, i in enumerate(picked, 1):
            first, second = np.argsort(-probs[i], kind="stable")[:2]
            writer.writerow(
                [
                    rank,
                    ex.texts[i],
                    "",
                    labels[first],
                    f"{probs[i, first]:.4f}",
                    labels[second],
                    f"{probs[i, second]:.4f}",
                    f"{scores[i]:.4f}",
                    ex.lines[i],
                ]
            )
