"""Find personal data in free text and replace it with typed placeholders such as [EMAIL].

Why rules and validators rather than a NER model: they run offline in milliseconds per
thousand rows, and a checksum (Luhn for cards, ISO 13616 mod-97 for IBANs, octet ranges for IPs)
turns a "looks like digits" guess into near-certainty. Names and street addresses have no
checksum, so they use context (a cue such as "my name is", an honorific, a house number before a
street type) and a vocabulary learned from the data: a capitalised word that the same data also
writes in lower case ("visa", "apple") is an ordinary word, not a name.

    detector = PIIDetector().fit(texts)          # learns the lower-case vocabulary
    detector.redact("Mail jo@x.org or call +44 20 7946 0958")
    # -> ('Mail [EMAIL] or call [PHONE]', [Span(5, 13, 'EMAIL', ...), ...])
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import regex as re

from tunewise.data.pii_patterns import (
    ACCOUNT,
    ADDRESS_PATTERNS,
    CAPITALISED_EXCLUDED,
    CARD,
    DATE,
    DOB_CUE,
    EMAIL,
    GENERIC_CUE,
    HONORIFIC,
    IBAN,
    IPV4,
    IPV6,
    LOWER_NAME_RUN,
    NAME_IS,
    NAME_RUN,
    PARTICLES,
    PHONE,
    STRONG_CUE,
    URL,
    WORD,
)

TYPES = (
    "URL",
    "EMAIL",
    "IBAN",
    "CARD",
    "IP",
    "DATE_OF_BIRTH",
    "ACCOUNT",
    "PHONE",
    "ADDRESS",
    "PERSON",
)
IBAN_LENGTHS = {"AD": 24, "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24,
                "FI": 18, "FR": 27, "GB": 22, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15,
                "PL": 28, "PT": 25, "SE": 24}  # fmt: skip


@dataclass(frozen=True)
class Span:
    """One piece of personal data: character offsets into the text, its type and its text."""

    start: int
    end: int
    type: str
    text: str


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number carries (catches 1 in 10 random strings)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    iban = re.sub(r"\s", "", text).upper()
    if not 15 <= len(iban) <= 34 or IBAN_LENGTHS.get(iban[:2], len(iban)) != len(iban):
        return False
    number = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    return int(number) % 97 == 1


def _card_ok(text: str) -> bool:
    """Luhn-valid 12–19 digits, written plain or in the groups cards print (4-4-4-4, 4-6-5)."""
    digits = re.sub(r"\D", "", text)
    groups = [len(g) for g in re.split(r"[ -]", text)]
    grouped = len(groups) == 1 or set(groups[:-1]) == {4} or groups in ([4, 6, 5], [4, 6, 4])
    return 12 <= len(digits) <= 19 and grouped and luhn_ok(digits)


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone_ok(text: str) -> bool:
    """7–15 digits (E.164), not a date, and with a separator or a + unless it is 9+ digits."""
    main = re.split(r"(?i)\s*(?:x|ext\.?|#)\s*\d+$", text)[0]
    digits = re.sub(r"\D", "", main)
    if not 7 <= len(digits) <= 15 or DATE.fullmatch(main.strip()):
        return False
    return len(digits) >= 9 or bool(re.search(r"[\s().+/-]", main.strip()))


class PIIDetector:
    """Rules + validators for the ten TYPES; `fit` learns which capitalised words are not names.

    scikit-learn's contract: `__init__` only stores parameters; `fit(texts)` learns `vocab_`
    (words written in lower case at least `min_count` times) and returns self. Calling `find`
    before `fit` works with an empty vocabulary (more name false positives).
    """

    def __init__(self, types: Iterable[str] = TYPES, min_count: int = 2):
        self.types = tuple(types)
        self.min_count = min_count

    def fit(self, texts: Iterable[str]) -> PIIDetector:
        """Learn `vocab_` (lower-case words) and `phrases_` (capitalised runs in many rows).

        A capitalised run that recurs in `min_count` + 1 rows ("Notting Hill", "Apple Pay") is
        a place or product of this data set, not a customer's name.
        """
        texts = list(texts)
        counts = Counter(w for t in texts for w in re.findall(r"\b\p{Ll}{2,}\b", t))
        runs = Counter(r for t in texts for r in {m.group() for m in NAME_RUN.finditer(t)})
        self.vocab_ = frozenset(w for w, c in counts.items() if c >= self.min_count)
        self.phrases_ = frozenset(r for r, c in runs.items() if c > self.min_count and " " in r)
        return self

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans, earlier TYPES winning (a card number is never also a phone)."""
        taken: list[Span] = []
        for kind in TYPES:
            if kind not in self.types:
                continue
            for start, end in self._finders()[kind](text):
                if not any(start < s.end and s.start < end for s in taken):
                    taken.append(Span(start, end, kind, text[start:end]))
        return sorted(taken, key=lambda s: s.start)

    def redact(self, text: str) -> tuple[str, list[Span]]:
        """`text` with each span replaced by its typed placeholder, e.g. "[PHONE]"."""
        spans = self.find(text)
        for span in reversed(spans):
            text = f"{text[: span.start]}[{span.type}]{text[span.end :]}"
        return text, spans

    def _finders(self) -> dict[str, Callable[[str], list[tuple[int, int]]]]:
        return {
            "URL": lambda t: _matches(URL, t, trim=".,;:!?)"),
            "EMAIL": lambda t: _matches(EMAIL, t),
            "IBAN": lambda t: _matches(IBAN, t, iban_ok),
            "CARD": lambda t: _matches(CARD, t, _card_ok),
            "IP": lambda t: _matches(IPV4, t, _ip_ok) + _matches(IPV6, t, _ip_ok),
            "DATE_OF_BIRTH": _dates_of_birth,
            "ACCOUNT": lambda t: _groups(ACCOUNT, t),
            "PHONE": lambda t: _matches(PHONE, t, _phone_ok, trim=" .-/("),
            "ADDRESS": lambda t: [s for p in ADDRESS_PATTERNS for s in _matches(p, t, trim=" ,")],
            "PERSON": self._people,
        }

    def _people(self, text: str) -> list[tuple[int, int]]:
        """Names after a cue or honorific, and runs of 2+ capitalised non-vocabulary words."""
        spans = []
        for cue in (HONORIFIC, NAME_IS, STRONG_CUE, GENERIC_CUE):
            for m in cue.finditer(text):
                spans += self._name_after(text, m.end(), cue)
        for m in NAME_RUN.finditer(text):
            words = WORD.findall(m.group())
            fresh = len(words) >= 2 and self._new_phrase(m.group())
            if fresh and all(self._name_like(w) for w in words):
                spans.append(m.span())
        return spans

    def _new_phrase(self, run: str) -> bool:
        return run not in getattr(self, "phrases_", frozenset())

    def _name_after(self, text: str, pos: int, cue: re.Pattern) -> list[tuple[int, int]]:
        """The capitalised run right after a cue; a lone word after a weak cue must not be known."""
        strict = cue is GENERIC_CUE
        m = NAME_RUN.match(text, pos)
        if m is None and cue is NAME_IS:  # "my name is john smith": lower case, unknown words
            m = LOWER_NAME_RUN.match(text, pos)
            strict = True
        if m is None or not self._new_phrase(m.group()):
            return []
        words = WORD.findall(m.group())
        test = self._name_like if strict or len(words) == 1 else _not_excluded
        return [m.span()] if all(test(w) for w in words) else []

    def _name_like(self, word: str) -> bool:
        low = word.lower()
        if word in PARTICLES:  # "van", "de": lower case inside a name
            return True
        return _not_excluded(word) and low not in getattr(self, "vocab_", frozenset())


def _not_excluded(word: str) -> bool:
    low = word.lower().strip("'’.")
    plural = len(low) > 4 and low.removesuffix("s") in CAPITALISED_EXCLUDED  # "Mastercards"
    return low not in CAPITALISED_EXCLUDED and not plural


def _matches(
    pattern: re.Pattern, text: str, valid: Callable[[str], bool] | None = None, trim: str = ""
) -> list[tuple[int, int]]:
    """Spans of `pattern` in `text` that pass `valid`, with trailing `trim` characters removed."""
    out = []
    for m in pattern.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in trim:
            end -= 1
        if valid is None or valid(text[start:end]):
            out.append((start, end))
    return out


def _groups(pattern: re.Pattern, text: str) -> list[tuple[int, int]]:
    """Spans of the pattern's `value` group: the cue ("account number") stays readable."""
    return [m.span("value") for m in pattern.finditer(text)]


def _dates_of_birth(text: str) -> list[tuple[int, int]]:
    """Dates with a birth cue ("born", "DOB", "date of birth") in the 40 characters before."""
    return [
        m.span()
        for m in DATE.finditer(text)
        if DOB_CUE.search(text[max(0, m.start() - 40) : m.start()])
    ]


def pii_counts(detector: PIIDetector, texts: Iterable[str]) -> tuple[Counter, list[int]]:
    """Entities per type over `texts`, and the indices of the rows holding any."""
    counts: Counter = Counter()
    rows = []
    for i, text in enumerate(texts):
        spans = detector.find(text)
        counts.update(s.type for s in spans)
        if spans:
            rows.append(i)
    return counts, rows
