"""PII detection and `prepare`: typed placeholders, steps that count, no silent drops."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import write_csv
from tunewise.cli import main
from tunewise.config import PrepareConfig, RegexRule
from tunewise.data.clean import lemma, prepare_examples
from tunewise.data.load import Examples
from tunewise.data.pii import PIIDetector, iban_ok, luhn_ok

PLANTED = {
    "EMAIL": "write to anna.k+bank@mail.example.co.uk please",
    "PHONE": "call me on +1-363-717-0669x0743 tonight",
    "CARD": "my card 4539 1488 0343 6467 was charged twice",
    "IBAN": "send it to GB82 WEST 1234 5698 7654 32 today",
    "IP": "the login came from 203.95.252.199 not me",
    "URL": "I saw https://phish.example.com/login?id=3 in a mail",
    "PERSON": "hi, my name is Charlotte van Vliet and I need help",
    "ADDRESS": "deliver it to 353 Kathleen Highway Apt. 681, Lake Laura, MT 87630 thanks",
    "DATE_OF_BIRTH": "my date of birth is 27/06/1992 if you need it",
    "ACCOUNT": "my account number is 12345678 and it is blocked",
}
CLEAN = [
    "Why was my card declined at the ATM in Notting Hill?",
    "I paid with Apple Pay but the payment is still pending",
    "How long does a transfer to Europe take? It has been 3 days",
    "Can I top up 100 euros with my Visa card?",
    "my name is wrong on the card",
]


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_pii_type_is_found_and_redacted(kind):
    detector = PIIDetector().fit(CLEAN * 3 + list(PLANTED.values()))
    text, spans = detector.redact(PLANTED[kind])
    assert [s.type for s in spans] == [kind]
    assert f"[{kind}]" in text


def test_ordinary_customer_text_is_not_pii():
    detector = PIIDetector().fit(CLEAN * 3)
    assert [detector.find(t) for t in CLEAN] == [[]] * len(CLEAN)


def test_validators_reject_look_alikes():
    assert luhn_ok("4539148803436467") and not luhn_ok("4539148803436468")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")
    detector = PIIDetector()
    assert detector.find("card 4539 1488 0343 6468 failed") == []  # Luhn fails
    assert detector.find("version 999.1.2.3 of the app") == []  # not an IP
    assert detector.find("it cost 25.50 on 12/03") == []


def _ex(rows):
    return Examples([t for t, _ in rows], [y for _, y in rows], list(range(2, len(rows) + 2)), "f")


def test_each_step_reports_rows_changed():
    rows = [
        ("Ｆｕｌｌ\u200bwidth  text", "a"),
        ("<b>bold</b> &amp; more", "a"),
        ("order ORD-123 shipped", "b"),
        ("Visit WWW.example.com NOW", "b"),
    ]
    cfg = PrepareConfig(
        rules=[RegexRule(r"ORD-(\d+)", r"order#\1")], replace_urls=True, lowercase=True, pii="off"
    )
    out = prepare_examples(_ex(rows), cfg)
    changed = {s["step"]: s.get("changed", s.get("dropped")) for s in out.steps}
    assert changed == {
        "unicode": 1,
        "strip_html": 1,
        "rule[0]": 1,
        "replace_urls": 1,
        "lowercase": 2,
        "drop_empty": 0,
        "dedup (keep-first)": 0,
    }
    assert out.examples.texts == [
        "fullwidth text",
        "bold & more",
        "order order#123 shipped",
        "visit [URL] now",
    ]


def test_pii_redaction_keeps_placeholders_upper_case():
    cfg = PrepareConfig(pii="redact", lowercase=True)
    out = prepare_examples(_ex([("Mail ME at jo@x.org", "a"), ("fine", "b")]), cfg)
    assert out.examples.texts[0] == "mail me at [EMAIL]" and out.pii == {"EMAIL": 1}


def test_dedup_policies_record_every_dropped_row():
    rows = [
        ("Same text", "a"),
        ("same  TEXT", "a"),
        ("clash", "a"),
        ("clash", "b"),
        ("<p></p>", "a"),
        ("other", "b"),
    ]
    keep = prepare_examples(_ex(rows), PrepareConfig(pii="off"))
    assert keep.examples.texts == ["Same text", "clash", "other"]
    reasons = {d["line"]: d["reason"] for d in keep.dropped}
    assert reasons == {
        3: "duplicate of line 2",
        5: "conflicts with line 4 (kept)",
        6: "empty after cleaning",
    }
    strict = prepare_examples(_ex(rows), PrepareConfig(pii="off", dedup="drop-conflicting"))
    assert strict.examples.texts == ["Same text", "other"]
    assert len(strict.dropped) == len(rows) - 2


def test_classic_options_for_tfidf():
    cfg = PrepareConfig(stopwords=True, lemmatize=True, pii="off")
    out = prepare_examples(_ex([("The cards were charged twice", "a")]), cfg)
    assert out.examples.texts == ["card charge twice"]
    assert lemma("topping") == "top" and lemma("boxes") == "box" and lemma("status") == "status"
    stem = prepare_examples(_ex([("charging cards", "a")]), PrepareConfig(stem=True, pii="off"))
    assert stem.examples.texts == ["charg card"]


def test_prepare_command_writes_clean_file_dropped_rows_and_summary(tmp_path, capsys):
    data = write_csv(
        tmp_path / "raw.csv",
        [("Call +44 20 7946 0958", "a"), ("dup", "b"), ("dup", "b"), ("<br>", "a"), ("fine", "a")],
    )
    out = tmp_path / "clean.csv"
    assert main(["prepare", str(data), "--out", str(out), "--pii", "redact"]) == 0
    rows = list(csv.reader(out.open()))
    assert rows == [["text", "label"], ["Call [PHONE]", "a"], ["dup", "b"], ["fine", "a"]]
    dropped = [json.loads(x) for x in (tmp_path / "clean.dropped.jsonl").read_text().splitlines()]
    assert [(d["line"], d["reason"]) for d in dropped] == [
        (4, "duplicate of line 3"),
        (5, "empty after cleaning"),
    ]
    summary = json.loads((tmp_path / "clean.prepare.json").read_text())
    assert summary["rows_in"] == 5 and summary["rows_out"] == 3 and summary["pii"] == {"PHONE": 1}
    assert "strip_html" in capsys.readouterr().out


def test_prepare_bad_input_exits_2_naming_the_place(tmp_path, capsys):
    data = write_csv(tmp_path / "raw.csv", [("ok", "a")])
    assert main(["prepare", str(data), "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out: unsupported output type '.txt'" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prepare:\n  rules:\n    - {pattern: '(unclosed', replacement: x}\n")
    assert main(["prepare", str(data), "--out", str(tmp_path / "o.csv"), "--config", str(cfg)]) == 2
    assert "prepare.rules[0].pattern: invalid regular expression" in capsys.readouterr().err
    cfg.write_text("prepare:\n  dedup: keepfirst\n")
    assert main(["prepare", str(data), "--out", str(tmp_path / "o.csv"), "--config", str(cfg)]) == 2
    assert f"{cfg}:2: prepare.dedup: 'keepfirst' is not a valid choice" in capsys.readouterr().err


def test_eda_augments_only_the_training_split(tmp_path):
    from tunewise.config import AugmentConfig, load_config
    from tunewise.data.augment import augment_examples
    from tunewise.data.curate import prepare_splits
    from tunewise.data.validate import Splits

    synonyms = tmp_path / "syn.json"
    synonyms.write_text(json.dumps({"card": ["plastic"], "refund": ["repayment"]}))
    aug = AugmentConfig(per_example=2, alpha=0.3, synonyms=str(synonyms))
    train = _ex(
        [(f"my card number {i} is lost now", "card") for i in range(10)]
        + [(f"i want a refund for order {i} please", "refund") for i in range(10)]
    )
    extra = augment_examples(train, aug)
    assert 0 < len(extra) <= 40 and set(extra.labels) == {"card", "refund"}
    assert all(t not in train.texts for t in extra.texts)
    val = _ex([("card stolen", "card"), ("refund due", "refund")])
    cfg = load_config({"data": {"train": "x"}, "prepare": {"augment": aug.__dict__}})
    out = prepare_splits(cfg, Splits(train, val, val, ["card", "refund"], "file"), tmp_path)
    assert len(out.train) == 20 + len(extra) and out.validation.texts == val.texts
    assert out.test.texts == val.texts
    assert json.loads((tmp_path / "prepare.json").read_text())["steps"][-1]["added"] == len(extra)


def test_back_translation_without_a_reachable_model_is_a_clear_error():
    from tunewise.config import AugmentConfig
    from tunewise.core.errors import InputError
    from tunewise.data.augment import augment_examples

    train = _ex([("where is my card", "a"), ("refund please", "b")])
    with pytest.raises(InputError, match="back-translation needs two translation models"):
        augment_examples(train, AugmentConfig(method="backtranslate"))
    cfg = AugmentConfig(method="backtranslate", model="no-such/opus-mt-en-de", back_model="x/y")
    with pytest.raises(InputError, match="cannot load 'no-such/opus-mt-en-de'"):
        augment_examples(train, cfg)


def test_eda_insertions_never_lose_track_of_positions():
    import random

    from tunewise.data.augment import eda

    table = {"card": ["plastic"], "money": ["cash"], "late": ["delayed"]}
    rng = random.Random(0)
    text = "my card is late and my money is late too"
    outs = {eda(text, lambda w: table.get(w, []), 0.5, rng) for _ in range(300)}
    assert len(outs) > 20 and all(len(o.split()) >= 2 for o in outs)
