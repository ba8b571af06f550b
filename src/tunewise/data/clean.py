"""The `prepare` pipeline: text transforms, then row drops, each step counting what it changed.

Why every step reports and every drop is recorded: "never drop a row silently". A user must be
able to see that HTML stripping touched 212 rows and dedup removed 4, and read each removed row
with the line it came from and why.

Transforms (unicode, html, rules, placeholders, PII, case, classic options) apply to every split
alike so that train and test are read the same way; drops (empty rows, dedup) apply only to the
split being prepared as training data.

    prepared = prepare_examples(train, PrepareConfig(pii="redact"))
    prepared.examples, prepared.dropped, prepared.steps
"""

from __future__ import annotations

import dataclasses
import html
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from tunewise.core.errors import InputError, Problem
from tunewise.data.dedup import exact_key
from tunewise.data.load import REPLACEMENT, Examples
from tunewise.data.pii import PIIDetector
from tunewise.data.pii_patterns import EMAIL, URL

Transform = Callable[[str], str]
INVISIBLE = re.compile("[\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\u00ad]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TAG = re.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>|<[^>]{1,500}>", re.S | re.I)
NUMBER = re.compile(r"(?<![\w\[])[-+]?\d[\d,.]*(?![\w\]])")
PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


@dataclass
class Prepared:
    """Cleaned rows, every dropped row with its reason, and rows changed per step."""

    examples: Examples
    dropped: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    pii: dict[str, int] = field(default_factory=dict)


def normalise_unicode(text: str) -> str:
    """NFKC (full-width and ligature forms to plain), invisible characters out, control and
    replacement characters (U+FFFD: what the reader put for a NUL byte or a lone surrogate) to
    spaces, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = CONTROL.sub(" ", INVISIBLE.sub("", text)).replace(REPLACEMENT, " ")
    return " ".join(text.split())


def strip_html(text: str) -> str:
    """Tags, comments, scripts and styles out; entities (&amp;) decoded; tags become spaces."""
    return " ".join(html.unescape(TAG.sub(" ", text)).split())


def lowercase(text: str) -> str:
    """Lower case, except typed placeholders such as [EMAIL], which stay recognisable."""
    parts = PLACEHOLDER.split(text)
    marks = PLACEHOLDER.findall(text)
    out = parts[0].lower()
    for mark, part in zip(marks, parts[1:], strict=True):
        out += mark + part.lower()
    return out


def compile_rules(rules: list) -> list[Transform]:
    """User `{pattern, replacement}` rules as functions; a bad pattern is an input error."""
    problems: list[Problem] = []
    out: list[Transform] = []
    for i, rule in enumerate(rules):
        try:
            pattern = re.compile(rule.pattern)
        except re.error as exc:
            problems.append(
                Problem(
                    "config",
                    None,
                    f"prepare.rules[{i}].pattern",
                    f"invalid regular expression {rule.pattern!r}: {exc}",
                    "escape special characters such as ( [ . * with a backslash",
                )
            )
            continue
        out.append(partial(_substitute, pattern, rule.replacement))
    if problems:
        raise InputError(problems)
    return out


def _substitute(pattern: re.Pattern, replacement: str, text: str) -> str:
    return pattern.sub(replacement, text)


def _classic(cfg) -> list[tuple[str, Transform]]:
    """Stop-word removal, lemmatisation and stemming: for TF-IDF baselines, not transformers."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    steps: list[tuple[str, Transform]] = []
    if cfg.stopwords:
        steps.append(
            (
                "stopwords",
                lambda t: _map_words(t, lambda w: "" if w.lower() in ENGLISH_STOP_WORDS else w),
            )
        )
    if cfg.lemmatize:
        steps.append(("lemmatize", lambda t: _map_words(t, lemma)))
    if cfg.stem:
        import snowballstemmer

        stemmer = snowballstemmer.stemmer("english")
        steps.append(("stem", lambda t: _map_words(t, stemmer.stemWord)))
    return steps


def _map_words(text: str, fn: Callable[[str], str]) -> str:
    """Apply `fn` to each word (placeholders untouched) and tidy the spaces left behind."""
    out = WORD.sub(lambda m: fn(m.group()), text)
    return " ".join(out.split())


IRREGULAR = {
    "was": "be",
    "were": "be",
    "is": "be",
    "are": "be",
    "am": "be",
    "been": "be",
    "has": "have",
    "had": "have",
    "did": "do",
    "does": "do",
    "done": "do",
    "went": "go",
    "gone": "go",
    "got": "get",
    "gotten": "get",
    "made": "make",
    "paid": "pay",
    "sent": "send",
    "took": "take",
    "taken": "take",
    "gave": "give",
    "given": "give",
    "lost": "lose",
    "bought": "buy",
    "received": "receive",
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
}


def lemma(word: str) -> str:
    """A light English lemmatiser (irregular table + suffix rules), offline and dictionary-free.

    Why not WordNet: its data must be downloaded at run time. This handles the common inflections
    ("cards" -> "card", "charged" -> "charge", "topping" -> "top") and leaves the rest alone.
    """
    low = word.lower()
    if low in IRREGULAR:
        return IRREGULAR[low]
    for suffix, repl, min_len in (
        ("ies", "y", 5),
        ("sses", "ss", 5),
        ("ches", "ch", 5),
        ("shes", "sh", 5),
        ("xes", "x", 4),
        ("s", "", 4),
    ):
        if low.endswith(suffix) and len(low) >= min_len and not low.endswith(("ss", "us", "is")):
            return low[: -len(suffix)] + repl
    for suffix in ("ing", "ed"):
        stem = low[: -len(suffix)]
        if low.endswith(suffix) and len(stem) >= 3:
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                return stem[:-1]  # stopped -> stop
            return stem + "e" if stem.endswith(("at", "iz", "ag", "rg", "v", "c", "dg")) else stem
    return low


def build_transforms(cfg, detector: PIIDetector | None) -> list[tuple[str, Transform]]:
    """The configured text steps, in the documented order."""
    steps: list[tuple[str, Transform]] = []
    if cfg.unicode:
        steps.append(("unicode", normalise_unicode))
    if cfg.strip_html:
        steps.append(("strip_html", strip_html))
    steps += [(f"rule[{i}]", fn) for i, fn in enumerate(compile_rules(cfg.rules))]
    if cfg.pii == "redact" and detector is not None:
        steps.append(("pii", lambda t: detector.redact(t)[0]))
    if cfg.replace_urls:
        steps.append(("replace_urls", lambda t: URL.sub("[URL]", t)))
    if cfg.replace_emails:
        steps.append(("replace_emails", lambda t: EMAIL.sub("[EMAIL]", t)))
    if cfg.replace_numbers:
        steps.append(("replace_numbers", lambda t: NUMBER.sub("[NUMBER]", t)))
    if cfg.lowercase:
        steps.append(("lowercase", lowercase))
    return steps + _classic(cfg)


def transform(ex: Examples, steps: list[tuple[str, Transform]]) -> tuple[Examples, list[dict]]:
    """Apply each step to every row; count the rows each step changed."""
    texts = list(ex.texts)
    report = []
    for name, fn in steps:
        new = [fn(t) for t in texts]
        report.append(
            {"step": name, "changed": sum(a != b for a, b in zip(texts, new, strict=True))}
        )
        texts = new
    return dataclasses.replace(ex, texts=texts), report


def _dropped(ex: Examples, i: int, original: Examples, reason: str, step: str) -> dict:
    return {
        "file": ex.source,
        "line": ex.lines[i],
        "text": original.texts[i],
        "cleaned": ex.texts[i],
        "label": ex.labels[i],
        "step": step,
        "reason": reason,
    }


def drop_rows(
    ex: Examples, original: Examples, dedup: str
) -> tuple[Examples, list[dict], list[dict]]:
    """Drop rows empty after cleaning, then duplicates by the dedup policy; record each drop."""
    dropped = [
        _dropped(ex, i, original, "empty after cleaning", "empty")
        for i, t in enumerate(ex.texts)
        if not t.strip()
    ]
    gone = {d["line"] for d in dropped}
    keep = [i for i in range(len(ex)) if ex.lines[i] not in gone]
    report = [{"step": "drop_empty", "dropped": len(dropped)}]
    if dedup != "off":
        dups = _dedup(ex, keep, dedup)
        dropped += [_dropped(ex, i, original, reason, "dedup") for i, reason in dups]
        chosen = {i for i, _ in dups}
        keep = [i for i in keep if i not in chosen]
        report.append({"step": f"dedup ({dedup})", "dropped": len(dups)})
    return ex.subset(keep), sorted(dropped, key=lambda d: d["line"]), report


def _dedup(ex: Examples, rows: list[int], policy: str) -> list[tuple[int, str]]:
    """Rows to drop: repeats of an earlier text; with drop-conflicting, every conflicting row."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in rows:
        groups[exact_key(ex.texts[i])].append(i)
    out = []
    for group in groups.values():
        labels = sorted({ex.labels[i] for i in group})
        first = ex.lines[group[0]]
        if len(labels) > 1 and policy == "drop-conflicting":
            out += [(i, f"conflicting labels {labels} for one text") for i in group]
            continue
        for i in group[1:]:
            same = ex.labels[i] == ex.labels[group[0]]
            why = f"duplicate of line {first}" if same else f"conflicts with line {first} (kept)"
            out.append((i, why))
    return sorted(out)


def prepare_examples(
    ex: Examples, cfg, drop: bool = True, detector: PIIDetector | None = None
) -> Prepared:
    """Run the configured pipeline on one split; drops only when `drop` (the training split)."""
    if detector is None and cfg.pii != "off":
        detector = PIIDetector().fit(ex.texts)
    steps = build_transforms(cfg, detector)
    counts: dict[str, int] = {}
    if cfg.pii != "off" and detector is not None:
        for text in ex.texts:
            for span in detector.find(text):
                counts[span.type] = counts.get(span.type, 0) + 1
    cleaned, report = transform(ex, steps)
    if not drop:
        return Prepared(cleaned, [], report, counts)
    kept, dropped, drops = drop_rows(cleaned, ex, cfg.dedup)
    return Prepared(kept, dropped, report + drops, counts)
