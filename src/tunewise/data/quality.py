"""Rows that carry no usable text: no letters, mojibake, or a language the data set is not in.

Why a learned profile rather than a fixed "English only" rule: a French data set should flag its
English rows, not the other way round. `LanguageProfile.fit` learns the data set's dominant
script and language from its own rows; each row is then compared with that.

    profile = LanguageProfile().fit(texts)
    profile.language_                      # 'en'
    garbage_reason("Ã©tÃ© payÃ©", profile)  # 'mojibake (text decoded with the wrong encoding)'
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from tunewise.data.load import REPLACEMENT

# Short, frequent function words: enough to tell the seven most common Latin-script languages
# of customer text apart on a sentence, with no model to download.
FUNCTION_WORDS = {
    "en": "the and is are my i you to of what how why can do it have not this was with for",
    "es": "el los las que y en es por para mi no con una cómo qué está tengo mis pero del",
    "fr": "le les des et est je mon ma pas que pour avec une comment pourquoi vous il mes",
    "de": "der die das und ist ich nicht mein meine ein eine zu mit wie warum sie es auf für habe",
    "it": "il lo gli di che è non per con una mio mia come perché sono ho della",
    "pt": "os que é não para com uma um meu minha como por está eu tenho você",
    "nl": "het een en is ik niet mijn van dat met voor hoe waarom zijn je op te heb wat",
}
_WORDS = {lang: set(words.split()) for lang, words in FUNCTION_WORDS.items()}
MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|\ufffd|Ð[\u0080-\u00bf]")
TAG = re.compile(r"<[^>]{0,200}>|&[a-z]+;|&#\d+;")
TOKEN = re.compile(r"[^\W\d_]+")


def script_of(text: str) -> str | None:
    """The Unicode script most of the letters belong to (LATIN, CYRILLIC, CJK, ...)."""
    scripts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0] for ch in text if ch.isalpha())
    return scripts.most_common(1)[0][0] if scripts else None


def language_of(text: str) -> tuple[str | None, Counter]:
    """The language whose function words the text uses most (None when fewer than 2 hits)."""
    words = set(TOKEN.findall(text.lower()))
    hits = Counter({lang: len(words & vocab) for lang, vocab in _WORDS.items()})
    (best, top), *rest = hits.most_common(2)
    clear = top >= 2 and (not rest or top > rest[0][1])
    return (best if clear else None), hits


class LanguageProfile:
    """The data set's dominant script and language (scikit-learn contract: fit returns self)."""

    def fit(self, texts: list[str]) -> LanguageProfile:
        scripts = Counter(s for s in map(script_of, texts) if s)
        languages = Counter(lang for lang, _ in map(language_of, texts) if lang)
        self.script_ = scripts.most_common(1)[0][0] if scripts else None
        self.language_ = languages.most_common(1)[0][0] if languages else None
        return self

    def foreign(self, text: str) -> str | None:
        """Why `text` looks like another language than the data set's, or None."""
        script = script_of(text)
        if script and self.script_ and script != self.script_:
            return f"{script.lower()} script in a {self.script_.lower()}-script data set"
        lang, hits = language_of(text)
        if lang and self.language_ and lang != self.language_ and hits[self.language_] == 0:
            return f"looks like '{lang}' in a '{self.language_}' data set"
        return None


def garbage_reason(text: str, profile: LanguageProfile | None = None) -> str | None:
    """Why a row is empty or garbage, or None when it looks like real text."""
    bare = TAG.sub(" ", text).strip()
    if not bare:
        return "empty once markup is removed"
    if not any(ch.isalpha() for ch in bare):
        return "no letters: only digits, punctuation or symbols"
    if (at := text.find(REPLACEMENT)) >= 0:
        return (
            f"a replacement character (U+FFFD) at character {at + 1}: the file holds a NUL "
            "byte, a lone surrogate or bytes that are not UTF-8 there"
        )
    if MOJIBAKE.search(text):
        return "mojibake (text decoded with the wrong encoding)"
    return profile.foreign(bare) if profile is not None else None
