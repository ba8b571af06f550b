"""Exact and near-duplicate detection: one index, fitted once, queried within and across splits.

Why MinHash + LSH: comparing every pair of rows is quadratic (BANKING77's 13k rows give 85M
pairs); LSH buckets rows whose MinHash signatures agree on a band, so only likely pairs are
compared. Candidates are then confirmed with the true Jaccard similarity of their shingle sets,
so LSH's approximation can miss a pair but never invents one.

    index = DuplicateIndex(threshold=0.85).fit(train_texts)
    index.exact_groups()          # [[0, 17], ...]: rows with the same text
    index.near_pairs()            # [(3, 90, 0.91), ...]: similar after case/punctuation folding
    index.exact_matches(test)     # per test row: the train rows with the same text
    index.near_matches(test)      # per test row: (train row, similarity) of near ones
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

import numpy as np

SHINGLE = 3  # character n-grams: short queries differ by one word, word sets are too coarse
_PUNCT = re.compile(r"[^\w\s]|_")
_SPACE = re.compile(r"\s+")


def exact_key(text: str) -> str:
    """The text as a duplicate check sees it: NFKC, case-folded, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def near_key(text: str) -> str:
    """`exact_key` with punctuation removed: "Top-up failed!" and "top up failed" are equal."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", exact_key(text))).strip()


def shingles(text: str, n: int = SHINGLE) -> set[str]:
    """Character n-grams of the near key, padded so one- and two-letter texts still get one."""
    key = f" {near_key(text)} "
    return {key[i : i + n] for i in range(max(1, len(key) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class DuplicateIndex:
    """Finds rows with the same text, and rows whose shingle Jaccard similarity ≥ threshold.

    Follows scikit-learn's contract: parameters in `__init__`, `fit` learns the index and
    returns self, learned state ends in `_` (`keys_`, `shingles_`, `lsh_`, `pairs_`).
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = 64, seed: int = 1):
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed

    def fit(self, texts: list[str]) -> DuplicateIndex:
        """Hash every text; rows with an equal near key share one LSH entry (cheaper, same set)."""
        from datasketch import MinHashLSH

        self.keys_ = [exact_key(t) for t in texts]
        self.shingles_ = [shingles(t) for t in texts]
        self.lsh_ = MinHashLSH(threshold=self._lsh_threshold(), num_perm=self.num_perm)
        self.members_: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(texts):
            near = near_key(text)
            if near not in self.members_:
                self.lsh_.insert(near, self._minhash(self.shingles_[i]), check_duplication=False)
            self.members_[near].append(i)
        self.pairs_ = self._pairs()
        return self

    def _lsh_threshold(self) -> float:
        """LSH runs a little below the threshold: misses near it cost recall, extras are checked."""
        return max(0.05, self.threshold - 0.1)

    def _minhash(self, grams: set[str]):
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    def exact_groups(self) -> list[list[int]]:
        """Groups (2+ rows, in row order) of rows whose texts are equal up to case and spacing."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self.keys_):
            groups[key].append(i)
        return [g for g in groups.values() if len(g) > 1]

    def near_pairs(self) -> list[tuple[int, int, float]]:
        """Pairs (i < j) similar at ≥ threshold whose texts are not exact duplicates."""
        return self.pairs_

    def _pairs(self) -> list[tuple[int, int, float]]:
        pairs: set[tuple[int, int, float]] = set()
        for near, rows in self.members_.items():
            for other in self.lsh_.query(self._minhash(self.shingles_[rows[0]])):
                if other <= near:  # each unordered pair of keys once; equal keys below
                    continue
                sim = jaccard(self.shingles_[rows[0]], self.shingles_[self.members_[other][0]])
                if sim >= self.threshold:
                    pairs.update(self._cross(rows, self.members_[other], sim))
            pairs.update(self._cross(rows, rows, 1.0))  # same near key, different exact text
        return sorted(pairs)

    def _cross(self, a: list[int], b: list[int], sim: float) -> list[tuple[int, int, float]]:
        return [
            (min(i, j), max(i, j), round(sim, 3))
            for i in a
            for j in b
            if i != j and self.keys_[i] != self.keys_[j]
        ]

    def exact_matches(self, texts: list[str]) -> list[list[int]]:
        """For each text, the fitted rows with the same text up to case and spacing."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self.keys_):
            by_key[key].append(i)
        return [by_key.get(exact_key(text), []) for text in texts]

    def near_matches(self, texts: list[str]) -> list[list[tuple[int, float]]]:
        """For each text, the fitted rows similar at ≥ threshold that are not exact matches."""
        return [
            [(i, sim) for i, sim in self._near(text) if self.keys_[i] != exact_key(text)]
            for text in texts
        ]

    def _near(self, text: str) -> list[tuple[int, float]]:
        grams = shingles(text)
        hits: list[tuple[int, float]] = []
        for other in self.lsh_.query(self._minhash(grams)):
            rows = self.members_[other]
            sim = jaccard(grams, self.shingles_[rows[0]])
            if sim >= self.threshold:
                hits.extend((i, round(sim, 3)) for i in rows)
        return sorted(hits, key=lambda h: (-h[1], h[0]))


def clusters(pairs: list[tuple[int, int, float]], n: int) -> list[list[int]]:
    """Connected groups of rows from similar pairs (union-find), each sorted, largest first."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for i, j, _ in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in sorted({i for pair in pairs for i in pair[:2]}):
        groups[root(i)].append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))
