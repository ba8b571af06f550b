"""PII detection benchmark: precision and recall per type on Faker-generated customer messages.

    .venv/bin/python bench/pii.py [--quick]

Sentences come from customer-service templates filled by Faker (several locales: names, phones
in national formats, Luhn-valid cards, IBANs, IPs, street addresses, dates of birth), so every
gold span is known. False positives are measured on BANKING77's 13,083 real queries, which hold
no personal data: the share of rows where the detector finds anything. Needs the bench extra
(`pip install -c constraints.txt -e '.[bench]'`). Prints one JSON object as its last line and
writes bench/results/pii.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from collections import Counter
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT.parent / "shared" / "data" / "banking77"
NAME_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"]
PHONE_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "en_IN"]
ADDRESS_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR"]
TEMPLATES = {
    "PERSON": [
        "Hi, my name is {} and I can't log in to the app.",
        "This is {}, I was charged twice for the same order.",
        "Please transfer 200 euros to {} before Friday.",
        "I sent money to {} yesterday but it has not arrived.",
        "Can you add {} as a beneficiary on my account?",
        "{} here, my card got blocked at the airport.",
        "The payment to {} was declined, why?",
        "Kind regards, {}",
    ],
    "EMAIL": [
        "My email is {}, please send the statement there.",
        "I never got the confirmation at {}.",
        "Contact me at {} about the refund.",
    ],
    "PHONE": [
        "You can call me on {} after 5pm.",
        "My phone number changed to {}.",
        "I got a text from {} asking for my PIN, is that you?",
    ],
    "CARD": [
        "My card number is {} and it was declined.",
        "Someone used card {} without me.",
        "Please cancel {} right away.",
    ],
    "IBAN": [
        "Please send the refund to IBAN {}.",
        "My IBAN is {}, is it correct?",
        "The transfer to {} bounced back.",
    ],
    "IP": [
        "There was a login from {} that wasn't me.",
        "My router shows {} as blocked.",
        "Why did my session from IP {} get locked?",
    ],
    "ADDRESS": [
        "Please send the new card to {}.",
        "I moved, my new address is {}.",
        "The card was delivered to {} but I don't live there.",
    ],
    "DATE_OF_BIRTH": [
        "My date of birth is {}.",
        "I was born on {} if you need to verify.",
        "DOB: {}, surname as on the card.",
    ],
    "ACCOUNT": [
        "My account number is {} and I can't see my salary.",
        "Please check account no. {} for the missing deposit.",
    ],
}
DATE_FORMATS = ["%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y", "%d %B %Y", "%d.%m.%Y"]


def _value(kind: str, fakers: dict[str, Faker], rng: random.Random) -> str:
    """One Faker value of `kind`, in one of the formats people write it in."""
    pick = lambda locales: fakers[rng.choice(locales)]  # noqa: E731
    if kind == "PERSON":
        return pick(NAME_LOCALES).name()
    if kind == "EMAIL":
        return pick(NAME_LOCALES).email()
    if kind == "PHONE":
        return pick(PHONE_LOCALES).phone_number()
    if kind == "CARD":
        number = fakers["en_US"].credit_card_number()
        grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        return grouped if rng.random() < 0.5 and len(number) == 16 else number
    if kind == "IBAN":
        iban = pick(["en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"]).iban()
        return (
            " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
            if rng.random() < 0.5
            else iban
        )
    if kind == "IP":
        return fakers["en_US"].ipv4() if rng.random() < 0.7 else fakers["en_US"].ipv6()
    if kind == "ADDRESS":
        f = pick(ADDRESS_LOCALES)
        return f.address().replace("\n", ", ") if rng.random() < 0.5 else f.street_address()
    if kind == "DATE_OF_BIRTH":
        return fakers["en_US"].date_of_birth().strftime(rng.choice(DATE_FORMATS))
    return str(rng.randint(10_000_000, 99_999_999_999))


def make_benchmark(n: int, seed: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """n sentences with their gold spans (start, end, type); every type equally often."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in set(NAME_LOCALES + PHONE_LOCALES + ADDRESS_LOCALES)}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    kinds = list(TEMPLATES)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        template = rng.choice(TEMPLATES[kind])
        value = _value(kind, fakers, rng)
        start = template.index("{}")
        out.append((template.format(value), [(start, start + len(value), kind)]))
    return out


def score(detector, bench) -> dict:
    """Per type: recall (gold spans overlapped ≥ 50% by a span of the same type), precision."""
    gold_n, found, pred_n, correct = Counter(), Counter(), Counter(), Counter()
    misses: dict[str, list[str]] = {}
    for text, gold in bench:
        spans = detector.find(text)
        for start, end, kind in gold:
            gold_n[kind] += 1
            hit = any(s.type == kind and _overlap(s, start, end) >= 0.5 for s in spans)
            found[kind] += hit
            if not hit:
                misses.setdefault(kind, []).append(text)
        for s in spans:
            pred_n[s.type] += 1
            correct[s.type] += any(k == s.type and _overlap(s, a, b) > 0 for a, b, k in gold)
    return {
        kind: {
            "recall": round(found[kind] / gold_n[kind], 4),
            "precision": round(correct[kind] / pred_n[kind], 4) if pred_n[kind] else None,
            "n": gold_n[kind],
            "missed_examples": misses.get(kind, [])[:3],
        }
        for kind in TEMPLATES
    }


def _overlap(span, start: int, end: int) -> float:
    return max(0, min(span.end, end) - max(span.start, start)) / (end - start)


def banking_texts() -> list[str]:
    texts = []
    for name in ("train", "test"):
        with open(BANKING / f"{name}.csv", encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh)]
    return texts


def banking_false_positives(detector=None) -> dict:
    """Share of BANKING77 rows (train + test) where anything is detected."""
    from tunewise.data.pii import PIIDetector

    texts = banking_texts()
    detector = detector or PIIDetector().fit(texts)
    flagged = [(t, [f"{s.type}: {s.text}" for s in detector.find(t)]) for t in texts]
    flagged = [(t, f) for t, f in flagged if f]
    return {
        "rows": len(texts),
        "rows_flagged": len(flagged),
        "share": round(len(flagged) / len(texts), 5),
        "examples": flagged[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="900 sentences instead of 4500")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    bench = make_benchmark(900 if args.quick else 4500, args.seed)
    texts = [t for t, _ in bench]
    from tunewise.data.pii import PIIDetector

    result = {
        "benchmark": "pii",
        "sentences": len(bench),
        "per_type": score(PIIDetector().fit(texts), bench),
        "banking77_false_positives": banking_false_positives(),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = ROOT / "bench" / "results" / "pii.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
