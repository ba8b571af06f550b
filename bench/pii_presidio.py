"""Microsoft Presidio on the same PII benchmark as bench/pii.py, for a side-by-side.

    /path/to/venv-with-presidio/bin/python bench/pii_presidio.py [--quick]

Presidio needs a spaCy pipeline; spaCy's trained English models are not on PyPI, so (offline)
this runs Presidio's recognizers on a blank English pipeline: its pattern and checksum
recognizers (email, phone via `phonenumbers`, credit card, IBAN, IP, URL, dates) work, its
NER-based PERSON and LOCATION cannot fire. Install: `pip install presidio-analyzer==2.2.366
Faker==40.63.0` in a separate virtualenv. Without Presidio it prints {"skipped": ...} and exits
0. Prints one JSON object as its last line and writes bench/results/pii_presidio.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pii import ROOT, banking_texts, make_benchmark, score  # noqa: E402

TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "URL": "URL",
    "PERSON": "PERSON",
    "LOCATION": "ADDRESS",
    "DATE_TIME": "DATE_OF_BIRTH",
    "US_BANK_NUMBER": "ACCOUNT",
}


@dataclass
class Span:
    start: int
    end: int
    type: str


class Presidio:
    """Adapter: Presidio's AnalyzerEngine behind bench/pii.py's `find(text)` interface."""

    def __init__(self):
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        folder = Path(tempfile.mkdtemp()) / "blank_en"
        spacy.blank("en").to_disk(folder)
        conf = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(folder)}],
        }
        engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
        self.analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])

    def find(self, text: str) -> list[Span]:
        found = self.analyzer.analyze(text=text, language="en")
        return [Span(r.start, r.end, TYPES[r.entity_type]) for r in found if r.entity_type in TYPES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="900 sentences instead of 4500")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / "pii_presidio.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        detector = Presidio()
    except ImportError as exc:
        result = {"benchmark": "pii_presidio", "skipped": f"Presidio not installed ({exc})"}
        out.write_text(json.dumps(result))
        print(json.dumps(result))
        return
    started = time.perf_counter()
    bench = make_benchmark(900 if args.quick else 4500, args.seed)
    texts = banking_texts()
    flagged = sum(bool(detector.find(t)) for t in texts)
    result = {
        "benchmark": "pii_presidio",
        "nlp": "blank spaCy 'en' (no NER: PERSON and LOCATION cannot fire)",
        "sentences": len(bench),
        "per_type": score(detector, bench),
        "banking77_false_positives": {
            "rows": len(texts),
            "rows_flagged": flagged,
            "share": round(flagged / len(texts), 5),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
