"""The data audit: find what is wrong with a data set before any training time is spent.

Each check is a small function returning `Finding`s with the contract codes (DESIGN.md); the
evidence names file and line of example rows so a user can open the file at the right place.
Severities are chosen so that a healthy public data set (BANKING77) passes: `error` only for
what invalidates a result (test rows also in training, contradictory labels) above
`audit.error_share` of the rows; duplicates, imbalance and noise candidates are warnings.

    findings = audit_examples(train, test, AuditConfig())
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from tunewise.core.findings import Finding
from tunewise.data.dedup import DuplicateIndex, clusters, exact_key
from tunewise.data.label_noise import LabelNoise
from tunewise.data.load import Examples
from tunewise.data.pii import PIIDetector, pii_counts
from tunewise.data.quality import LanguageProfile, garbage_reason

Embedder = Callable[[list[str]], np.ndarray]


def _row(ex: Examples, i: int | np.integer, **extra) -> dict:
    """One example row as evidence: where it is, what it says, its label."""
    return {
        "file": ex.source,
        "line": ex.lines[i],
        "text": ex.texts[i][:300],
        "label": ex.labels[i],
        **extra,
    }


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def audit_examples(
    train: Examples,
    test: Examples | None,
    cfg,
    tokenizer=None,
    max_length: int = 64,
    embedder: Embedder | None = None,
    seed: int = 13,
) -> tuple[list[Finding], dict]:
    """Run every check; return the findings and a summary of what was checked and how long.

    `cfg` is an `AuditConfig`. `tokenizer` (optional) enables the length and truncation checks;
    `embedder` (texts -> L2-normalised rows) enables the label-noise check.
    """
    started = time.perf_counter()
    index = DuplicateIndex(cfg.near_dup_threshold).fit(train.texts)
    parts = [train] + ([test] if test is not None else [])
    findings = _duplicates(train, index, cfg) + _conflicts(train, index, cfg)
    if test is not None:
        findings += _duplicates(test, DuplicateIndex(cfg.near_dup_threshold).fit(test.texts), cfg)
        findings += _leakage(train, test, index, cfg)
    findings += _imbalance(train, cfg)
    findings += _garbage(parts, cfg)
    lengths = _text_lengths(parts, tokenizer)
    if tokenizer is not None:
        findings += _lengths(parts, lengths, max_length, cfg)
    if cfg.pii:
        findings += _pii(parts, cfg)
    if cfg.label_noise and embedder is not None:
        findings += _label_noise(parts, embedder, cfg, seed)
    summary = {
        "rows": {p.source: len(p) for p in parts},
        "classes": len(set(train.labels)),
        "seconds": round(time.perf_counter() - started, 2),
        "counts": dict(Counter(f.code for f in findings)),
        "profile": {
            **_profile(parts, lengths, max_length if tokenizer is not None else None),
            "min_class_count": cfg.min_class_count,
        },
    }
    return findings, summary


def _text_lengths(parts: list[Examples], tokenizer) -> list[np.ndarray]:
    """Tokens per row with the model's tokenizer (what truncation cuts), else words per row."""
    if tokenizer is None:
        return [np.array([len(t.split()) for t in ex.texts]) for ex in parts]
    return [np.array([len(ids) for ids in tokenizer(ex.texts)["input_ids"]]) for ex in parts]


def _profile(parts: list[Examples], lengths: list[np.ndarray], max_length: int | None) -> dict:
    """What audit.html charts: rows per class and text lengths, per split (train, test)."""
    return {
        "unit": "tokens" if max_length is not None else "words",
        "max_length": max_length,
        "splits": [
            {
                "name": name,
                "source": ex.source,
                "labels": dict(Counter(ex.labels)),
                "lengths": [int(n) for n in ls],
            }
            for name, ex, ls in zip(("train", "test"), parts, lengths, strict=False)
        ],
    }


def _duplicates(ex: Examples, index: DuplicateIndex, cfg) -> list[Finding]:
    """Exact duplicates and near-duplicate clusters within one file (same label: no conflict)."""
    out = []
    groups = index.exact_groups()
    extra = sum(len(g) - 1 for g in groups)
    if groups:
        out.append(
            Finding(
                "duplicate",
                "warning",
                f"{ex.source}: {extra} row(s) repeat an earlier row ({len(groups)} distinct texts)",
                "run `tunewise prepare` (prepare.dedup: keep-first) to keep one copy of each; "
                "repeats over-weight those examples and can straddle train and validation",
                {
                    "count": extra,
                    "share": _share(extra, len(ex)),
                    "groups": [[_row(ex, i) for i in g] for g in groups[: cfg.max_examples]],
                },
            )
        )
    pairs = [p for p in index.near_pairs() if ex.labels[p[0]] == ex.labels[p[1]]]
    if pairs:
        found = clusters(pairs, len(ex))
        rows = sum(len(c) for c in found)
        out.append(
            Finding(
                "near-duplicate",
                "warning" if rows > 0.05 * len(ex) else "info",
                f"{ex.source}: {rows} rows fall in {len(found)} groups of near-identical texts "
                f"(Jaccard ≥ {cfg.near_dup_threshold} after folding case and punctuation)",
                "keep one row per group, or make sure a group never spans train and validation",
                {
                    "count": rows,
                    "groups": len(found),
                    "share": _share(rows, len(ex)),
                    "examples": [[_row(ex, i) for i in c[:5]] for c in found[: cfg.max_examples]],
                },
            )
        )
    return out


def _conflicts(ex: Examples, index: DuplicateIndex, cfg) -> list[Finding]:
    """The same (or near-same) text under different labels: the model is asked the impossible."""
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(ex.texts):
        by_text[exact_key(text)].append(i)
    groups = [g for g in by_text.values() if len({ex.labels[i] for i in g}) > 1]
    near = [(i, j, s) for i, j, s in index.near_pairs() if ex.labels[i] != ex.labels[j]]
    groups += [[i, j] for i, j, _ in near]
    if not groups:
        return []
    rows = len({i for g in groups for i in g})
    exact_rows = len({i for g in groups[: len(groups) - len(near)] for i in g})
    severity = "error" if exact_rows > cfg.error_share * len(ex) else "warning"
    return [
        Finding(
            "conflicting-labels",
            severity,
            f"{ex.source}: {len(groups)} text(s) appear with different labels "
            f"({len(groups) - len(near)} exact, {len(near)} near), {rows} rows in all",
            "decide the right label for each group, or run `tunewise prepare` with "
            "prepare.dedup: drop-conflicting to remove them",
            {
                "count": rows,
                "exact_groups": len(groups) - len(near),
                "near_pairs": len(near),
                "share": _share(rows, len(ex)),
                "groups": [[_row(ex, i) for i in g] for g in groups[: cfg.max_examples]],
            },
        )
    ]


def _leakage(train: Examples, test: Examples, index: DuplicateIndex, cfg) -> list[Finding]:
    """Test rows that training also holds: the test score then measures memory, not skill."""
    exact = index.exact_matches(test.texts)
    near = index.near_matches(test.texts)
    leaked = [i for i, hits in enumerate(exact) if hits]
    close = [i for i, hits in enumerate(near) if hits and not exact[i]]
    out = []
    if leaked:
        severity = "error" if len(leaked) > cfg.error_share * len(test) else "warning"
        out.append(
            Finding(
                "leakage",
                severity,
                f"{len(leaked)} of {len(test)} test rows ({_share(len(leaked), len(test)):.1%}) "
                "also occur in the training data",
                "remove these rows from the test file (or from train) so the test score measures "
                "generalisation; with fewer than audit.error_share of test rows this is a warning",
                {
                    "count": len(leaked),
                    "kind": "exact",
                    "share": _share(len(leaked), len(test)),
                    "test_lines": [test.lines[i] for i in leaked],
                    "examples": [
                        _row(test, i, train_line=train.lines[exact[i][0]])
                        for i in leaked[: cfg.max_examples]
                    ],
                },
            )
        )
    if close:
        out.append(
            Finding(
                "leakage",
                "warning",
                f"{len(close)} test rows are near-duplicates of training rows "
                f"(Jaccard ≥ {cfg.near_dup_threshold})",
                "check whether these are paraphrases of one source; if so, keep each group on one "
                "side of the split",
                {
                    "count": len(close),
                    "kind": "near",
                    "share": _share(len(close), len(test)),
                    "test_lines": [test.lines[i] for i in close],
                    "examples": [
                        _row(
                            test,
                            i,
                            train_line=train.lines[near[i][0][0]],
                            train_text=train.texts[near[i][0][0]],
                            similarity=near[i][0][1],
                        )
                        for i in close[: cfg.max_examples]
                    ],
                },
            )
        )
    return out


def _imbalance(train: Examples, cfg) -> list[Finding]:
    """Largest/smallest class ratio, and classes too small to learn or to measure."""
    counts = Counter(train.labels)
    biggest, smallest = max(counts.values()), min(counts.values())
    small = sorted(label for label, c in counts.items() if c < cfg.min_class_count)
    ratio = biggest / smallest
    if ratio <= cfg.imbalance_ratio and not small:
        return []
    parts = [f"largest/smallest class ratio {ratio:.1f}"] if ratio > cfg.imbalance_ratio else []
    if small:
        parts.append(f"{len(small)} class(es) under {cfg.min_class_count} rows")
    return [
        Finding(
            "class-imbalance",
            "warning",
            f"{train.source}: " + "; ".join(parts),
            "collect more rows of the small classes, or train with train.loss: "
            "weighted_cross_entropy; read macro-F1, not accuracy",
            {
                "ratio": round(ratio, 2),
                "small_classes": {k: counts[k] for k in small},
                "counts": dict(counts.most_common()),
            },
        )
    ]


def _garbage(parts: list[Examples], cfg) -> list[Finding]:
    """Rows with no letters, mojibake, or in another language (learned from the train file)."""
    profile = LanguageProfile().fit(parts[0].texts) if cfg.language else None
    bad = [
        (ex, i, reason)
        for ex in parts
        for i, text in enumerate(ex.texts)
        if (reason := garbage_reason(text, profile))
    ]
    if not bad:
        return []
    reasons = Counter(reason.split(" in a ")[0].split(" (")[0] for _, _, reason in bad)
    where = ", ".join(f"{ex.source}:{ex.lines[i]}" for ex, i, _ in bad[:5])
    return [
        Finding(
            "empty-or-garbage",
            "warning",
            f"{len(bad)} row(s) hold no usable text ("
            + ", ".join(f"{k}: {v}" for k, v in reasons.items())
            + f"), at {where}"
            + (" …" if len(bad) > 5 else ""),
            "fix the encoding (re-export as UTF-8) or remove these rows; `tunewise prepare` "
            "turns replacement characters into spaces and drops rows that are empty after "
            "cleaning",
            {
                "count": len(bad),
                "reasons": dict(reasons),
                "language": getattr(profile, "language_", None),
                "examples": [_row(ex, i, reason=r) for ex, i, r in bad[: cfg.max_examples]],
            },
        )
    ]


def _lengths(
    parts: list[Examples], lengths: list[np.ndarray], max_length: int, cfg
) -> list[Finding]:
    """Token-length outliers (Q3 + k·IQR) and rows that `model.max_length` cuts short."""
    q1, q3 = np.percentile(lengths[0], [25, 75])
    fence = q3 + cfg.length_iqr * max(q3 - q1, 1)
    out = []
    long = [
        (ex, i, int(n))
        for ex, ls in zip(parts, lengths, strict=True)
        for i in np.flatnonzero(ls > fence)
        for n in [ls[i]]
    ]
    if long:
        out.append(
            Finding(
                "length-outlier",
                "info",
                f"{len(long)} row(s) are far longer than usual (> {fence:.0f} tokens; median "
                f"{np.median(lengths[0]):.0f})",
                "check they are single examples (not pasted conversations or merged rows)",
                {
                    "count": len(long),
                    "fence_tokens": float(fence),
                    "examples": [
                        _row(ex, i, tokens=n)
                        for ex, i, n in sorted(long, key=lambda r: -r[2])[: cfg.max_examples]
                    ],
                },
            )
        )
    cut = [
        (ex, i, int(ls[i]))
        for ex, ls in zip(parts, lengths, strict=True)
        for i in np.flatnonzero(ls > max_length)
    ]
    total = sum(len(ex) for ex in parts)
    if cut:
        rate = len(cut) / total
        out.append(
            Finding(
                "truncation",
                "warning" if rate > cfg.truncation_warn else "info",
                f"{len(cut)} row(s) ({rate:.1%}) are longer than model.max_length={max_length} "
                "tokens and will be cut",
                f"raise model.max_length (the longest row has {max(n for *_, n in cut)} tokens) "
                "if the end of the text matters",
                {
                    "count": len(cut),
                    "share": round(rate, 4),
                    "max_length": max_length,
                    "examples": [_row(ex, i, tokens=n) for ex, i, n in cut[: cfg.max_examples]],
                },
            )
        )
    return out


def _pii(parts: list[Examples], cfg) -> list[Finding]:
    """Personal data per type: it should not be memorised by a model that will be shared."""
    detector = PIIDetector().fit([t for ex in parts for t in ex.texts])
    counts: Counter = Counter()
    hits = []
    for ex in parts:
        found, rows = pii_counts(detector, ex.texts)
        counts.update(found)
        hits += [(ex, i) for i in rows]
    if not hits:
        return []
    total = sum(len(ex) for ex in parts)
    examples = [
        _row(ex, i, found=[f"{s.type}: {s.text}" for s in detector.find(ex.texts[i])])
        for ex, i in hits[: cfg.max_examples]
    ]
    return [
        Finding(
            "pii",
            "warning",
            f"{len(hits)} row(s) ({_share(len(hits), total):.1%}) contain personal data: "
            + ", ".join(f"{k} {v}" for k, v in counts.most_common()),
            "run `tunewise prepare DATA --out FILE --pii redact` (or prepare.pii: redact) to "
            "replace it with typed placeholders such as [EMAIL]",
            {"count": len(hits), "per_type": dict(counts), "examples": examples},
        )
    ]


def _label_noise(parts: list[Examples], embedder: Embedder, cfg, seed: int) -> list[Finding]:
    """Rows whose label an out-of-fold model on frozen embeddings confidently disputes."""

    rows = [(ex, i) for ex in parts for i in range(len(ex))]
    X = embedder([ex.texts[i] for ex, i in rows])
    noise = LabelNoise(folds=cfg.noise_folds, seed=seed).fit(X, [ex.labels[i] for ex, i in rows])
    if not len(noise.issues_):
        return []
    examples = [
        _row(
            *rows[k],
            suggested=str(noise.classes_[noise.suggested_[k]]),
            confidence=round(float(noise.self_confidence_[k]), 3),
        )
        for k in noise.issues_[: cfg.max_examples]
    ]
    n = len(noise.issues_)
    return [
        Finding(
            "label-noise",
            "warning",
            f"{n} row(s) ({_share(n, len(rows)):.1%}) may be mislabelled: a model that never saw "
            "them confidently prefers another label",
            "review these rows (most suspicious first) and fix or drop the wrong ones; "
            "candidates, not verdicts",
            {
                "count": n,
                "share": _share(n, len(rows)),
                "lines": [
                    f"{rows[k][0].source}:{rows[k][0].lines[rows[k][1]]}" for k in noise.issues_
                ],
                "examples": examples,
            },
        )
    ]
