"""Forgetting: did fine-tuning wreck what the encoder knew before?

Full fine-tuning on one narrow task can overwrite general-purpose representations ("catastrophic
forgetting"), which matters when the encoder is reused for search, clustering or a second task.
The probe: embed texts of general tasks that are *not* the training task with the base encoder
and with the tuned one (mean-pooled, L2-normalised, frozen), fit the same logistic regression
(fixed C, so nothing is tuned on test) on each, and compare test accuracy. Both probes are scored
on the same test rows, so the 95% CI of the difference is a paired bootstrap over those rows
(`compare.paired_bootstrap`); identical encoders give exactly delta 0 and CI (0, 0).

Built-in general tasks (read from `${TUNEWISE_DATA_DIR}`, latin-1): `trec` (question type, 6
coarse classes: `trec/{train,test}.txt`, lines `COARSE:fine question`) and `sst2` (sentiment:
`sst2/stsa.binary.{train,test}`, lines `LABEL text`). Any other name is a path to a labelled
CSV/JSONL file with `text` and `label` columns, split 75/25 (seeded, stratified). Rows are capped
by a seeded stratified sample so the step stays cheap. A task whose data is missing is skipped
with its reason, never a crash: forgetting is a diagnosis, not a gate.

The result goes into metrics.json as `"forgetting"`:

    {"tasks": [{"name": "trec", "base_accuracy": 0.86, "tuned_accuracy": 0.78, "delta": -0.08,
                "ci95": [-0.11, -0.05] | null, "train_size": 2000, "test_size": 500,
                "classes": 6}, ...],
     "mean_delta": -0.05 | null,
     "skipped": [{"name": "sst2", "reason": "data not found: .../sst2/stsa.binary.train"}],
     "probe": {"model": "logistic_regression", "C": 10.0, "pooling": "mean, L2-normalised",
               "max_train_rows": 2000, "max_test_rows": 500}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from tunewise.core.errors import InputError
from tunewise.data.load import Examples, read_examples
from tunewise.data.split import stratified_sample, stratified_split
from tunewise.evaluation.compare import paired_bootstrap
from tunewise.models.embed import Embed

PROBE_C = 10.0  # embeddings have unit norm, so weak regularisation; fixed, never tuned on test
USER_TEST_FRACTION = 0.25


class TaskUnavailable(Exception):
    """A general task that cannot be probed (missing or unusable data); the reason is the text."""


@dataclass
class ProbeTask:
    """One general task's train and test rows, labels already class ids."""

    name: str
    train_texts: list[str]
    train_y: np.ndarray
    test_texts: list[str]
    test_y: np.ndarray
    classes: int


def _read_lines(path: Path, parse: Callable[[str], tuple[str, str]]) -> Examples:
    """A one-example-per-line file (latin-1, as the TREC and SST-2 releases are)."""
    if not path.is_file():
        raise TaskUnavailable(f"data not found: {path}")
    texts, labels, lines = [], [], []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        label, text = parse(line.strip())
        if label and text:
            texts.append(text)
            labels.append(label)
            lines.append(number)
    return Examples(texts, labels, lines, str(path))


def _trec(line: str) -> tuple[str, str]:
    """`DESC:manner How did serfdom develop ?` → ("DESC", question): the 6 coarse classes."""
    label, _, text = line.partition(" ")
    return label.split(":", 1)[0], text.strip()


def _sst2(line: str) -> tuple[str, str]:
    """`1 a stirring , funny ...` → ("1", text)."""
    label, _, text = line.partition(" ")
    return label, text.strip()


BUILTIN: dict[str, tuple[str, str, Callable[[str], tuple[str, str]]]] = {
    "trec": ("trec/train.txt", "trec/test.txt", _trec),
    "sst2": ("sst2/stsa.binary.train", "sst2/stsa.binary.test", _sst2),
}


def _read_user_file(spec: str, seed: int) -> tuple[Examples, Examples]:
    """A labelled CSV/JSONL (`text`, `label`) split into probe-train and probe-test parts."""
    try:
        ex, _ = read_examples(spec, "text", "label", field="eval.forgetting")
    except InputError as exc:
        raise TaskUnavailable(f"cannot read {spec}: {exc}") from None
    if len(set(ex.labels)) < 2 or len(ex) < 8:
        raise TaskUnavailable(f"{spec} needs at least 8 usable rows of 2 or more classes")
    return stratified_split(ex, USER_TEST_FRACTION, seed)


def load_task(spec: str, root: Path, max_train: int, max_test: int, seed: int) -> ProbeTask:
    """A built-in task by name (under `root`) or a user file by path, rows capped and encoded."""
    if spec in BUILTIN:
        train_name, test_name, parse = BUILTIN[spec]
        train, test = (_read_lines(root / name, parse) for name in (train_name, test_name))
        name = spec
    else:
        train, test = _read_user_file(spec, seed)
        name = Path(spec).stem
    train = stratified_sample(train, max_train, seed)
    test = stratified_sample(test, max_test, seed)
    classes = sorted(set(train.labels))
    if len(classes) < 2 or not len(test):
        raise TaskUnavailable(f"{name}: too few rows or classes to fit a probe")
    index = {label: i for i, label in enumerate(classes)}
    keep = [i for i, label in enumerate(test.labels) if label in index]  # unseen labels: dropped
    test = test.subset(keep)
    return ProbeTask(
        name,
        train.texts,
        np.array([index[x] for x in train.labels]),
        test.texts,
        np.array([index[x] for x in test.labels], dtype=np.int64),
        len(classes),
    )


def probe_predictions(
    train_emb: np.ndarray, train_y: np.ndarray, test_emb: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Class ids predicted on test by a logistic regression fitted on frozen embeddings.

    One BLAS thread: lbfgs on a few thousand rows is latency-bound, and multi-threaded BLAS
    beside torch's threads made this fit 30 times slower on 2 cores (2 s against 0.07 s).
    """
    model = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=seed)
    with threadpool_limits(1):
        return model.fit(train_emb, train_y).predict(test_emb)


def score_task(
    task: ProbeTask, embed_base: Embed, embed_tuned: Embed, n_boot: int, seed: int
) -> dict[str, Any]:
    """Base vs tuned probe accuracy on one task, with the paired bootstrap CI of the delta."""
    preds = [
        probe_predictions(embed(task.train_texts), task.train_y, embed(task.test_texts), seed)
        for embed in (embed_base, embed_tuned)
    ]
    base, tuned = (float((p == task.test_y).mean()) for p in preds)
    ci = None
    if n_boot >= 1:
        bounds = paired_bootstrap(
            task.test_y, preds[0], preds[1], task.classes, ("accuracy",), n=n_boot, seed=seed
        )
        ci = list(bounds["accuracy"])
    return {
        "name": task.name,
        "base_accuracy": base,
        "tuned_accuracy": tuned,
        "delta": tuned - base,
        "ci95": ci,
        "train_size": len(task.train_texts),
        "test_size": len(task.test_texts),
        "classes": task.classes,
    }


def forgetting_report(
    specs: Sequence[str],
    embed_base: Embed,
    embed_tuned: Embed,
    root: Path,
    max_train: int = 2000,
    max_test: int = 500,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The `"forgetting"` section of metrics.json (shape in the module docstring)."""
    tasks, skipped = [], []
    for spec in specs:
        try:
            task = load_task(spec, root, max_train, max_test, seed)
        except TaskUnavailable as exc:
            skipped.append({"name": spec, "reason": str(exc)})
            continue
        tasks.append(score_task(task, embed_base, embed_tuned, n_boot, seed))
    deltas = [t["delta"] for t in tasks]
    return {
        "tasks": tasks,
        "mean_delta": float(np.mean(deltas)) if deltas else None,
        "skipped": skipped,
        "probe": {
            "model": "logistic_regression",
            "C": PROBE_C,
            "pooling": "mean, L2-normalised",
            "max_train_rows": max_train,
            "max_test_rows": max_test,
        },
    }
