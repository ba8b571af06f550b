"""Load train/validation/test and check they make a classification task, before any model loads.

Every file is read and every problem gathered into one `InputError`, so a user fixes all of
them in one pass instead of paying for a model download per mistake.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from tunewise.core.errors import InputError, Problem
from tunewise.data.load import Examples, read_examples
from tunewise.data.split import stratified_sample, stratified_split

MIN_TRAIN_ROWS = 10
MIN_CLASSES = 2
LINES_LISTED = 5


@dataclass
class Splits:
    """The data a run trains and evaluates on, with the label <-> class id mapping."""

    train: Examples
    validation: Examples
    test: Examples | None
    labels: list[str]
    validation_source: str  # "file" or "split"
    test_source: str = "file"  # "file", or "held-out": a seeded share of the training file
    # out-of-scope example rows (label eval.oos.label) per split name, never a class
    oos: dict[str, Examples] = field(default_factory=dict)

    def ids(self, ex: Examples) -> list[int]:
        """Class ids of `ex`'s labels; KeyError for a label unseen in train (checked earlier)."""
        index = {name: i for i, name in enumerate(self.labels)}
        return [index[label] for label in ex.labels]


def check_splits(
    train: Examples, validation: Examples | None, test: Examples | None, label_col: str = "label"
) -> list[Problem]:
    """Problems that make the splits unusable for classification (rows were checked on load)."""
    problems = _check_train(train, label_col)
    known = set(train.labels)
    for name, part in (("validation", validation), ("test", test)):
        if part is not None:
            problems += _check_part(name, part, known, label_col)
    return problems


def _check_train(train: Examples, label_col: str) -> list[Problem]:
    problems = []
    if len(train) < MIN_TRAIN_ROWS:
        problems.append(
            Problem(
                train.source,
                None,
                "rows",
                f"only {len(train)} usable training rows; at least {MIN_TRAIN_ROWS} are needed",
                "add more labelled rows",
            )
        )
    classes = sorted(set(train.labels))
    if len(classes) < MIN_CLASSES:
        shown = ", ".join(f"'{c}'" for c in classes) or "none"
        problems.append(
            Problem(
                train.source,
                None,
                label_col,
                f"training data has {len(classes)} class(es) ({shown}); "
                f"classification needs at least {MIN_CLASSES}",
                "check data.label_col names the label column, or add rows of other classes",
            )
        )
    return problems


def _check_part(name: str, part: Examples, known: set[str], label_col: str) -> list[Problem]:
    """An empty part, and one problem per label that training never saw (at its first line)."""
    if not len(part):
        return [
            Problem(
                part.source,
                None,
                "rows",
                f"{name} data has no usable rows",
                f"add rows to the {name} file, or give more rows per class",
            )
        ]
    unseen: dict[str, list[int]] = {}
    for label, line in zip(part.labels, part.lines, strict=True):
        if label not in known:
            unseen.setdefault(label, []).append(line)
    return [
        _unseen_problem(part.source, label, lines, known, label_col)
        for label, lines in unseen.items()
    ]


def _unseen_problem(
    source: str, label: str, lines: list[int], known: set[str], label_col: str
) -> Problem:
    message = f"label '{label}' never occurs in the training data"
    if len(lines) > 1:
        more = lines[1 : LINES_LISTED + 1]
        rest = len(lines) - 1 - len(more)
        message += f" (also on line{'s' if len(lines) > 2 else ''} {', '.join(map(str, more))}"
        message += f" and {rest} more)" if rest else ")"
    close = difflib.get_close_matches(label, sorted(known), n=1)
    fix = f"did you mean '{close[0]}'? " if close else ""
    fix += "fix the label, add training rows of this class, or drop these rows"
    return Problem(source, lines[0], label_col, message, fix)


def split_out_oos(ex: Examples, oos_label: str | None) -> tuple[Examples, Examples]:
    """(in-scope rows, rows labelled `oos_label`): out-of-scope examples are never a class."""
    oos = [i for i, label in enumerate(ex.labels) if oos_label is not None and label == oos_label]
    taken = set(oos)
    return ex.subset([i for i in range(len(ex)) if i not in taken]), ex.subset(oos)


def load_splits(
    data_cfg: Any, seed: int, hold_out_test: bool = False, oos_label: str | None = None
) -> Splits:
    """Read every configured file, check them together, raise one `InputError` with all problems.

    `data_cfg` needs attributes train, validation, test, text_col, label_col, max_rows,
    val_fraction and test_fraction. `max_rows` caps each file with a seeded stratified sample
    (not the first rows: files sorted by label would lose most classes). Without a test file
    (`hold_out_test`), a seeded stratified `test_fraction` of train is held out as the test set
    first; without a validation file, a seeded stratified `val_fraction` of what remains becomes
    validation. Rows labelled `oos_label` (eval.oos.label) are split like a class, then taken
    out of every split into `Splits.oos`: out-of-scope examples, never a class.
    """
    problems: list[Problem] = []
    train = _read(data_cfg, "train", seed, problems)
    validation = _read(data_cfg, "validation", seed, problems)
    test = _read(data_cfg, "test", seed, problems)
    source = "file" if data_cfg.validation else "split"
    held_out = hold_out_test and not data_cfg.test
    if held_out and train is not None:
        train, test = _split(train, data_cfg.test_fraction, seed, problems, "data.test_fraction")
    if train is not None and not data_cfg.validation:
        train, validation = _split(train, data_cfg.val_fraction, seed, problems)
    oos: dict[str, Examples] = {}
    parts = {"train": train, "validation": validation, "test": test}
    for name, part in parts.items():
        if part is not None:
            parts[name], oos[name] = split_out_oos(part, oos_label)
    train, validation, test = parts["train"], parts["validation"], parts["test"]
    if train is not None and (len(train) or not problems):
        problems += check_splits(train, validation, test, data_cfg.label_col)
    if problems or train is None or validation is None:
        raise InputError(problems)
    test_source = "held-out" if held_out else "file"
    kept = {name: ex for name, ex in oos.items() if len(ex)}
    return Splits(train, validation, test, label_order(train.labels), source, test_source, kept)


def _read(data_cfg: Any, name: str, seed: int, problems: list[Problem]) -> Examples | None:
    """One configured file, problems appended; None if not configured or not found."""
    path = getattr(data_cfg, name)
    if not path:
        if name == "train":
            problems.append(
                Problem(
                    "config",
                    None,
                    "data.train",
                    "no training file given",
                    "set data.train to a labelled file",
                )
            )
        return None
    try:
        ex, found = read_examples(path, data_cfg.text_col, data_cfg.label_col, field=f"data.{name}")
    except InputError as exc:
        problems.extend(
            p if isinstance(p, Problem) else Problem("config", None, f"data.{name}", str(p))
            for p in exc.problems
        )
        return None
    problems.extend(found)
    if data_cfg.max_rows is not None:
        ex = stratified_sample(ex, data_cfg.max_rows, seed)
    return ex


def _split(
    train: Examples,
    fraction: float,
    seed: int,
    problems: list[Problem],
    key: str = "data.val_fraction",
) -> tuple[Examples, Examples | None]:
    if not 0 < fraction < 1:
        problems.append(
            Problem(
                "config",
                None,
                key,
                f"must be between 0 and 1 (got {fraction})",
                "use e.g. 0.1",
            )
        )
        return train, None
    return stratified_split(train, fraction, seed)


def label_order(labels: list[str]) -> list[str]:
    """Sorted distinct labels; numerically when all are integers, so id i is label "i"."""
    distinct = set(labels)
    if distinct and all(re.fullmatch(r"-?[0-9]+", label) for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)
