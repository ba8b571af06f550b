"""Seeded, stratified splitting and sampling of `Examples`.

Stratified so that a validation set or a small sample keeps every class the data has (many
data sets, banking77 among them, are sorted by label, so taking the first rows would not).
Each call builds its own `numpy.random.Generator(seed)`: results depend on the seed and the data
only, never on what else ran before.
"""

from __future__ import annotations

import numpy as np

from tunewise.data.load import Examples


def stratified_split(ex: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Split off about `fraction` of each class as validation; return (train_part, val_part).

    A class with a single example stays in train (it cannot be both learnt and checked); every
    class with 2 or more examples gives at least one row to validation and keeps at least one.
    Both parts keep the original row order.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for idx in _by_label(ex).values():
        count = _val_count(len(idx), fraction)
        val.extend(int(i) for i in rng.permutation(idx)[:count])
    chosen = set(val)
    train = [i for i in range(len(ex)) if i not in chosen]
    return ex.subset(train), ex.subset(sorted(val))


def stratified_sample(ex: Examples, n: int, seed: int) -> Examples:
    """Exactly `n` rows (all rows if there are fewer), classes in proportion, original order.

    When `n` is at least the number of classes every class keeps one row, so a small sample of a
    training file still covers the labels of a small sample of its test file.
    """
    if n >= len(ex):
        return ex
    groups = list(_by_label(ex).values())
    counts = _allocate([len(idx) for idx in groups], n)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for idx, count in zip(groups, counts, strict=True):
        chosen.extend(int(i) for i in rng.permutation(idx)[:count])
    return ex.subset(sorted(chosen))


def sample_rows(count: int, n: int | None, seed: int) -> list[int]:
    """`n` of `count` row numbers drawn without replacement (all when n is None or larger), in
    order: the seeded sample of pairs and conversations, the same for every caller."""
    if not n or count <= n:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, n, replace=False).tolist())


def _by_label(ex: Examples) -> dict[str, list[int]]:
    """Row indices per label, labels in sorted order so the RNG draws are reproducible."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(ex.labels):
        groups.setdefault(label, []).append(i)
    return {label: groups[label] for label in sorted(groups)}


def _val_count(size: int, fraction: float) -> int:
    """Rows of a class that go to validation: rounded half up, at least 1, never all."""
    if size < 2:
        return 0
    return min(size - 1, max(1, int(np.floor(size * fraction + 0.5))))


def _allocate(sizes: list[int], n: int) -> list[int]:
    """Split `n` (< sum(sizes)) over groups in proportion to size, by largest remainder.

    Integer arithmetic keeps the result exact; ties go to the earlier group.
    """
    base = [1 if n >= len(sizes) else 0] * len(sizes)
    rest = n - sum(base)
    spare = [size - b for size, b in zip(sizes, base, strict=True)]
    total = sum(spare)
    counts = [rest * s // total for s in spare]
    remainders = [rest * s % total for s in spare]
    order = sorted(range(len(sizes)), key=lambda i: (-remainders[i], i))
    for i in order[: rest - sum(counts)]:
        counts[i] += 1
    return [b + c for b, c in zip(base, counts, strict=True)]
