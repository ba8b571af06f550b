"""Text metrics for generated replies, and a paired comparison of two models on the same prompts.

ROUGE-L is the F-measure of the longest common subsequence of lower-cased words (Lin 2004);
BLEU and chrF are sacrebleu's corpus scores. Both models answer the same prompts, so the
comparison is paired: each bootstrap resample draws prompt indices once and scores both models'
replies on them (corpus BLEU/chrF from summed sufficient statistics, so a resample costs no
re-tokenising); the p-value is a paired approximate randomization test (swap the two models'
replies per prompt at random, 10,000 times), the test sacrebleu uses for systems:

    doc = compare_generations(refs, baseline_replies, tuned_replies, n_boot=1000, seed=13)
    doc["ci95"]["rougeL"], doc["significance"]["p_value"]
"""

from __future__ import annotations

import re
import string

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)
SHORT_ANSWER_WORDS = 5  # exact match is reported on references this short
METRICS = ("rougeL", "bleu", "chrf", "exact_match")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by dynamic programming, one row at a time."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (beta 1) of one reply against its reference."""
    h, r = words(hypothesis), words(reference)
    lcs = lcs_length(h, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(h), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def normalise(text: str) -> str:
    table = str.maketrans("", "", string.punctuation)
    return " ".join(text.lower().translate(table).split())


def exact_match(hypothesis: str, reference: str) -> float:
    return float(normalise(hypothesis) == normalise(reference))


def row_scores(hyps: list[str], refs: list[str]) -> dict[str, np.ndarray]:
    """Per-prompt ROUGE-L and exact match; exact match only where the reference is short."""
    short = np.array([len(words(r)) <= SHORT_ANSWER_WORDS for r in refs], dtype=bool)
    return {
        "rougeL": np.array([rouge_l(h, r) for h, r in zip(hyps, refs, strict=True)]),
        "exact_match": np.array([exact_match(h, r) for h, r in zip(hyps, refs, strict=True)]),
        "short": short,
    }


def _stats(metric, hyps: list[str], refs: list[str]) -> np.ndarray:
    """sacrebleu's per-sentence sufficient statistics; sums of them give corpus scores."""
    return np.array(metric._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)


def _corpus(metric, stats: np.ndarray) -> float:
    total = stats.sum(0)
    return float(metric._compute_score_from_stats([int(x) for x in total]).score)


def _metrics():
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(), "chrf": CHRF()}


def text_scores(hyps: list[str], refs: list[str]) -> dict[str, float | int | None]:
    """Corpus scores of one model: rougeL (0–1), bleu and chrf (0–100), exact_match (0–1)."""
    rows = row_scores(hyps, refs)
    out: dict[str, float | int | None] = {"rougeL": float(rows["rougeL"].mean())}
    for name, metric in _metrics().items():
        out[name] = _corpus(metric, _stats(metric, hyps, refs))
    short = rows["short"]
    out["exact_match"] = float(rows["exact_match"][short].mean()) if short.any() else None
    out["exact_match_rows"] = int(short.sum())
    return out


def randomization_p(a: np.ndarray, b: np.ndarray, n: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired approximate randomization test of mean(b - a) = 0."""
    diff = b - a
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diff.size))
    extreme = int((np.abs((signs * diff).mean(1)) >= observed - 1e-12).sum())
    return (extreme + 1) / (n + 1)


def compare_generations(
    refs: list[str], base: list[str], tuned: list[str], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Tuned-minus-baseline deltas, paired bootstrap 95% CIs, and the randomization p-value."""
    if not (len(refs) == len(base) == len(tuned)) or not refs:
        raise ValueError(f"need equal, non-empty lists: {len(refs)}, {len(base)}, {len(tuned)}")
    rows_a, rows_b = row_scores(base, refs), row_scores(tuned, refs)
    metrics = _metrics()
    stats = {k: (_stats(m, base, refs), _stats(m, tuned, refs)) for k, m in metrics.items()}
    rng = np.random.default_rng(seed)
    n_boot = max(n_boot, 1)
    deltas: dict[str, list[float]] = {"rougeL": [], "bleu": [], "chrf": []}
    for _ in range(n_boot):
        idx = rng.integers(0, len(refs), len(refs))
        deltas["rougeL"].append(rows_b["rougeL"][idx].mean() - rows_a["rougeL"][idx].mean())
        for k, m in metrics.items():
            deltas[k].append(_corpus(m, stats[k][1][idx]) - _corpus(m, stats[k][0][idx]))
    scores_a, scores_b = text_scores(base, refs), text_scores(tuned, refs)
    delta = {k: scores_b[k] - scores_a[k] for k in ("rougeL", "bleu", "chrf")}  # type: ignore[operator]
    if scores_a["exact_match"] is not None and scores_b["exact_match"] is not None:
        delta["exact_match"] = scores_b["exact_match"] - scores_a["exact_match"]
    return {
        "baseline": scores_a,
        "tuned": scores_b,
        "delta": delta,
        "ci95": {k: [float(x) for x in np.percentile(v, [2.5, 97.5])] for k, v in deltas.items()},
        "significance": {
            "test": "paired_approximate_randomization",
            "metric": "rougeL",
            "p_value": randomization_p(rows_a["rougeL"], rows_b["rougeL"], seed=seed),
            "bootstrap_resamples": n_boot,
        },
        "rows": {
            "baseline_rougeL": rows_a["rougeL"].tolist(),
            "tuned_rougeL": rows_b["rougeL"].tolist(),
        },
    }
