"""`tunewise init DATA`: a starter config for a labelled file, with its columns guessed.

Why: a newcomer's first config was a copy of configs/banking77.yaml edited by hand. `init` reads
the file (any format `read_examples` reads), guesses the text column (the longest free text)
and the label column (few distinct values for the rows), says why, counts rows and classes, and
writes only what is the user's: the data, its columns and a name. Everything else keeps the
schema's defaults (the recipe), so a later release's better recipe reaches old configs too.

    tunewise init my.csv                  # writes my.yaml, prints: tunewise run my.yaml
    tunewise init train.csv --test test.csv --out intents.yaml --label-col intent
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunewise.config.schema import DataConfig
from tunewise.core.console import results
from tunewise.core.errors import InputError, Problem
from tunewise.data.columns import Guess, guess_columns
from tunewise.data.load import read_columns

DOCS = "docs/config.md (every key) and docs/recipe.md (why the defaults are what they are)"


@dataclass
class Started:
    """What `init` found and wrote."""

    config: Path
    text_col: str
    label_col: str
    rows: int
    classes: dict[str, int]
    command: str


def init(
    data: str | Path,
    test: str | Path | None = None,
    out: str | Path | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    force: bool = False,
) -> Started:
    """Guess the columns of DATA, write the starter config, print the next command."""
    config = Path(out) if out else Path(_name(data) + ".yaml")
    if config.exists() and not force:
        fix = "pass --out OTHER.yaml, or --force to overwrite it"
        raise InputError([Problem(str(config), None, "--out", "file exists", fix)])
    table = _read(data, "DATA")
    guess = guess_columns(table, _given(table, data, text_col, "--text-col"),
                          _given(table, data, label_col, "--label-col"))  # fmt: skip
    _refuse_unless_found(data, table, guess)
    assert guess.text is not None and guess.label is not None
    labels = [v for v in table[guess.label] if v]
    test_rows = _check_test(test, guess) if test is not None else None
    text = starter_yaml(data, test, config, guess, len(labels), len(set(labels)))
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text, encoding="utf-8")
    started = Started(
        config,
        guess.text,
        guess.label,
        len(labels),
        dict(Counter(labels)),
        f"tunewise run {config}",
    )
    _print(data, started, guess, test, test_rows)
    return started


def _name(data: str | Path) -> str:
    """The run name (and config file name) from the data file: my data.csv -> my-data."""
    stem = Path(str(data).rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "run"


def _read(path: str | Path, field: str) -> dict[str, list[str]]:
    table, problems = read_columns(path, field=field)
    if problems:
        raise InputError(problems)
    if not table or not any(table.values()):
        raise InputError([Problem(str(path), None, "rows", "no rows", "add labelled rows")])
    return table


def _given(table: dict, data: str | Path, col: str | None, flag: str) -> str | None:
    if col is None or col in table:
        return col
    listed = ", ".join(table)
    message = f"column '{col}' not found; the columns are: {listed}"
    raise InputError([Problem(str(data), None, flag, message, f"pass {flag} with one of them")])


def _refuse_unless_found(data: str | Path, table: dict, guess: Guess) -> None:
    """Exit 2 naming every column with what its values look like, and the options to pass."""
    missing = [
        (flag, what)
        for flag, what, found in (
            (
                "--text-col",
                "a free-text column (most values distinct, two or more words)",
                guess.text,
            ),
            (
                "--label-col",
                "a label column (2 or more values, at most one per two rows)",
                guess.label,
            ),
        )  # fmt: skip
        if found is None
    ]
    if not missing:
        return
    seen = "; ".join(f"'{name}': {desc}" for name, desc in guess.seen.items())
    problems = [
        Problem(
            str(data),
            None,
            flag,
            f"cannot tell which column is {what}" + (f"; the columns are: {seen}" if not i else ""),
            f"pass {flag} with one of: {', '.join(table)}",
        )
        for i, (flag, what) in enumerate(missing)
    ]
    raise InputError(problems)


def _check_test(test: str | Path, guess: Guess) -> int:
    """The test file must have the same two columns; returns its row count."""
    table = _read(test, "--test")
    absent = [col for col in (guess.text, guess.label) if col not in table]
    if absent:
        listed = ", ".join(table)
        raise InputError(
            [
                Problem(str(test), None, "--test", f"column '{col}' not found; the columns are: "
                        f"{listed}", "give a test file with the same columns as DATA")
                for col in absent
            ]
        )  # fmt: skip
    return len(next(iter(table.values())))


def starter_yaml(
    data: str | Path,
    test: str | Path | None,
    config: Path,
    guess: Guess,
    rows: int,
    classes: int,
) -> str:
    """The commented starter config: first line the command that runs it."""
    fraction = DataConfig.test_fraction
    held_out = f"null: a seeded stratified {fraction:.0%} of train is held out, with a warning"
    lines = [
        f"# tunewise run {config}",
        f"# Written by tunewise init from {data}: {rows} rows, {classes} classes.",
        "# Only what is yours is set here (the data, its columns, a name); every other key keeps",
        "# its default, tunewise's measured recipe. Each section and key with its default:",
        f"# {DOCS}.",
        f"# Change any key for one run on the command line: tunewise run {config} train.epochs=2",
        "task: classification",
        _kv("name", _name(data), "the run directory: runs/<name>/"),
        "data:",
        _kv("  train", str(data), "paths are read from the directory you run tunewise in"),
        _kv(
            "  test", str(test) if test else None, "scored once at the end" if test else held_out
        ),  # fmt: skip
        _kv(
            "  text_col",
            guess.text,
            f"guessed: {guess.reasons['text']}"
            if "text" in guess.reasons
            else "given with --text-col",
        ),  # fmt: skip
        _kv(
            "  label_col",
            guess.label,
            f"guessed: {guess.reasons['label']}"
            if "label" in guess.reasons
            else "given with --label-col",
        ),  # fmt: skip
    ]
    return "\n".join(lines) + "\n"


def _kv(key: str, value: object, comment: str) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    pair = f"{key}: {dumped.strip().removesuffix('...').strip()}"
    return f"{pair:<30}  # {comment}"


def _print(
    data: str | Path, started: Started, guess: Guess, test: str | Path | None, test_rows: int | None
) -> None:
    out = results
    counts = sorted(started.classes.values())
    spread = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}–{counts[-1]}"
    out.print(f"read {data}: {started.rows} rows, {len(started.classes)} classes "
              f"({spread} rows each)", highlight=False)  # fmt: skip
    for role, col in (("text", started.text_col), ("label", started.label_col)):
        why = guess.reasons.get(role, f"given with --{role}-col")
        out.print(f"{role} column: [bold]{col}[/] — {why}", highlight=False)
    if guess.alternatives:
        out.print(f"other possible label columns: {', '.join(guess.alternatives)} "
                  "(pass --label-col to choose one)")  # fmt: skip
    if test is None:
        out.print(f"no --test file: run will hold out a seeded stratified "
                  f"{DataConfig.test_fraction:.0%} of {data} as the test set")  # fmt: skip
    else:
        out.print(f"test file {test}: {test_rows} rows")
    out.print(f"wrote {started.config}")
    out.print(f"next: [bold]{started.command}[/]", highlight=False)
