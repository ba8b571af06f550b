"""Which column holds the text and which the label: from names (for a "did you mean") and from
the values (for `tunewise init`).

Why both: a missing column is mostly a different schema (`utterance,intent`), and a suggestion
that names the label column as the text column sends a user the wrong way; names alone mislead
there ('intent' is close to 'text'), so each column's role decides first. `init` reads the
values too: the text is the longest free text, the label the column with few distinct values.

    guess = guess_columns({"utterance": [...], "intent": [...]})
    guess.text, guess.label, guess.reasons
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tunewise.core.errors import InputError, Problem

# fmt: off
TEXT_NAMES = frozenset({
    "text", "utterance", "utterances", "sentence", "message", "msg", "query", "question",
    "content", "body", "review", "comment", "description", "prompt", "input", "document", "doc",
    "title", "tweet", "transcript", "request", "complaint",
})
LABEL_NAMES = frozenset({
    "label", "labels", "intent", "intents", "category", "categories", "class", "target", "tag",
    "topic", "sentiment", "gold", "annotation", "y",
})
# fmt: on
MAX_LABEL_SHARE = 0.5  # a label column has at most this many distinct values per row


def name_role(name: str) -> str | None:
    """`text_col` or `label_col` when the column's name says so (`customer_message`), else None."""
    words = set(re.split(r"[^a-z0-9]+", name.lower())) | {name.lower()}
    text, label = bool(words & TEXT_NAMES), bool(words & LABEL_NAMES)
    if text == label:
        return None
    return "text_col" if text else "label_col"


def closest_column(role: str, wanted: str, found: Sequence[str], other: str | None) -> str | None:
    """The column most likely meant for `role` (`text_col`/`label_col`) when `wanted` is missing:
    the same name in another case, else a column named for the role, else the closest name that
    is not named for the other role; never `other`, the column already taken by the other role.
    """
    pool = [name for name in found if name != other]
    same_case = {name.lower(): name for name in pool}.get(wanted.lower())
    if same_case is not None:
        return same_case
    named = [name for name in pool if name_role(name) == role]
    if named:
        return (difflib.get_close_matches(wanted, named, n=1, cutoff=0.0) or named)[0]
    neutral = [name for name in pool if name_role(name) is None]
    close = difflib.get_close_matches(wanted, neutral, n=1, cutoff=0.5)
    return close[0] if close else None


@dataclass
class Guess:
    """The text and label columns `init` settled on, why, and what it saw of each column."""

    text: str | None
    label: str | None
    reasons: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # column -> what its values look like
    alternatives: list[str] = field(default_factory=list)  # other plausible label columns


def guess_columns(table: Mapping[str, Sequence[str]], text: str | None = None,
                  label: str | None = None) -> Guess:  # fmt: skip
    """Guess what is not given: the text column is the longest free text (two or more words on
    average, not numbers); the label column has 2 or more values, at most half as many as rows, in
    (nearly) every row; a column named like a label wins a tie of candidates."""
    stats = {name: _stats(values) for name, values in table.items()}
    guess = Guess(text, label, seen={name: _describe(s) for name, s in stats.items()})
    if text is None:
        free = [n for n, s in stats.items() if n != label and s["free_text"]]
        if free:
            guess.text = max(free, key=lambda n: (stats[n]["mean_chars"], n))
            s = stats[guess.text]
            guess.reasons["text"] = (
                f"the longest free text: mean {s['mean_chars']:.0f} characters, "
                f"{s['distinct']} of {s['rows']} rows distinct"
            )
    if label is None:
        fits = [n for n, s in stats.items() if n != guess.text and s["label_like"]]
        fits.sort(key=lambda n: (name_role(n) != "label_col", -stats[n]["distinct"], n))
        if fits:
            guess.label, guess.alternatives = fits[0], fits[1:]
            s = stats[guess.label]
            why = ", named like a label" if name_role(guess.label) == "label_col" else ""
            guess.reasons["label"] = (
                f"{s['distinct']} values over {s['rows']} rows "
                f"({s['rows'] / s['distinct']:.1f} per class){why}"
            )
    return guess


def _stats(values: Sequence[str]) -> dict:
    filled = [v for v in values if v.strip()]
    rows, distinct = len(filled), len(set(filled))
    numeric = sum(_is_number(v) for v in filled)
    mean_chars = sum(len(v) for v in filled) / rows if rows else 0.0
    words = sum(len(v.split()) for v in filled) / rows if rows else 0.0
    return {
        "rows": rows,
        "distinct": distinct,
        "mean_chars": mean_chars,
        "free_text": distinct > 1 and numeric < rows / 2 and words >= 2,
        "label_like": rows >= 0.9 * len(values) > 0 and 2 <= distinct <= MAX_LABEL_SHARE * rows,
        "top": Counter(filled).most_common(3),
    }


def _describe(s: dict) -> str:
    if not s["rows"]:
        return "empty"
    top = ", ".join(repr(v[:20]) for v, _ in s["top"])
    return f"{s['distinct']} distinct of {s['rows']}, mean {s['mean_chars']:.0f} chars, e.g. {top}"


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def refuse_columns(columns: tuple[str | None, str | None], instead: str) -> None:
    """--text-col/--label-col name a classifier's two columns; other tasks read other shapes."""
    if any(columns):
        fix = f"leave them out; this task reads its columns from the config ({instead})"
        problem = Problem("command line", None, "--text-col/--label-col", "not for this task", fix)
        raise InputError([problem])
