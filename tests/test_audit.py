"""Data audit: each finding is planted once (it must fire) and absent from clean data (quiet)."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from tests.conftest import write_csv
from tunewise.cli import main
from tunewise.config import AuditConfig, load_config
from tunewise.core.findings import Finding
from tunewise.data.audit import audit_examples
from tunewise.data.dedup import DuplicateIndex, clusters
from tunewise.data.load import Examples
from tunewise.data.quality import LanguageProfile, garbage_reason

VOCAB = str.split(
    """apple river stone cloud pencil garden window rocket violin copper meadow lantern
harbor puzzle marble falcon canyon velvet orchard glacier thunder saddle compass biscuit
lemon tunnel feather island ladder mirror blanket candle forest dragon pepper silver
anchor basket bottle bridge camera carpet castle cactus circus cotton crayon desert diamond
engine fabric fossil galaxy hammer helmet jacket jungle kettle kitten laptop magnet mango
needle ocean parrot peanut pillow planet pocket quartz rabbit ribbon saucer shadow spider
teapot ticket tomato trumpet turtle wallet walnut wizard yogurt zipper"""
)
CLASSES = {"refund": "refund", "card": "card", "greeting": "hello"}


def clean_examples(per_class: int = 12, seed: int = 0, source: str = "train.csv") -> Examples:
    """Distinct random sentences; each class has its own keyword, so labels are learnable."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, word in CLASSES.items():
        for _ in range(per_class):
            filler = rng.choice(VOCAB, size=6, replace=False)
            texts.append(f"{word} {' '.join(filler)}")
            labels.append(label)
    return Examples(texts, labels, list(range(2, len(texts) + 2)), source)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A fast stand-in for sentence embeddings: the class keyword dominates."""
    keys = list(CLASSES.values())
    X = np.array([[3.0 * (k in t.split()) for k in keys] for t in texts])
    return X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-9)


def codes(findings) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def run(train, test=None, tokenizer=None, **cfg):
    findings, _ = audit_examples(
        train, test, AuditConfig(**cfg), tokenizer, 32, embedder=bag_of_words
    )
    return codes(findings)


def with_rows(ex: Examples, rows: list[tuple[str, str]]) -> Examples:
    texts = ex.texts + [t for t, _ in rows]
    labels = ex.labels + [y for _, y in rows]
    return Examples(texts, labels, list(range(2, len(texts) + 2)), ex.source)


@pytest.fixture(scope="module")
def tokenizer():
    from tunewise.models.load import load_tokenizer

    return load_tokenizer("minilm-l6")


def test_clean_data_is_quiet(tokenizer):
    found = run(clean_examples(), clean_examples(4, seed=1, source="test.csv"), tokenizer)
    assert found == {}


def test_exact_duplicates_are_found_with_their_lines():
    ex = clean_examples()
    found = run(with_rows(ex, [(ex.texts[0], ex.labels[0]), (ex.texts[5], ex.labels[5])]))
    (dup,) = found["duplicate"]
    assert dup.severity == "warning" and dup.evidence["count"] == 2
    assert [r["line"] for r in dup.evidence["groups"][0]] == [2, len(ex) + 2]


def test_near_duplicates_fold_case_and_punctuation():
    ex = clean_examples()
    near = ex.texts[3].upper().replace(" ", ", ", 1) + "!"
    found = run(with_rows(ex, [(near, ex.labels[3])]))
    assert "near-duplicate" in found and "duplicate" not in found
    assert found["near-duplicate"][0].evidence["count"] == 2


def test_near_duplicate_threshold_is_configurable():
    a = "where is the card i ordered last week from your shop"
    b = "where is the card i ordered last month from your shop"
    pairs = DuplicateIndex(threshold=0.7).fit([a, b, "hello there"]).near_pairs()
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert DuplicateIndex(threshold=0.95).fit([a, b]).near_pairs() == []
    assert clusters([(0, 1, 0.9), (1, 4, 0.9)], 5) == [[0, 1, 4]]


def test_exact_leakage_is_an_error_and_near_leakage_a_warning():
    train, test = clean_examples(), clean_examples(4, seed=1, source="test.csv")
    test = with_rows(test, [(train.texts[0], train.labels[0])])
    test = with_rows(test, [(train.texts[7] + " x", train.labels[7])])
    leaks = {f.evidence["kind"]: f for f in run(train, test)["leakage"]}
    assert leaks["exact"].severity == "error" and leaks["exact"].evidence["count"] == 1
    assert leaks["near"].severity == "warning"
    assert leaks["exact"].evidence["examples"][0]["train_line"] == 2


def test_rare_leakage_under_the_error_share_is_a_warning():
    train, test = clean_examples(), clean_examples(4, seed=1, source="test.csv")
    test = with_rows(test, [(train.texts[0], train.labels[0])])
    (leak,) = run(train, test, error_share=0.2)["leakage"]
    assert leak.severity == "warning"


def test_conflicting_labels_same_and_near_text():
    ex = clean_examples()
    found = run(with_rows(ex, [(ex.texts[0], "card"), (ex.texts[20] + "s", "refund")]))
    (conflict,) = found["conflicting-labels"]
    assert conflict.severity == "error"
    assert conflict.evidence["exact_groups"] == 1 and conflict.evidence["near_pairs"] == 1


def test_label_noise_candidates_are_the_flipped_rows():
    ex = clean_examples(per_class=20)
    ex.labels[0], ex.labels[25] = "card", "greeting"
    (noise,) = run(ex)["label-noise"]
    flagged = {int(x.split(":")[1]) for x in noise.evidence["lines"]}
    assert {2, 27} <= flagged and len(flagged) <= 4
    assert noise.evidence["examples"][0]["suggested"] in ("refund", "card")


def test_label_noise_never_forks_a_process_pool(monkeypatch):
    """cleanlab forks a Pool per physical core by default; forking beside torch's threads once
    deadlocked CI for 90 minutes. On any machine the audit must score in this process."""
    import multiprocessing

    import psutil

    def refuse(*args, **kwargs):
        raise AssertionError("the label-noise audit started a process pool")

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)  # a many-core machine
    monkeypatch.setattr(multiprocessing, "Pool", refuse)
    ex = clean_examples(per_class=20)
    ex.labels[0] = "card"
    assert run(ex)["label-noise"]


def test_class_imbalance_ratio_and_small_classes():
    ex = clean_examples()
    small = Examples(ex.texts[:26], ex.labels[:26], ex.lines[:26], ex.source)  # greeting: 2
    (imb,) = run(small)["class-imbalance"]
    assert imb.evidence["small_classes"] == {"greeting": 2} and imb.evidence["ratio"] == 6.0
    assert "class-imbalance" not in run(ex)


def test_length_outliers_and_truncation(tokenizer):
    ex = clean_examples()
    long = "card " + " ".join(VOCAB[:60])
    found = run(with_rows(ex, [(long, "card")]), tokenizer=tokenizer)
    assert found["length-outlier"][0].evidence["examples"][0]["line"] == len(ex) + 2
    (cut,) = found["truncation"]
    assert cut.evidence["count"] == 1 and cut.severity == "warning"


def test_empty_garbage_mojibake_and_wrong_language():
    ex = clean_examples()
    bad = [
        ("!!! ???", "card"),
        ("12345 678", "card"),
        ("<br/><p></p>", "card"),
        ("cafÃ© rÃ©sumÃ© refund", "refund"),
        ("Где моя карта и мои деньги", "card"),
        ("Ich habe meine Karte nicht und warum ist das so", "card"),
    ]
    english = with_rows(Examples([], [], [], "t"), [("the card is not here and my money", "card")])
    found = run(with_rows(ex, bad + [(t, "card") for t in english.texts * 3]))
    (garbage,) = found["empty-or-garbage"]
    assert garbage.evidence["count"] == len(bad)
    reasons = " ".join(r["reason"] for r in garbage.evidence["examples"])
    assert "no letters" in reasons and "mojibake" in reasons and "cyrillic" in reasons
    assert "'de'" in reasons


def test_language_profile_learns_the_data_sets_language():
    profile = LanguageProfile().fit(["où est ma carte et pourquoi", "je ne vois pas mon argent"])
    assert profile.language_ == "fr"
    assert garbage_reason("where is my card and why is it late", profile) is not None
    assert garbage_reason("je voudrais mon argent", profile) is None


def test_pii_counts_per_type():
    ex = clean_examples()
    found = run(
        with_rows(
            ex,
            [
                ("card mail me at jo.smith@example.org", "card"),
                ("refund call +44 20 7946 0958 today", "refund"),
            ],
        )
    )
    (pii,) = found["pii"]
    assert pii.evidence["per_type"] == {"EMAIL": 1, "PHONE": 1}


# --- the command -----------------------------------------------------------------------------


def _files(tmp_path, leak: bool = False):
    train = clean_examples()
    test = clean_examples(4, seed=1)
    rows = list(zip(train.texts, train.labels, strict=True))
    test_rows = list(zip(test.texts, test.labels, strict=True)) + (rows[:2] if leak else [])
    return write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", test_rows)


def _no_noise_config(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("audit:\n  label_noise: false\n")
    return path


def test_audit_command_writes_json_and_html_and_exits_0(tmp_path, capsys):
    train, test = _files(tmp_path)
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            str(train),
            "--test",
            str(test),
            "--out",
            str(out),
            "--config",
            str(_no_noise_config(tmp_path)),
        ]
    )
    assert code == 0
    assert json.loads((out / "audit.json").read_text()) == []
    page = (out / "audit.html").read_text()
    assert "No findings" in page and "<strong>Ready to train.</strong>" in page
    charts = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', page)
    assert charts == ["rows per class", "text length histogram"]
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_audit_command_exits_1_on_error_findings(tmp_path, capsys):
    train, test = _files(tmp_path, leak=True)
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            str(train),
            "--test",
            str(test),
            "--out",
            str(out),
            "--config",
            str(_no_noise_config(tmp_path)),
        ]
    )
    assert code == 1
    findings = json.loads((out / "audit.json").read_text())
    assert findings[0]["code"] == "leakage" and findings[0]["severity"] == "error"
    assert set(findings[0]) == {"code", "severity", "message", "remedy", "evidence"}
    page = (out / "audit.html").read_text()
    assert "leakage" in page and "<strong>Not ready to train.</strong>" in page
    assert page.index('id="ready"') < page.index('id="charts"') < page.index('id="findings"')
    assert "leakage" in capsys.readouterr().err


def test_audit_command_exits_2_on_unreadable_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,a\n,b\n")
    code = main(["audit", str(bad), "--label-col", "lable", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:1: lable: column 'lable' not found" in err
    assert "did you mean 'label'" in err and not (tmp_path / "o").exists()
    assert main(["audit", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:3: text: text is empty" in capsys.readouterr().err


def test_audit_on_another_schema_suggests_the_flags_with_the_right_columns(tmp_path, capsys):
    data = tmp_path / "mine.csv"
    data.write_text("utterance,intent\nmy card is lost,card\nwhere is my refund,refund\n")
    assert main(["audit", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'utterance'? pass --text-col utterance" in err
    assert "did you mean 'intent'? pass --label-col intent" in err
    assert "data.text_col" not in err and "--text-col intent" not in err


def test_run_stops_on_audit_errors_before_training(tmp_path, tiny_model_dir, capsys):
    train, test = _files(tmp_path, leak=True)
    args = [
        "run",
        "configs/banking77.yaml",
        f"data.train={train}",
        f"data.test={test}",
        "data.label_col=label",
        f"model.name={tiny_model_dir}",
        "audit.label_noise=false",
        f"output_dir={tmp_path / 'runs'}",
        "name=r",
    ]
    assert main(args) == 1
    run_dir = tmp_path / "runs" / "r"
    assert json.loads((run_dir / "audit.json").read_text())[0]["code"] == "leakage"
    assert (run_dir / "audit.html").is_file() and not (run_dir / "model").exists()
    assert "audit.fail_on=never" in capsys.readouterr().err


def test_audit_config_is_checked():
    with pytest.raises(Exception, match="audit.fail_on: 'nevr' is not a valid choice"):
        load_config({"data": {"train": "x"}, "audit": {"fail_on": "nevr"}})


def test_the_audit_page_profiles_classes_and_lengths_and_says_if_ready(tmp_path, tokenizer):
    from tunewise.report.audit_html import write_audit_html

    train, test = clean_examples(), clean_examples(4, seed=1, source="test.csv")
    findings, summary = audit_examples(train, test, AuditConfig(label_noise=False), tokenizer, 32)
    profile = summary["profile"]
    assert profile["unit"] == "tokens" and profile["max_length"] == 32
    assert [s["name"] for s in profile["splits"]] == ["train", "test"]
    assert profile["splits"][0]["labels"] == dict(Counter(train.labels))
    assert len(profile["splits"][1]["lengths"]) == len(test)
    warning = Finding("class-imbalance", "warning", "one class is tiny", "collect more")
    page = write_audit_html(tmp_path / "a.html", [*findings, warning], summary).read_text()
    assert "<strong>Ready to train, with care.</strong>" in page and "1 warning worth" in page
    assert f"{len(train) + len(test):,} rows, {len(set(train.labels))} classes" in page
    rows = page.split("rows per class (")[1].split("</table>")[0]
    assert rows.count("<tr>") == len(set(train.labels)) + 1  # header + one per class
    _, words = audit_examples(train, None, AuditConfig(label_noise=False))  # no tokenizer
    assert words["profile"]["unit"] == "words" and words["profile"]["max_length"] is None
