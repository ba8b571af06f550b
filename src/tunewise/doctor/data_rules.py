"""Doctor rules about what the training data went through before the model saw it.

Kept apart from `rules.py` (training and evaluation rules) so each module stays readable.
"""

from __future__ import annotations

from tunewise.core.findings import Finding
from tunewise.doctor.facts import RunFacts

CLASSIC_STEPS = ("stem", "lemmatize", "stopwords")


def classic_preprocessing(run: RunFacts, limits) -> list[Finding]:
    """Stemming, lemmatisation and stop-word removal help TF-IDF models; a transformer was
    pre-trained on whole sentences, and "not" is a stop word that flips an intent."""
    prepare = run.section("prepare")
    applied = [step for step in CLASSIC_STEPS if prepare.get(step)]
    if not applied:
        return []
    model = run.section("model").get("name", "the model")
    return [
        Finding(
            "classic-preprocessing",
            "warning",
            f"prepare applied {', '.join(applied)} to the input of a transformer ({model}), "
            "which reads whole sentences: these steps remove words and word forms it uses",
            "set " + ", ".join(f"prepare.{s}: false" for s in applied) + " for transformer runs; "
            "keep them for a TF-IDF baseline only",
            {"steps": applied, "model": model},
        )
    ]
