"""`tunewise select`: most uncertain texts first, no near-duplicates, nothing already labelled."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.conftest import write_csv
from tests.tiny_run import trained_run
from tunewise.cli import main
from tunewise.data.dedup import jaccard, shingles
from tunewise.feedback.select import diverse_top, select, uncertainty


def test_uncertainty_orders_rows_by_doubt():
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1], [0.45, 0.45, 0.1]])
    ent = uncertainty(probs, "entropy")
    assert ent[0] == pytest.approx(0.0, abs=1e-6) and ent[1] == pytest.approx(1.0)
    assert ent[1] > ent[3] > ent[2] > ent[0]
    margin = uncertainty(probs, "margin")
    assert margin[3] == pytest.approx(1.0) and margin[0] == pytest.approx(0.0)
    assert margin[2] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        uncertainty(probs, "random")


def test_diverse_top_skips_near_duplicates_of_a_pick():
    texts = [
        "my card has not arrived yet",
        "My card has not arrived yet!",  # a near-duplicate of row 0, second most uncertain
        "how do I top up by bank transfer",
        "why was I charged a fee",
        "my card hasnt arrived yet",
    ]
    scores = np.array([0.9, 0.8, 0.5, 0.4, 0.7])
    picked, skipped = diverse_top(texts, scores, n=3, similarity=0.7)
    assert picked == [0, 2, 3] and skipped == 2
    picked_all, _ = diverse_top(texts, scores, n=3, similarity=1.0)  # only exact keys collide
    assert picked_all == [0, 4, 2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("select")
    words = {"refund": "money back refund", "card": "card lost stolen", "hello": "hello hi"}
    rows = [(f"{t} {i}", lab) for i in range(12) for lab, t in words.items()]
    train = write_csv(tmp / "train.csv", rows)
    test = write_csv(
        tmp / "test.csv", [(f"{t} test {i}", lab) for i in range(3) for lab, t in words.items()]
    )
    run = trained_run(tmp, tiny_model_dir, train, test, max_steps=6)
    sharpen(run / "model")
    return run


def sharpen(model_dir):
    """Scale the head so the tiny model's probabilities spread out (ties would make ranks moot)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tunewise.models.integrity import write_manifest

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 3.0)
    model.save_pretrained(model_dir)
    write_manifest(model_dir)  # weights changed on purpose: record them as the run's own


def model_uncertainty(run_dir, texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    with torch.no_grad():
        logits = model(
            **tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
        ).logits
    return uncertainty(torch.softmax(logits.double(), -1).numpy(), "entropy")


def test_select_writes_the_most_uncertain_distinct_unlabelled_texts(run_dir, tmp_path):
    distinct = [
        "where is my refund",
        "lost my card on the bus",
        "hi there",
        "good evening",
        "I want my money back now",
        "someone stole my wallet",
        "what is the exchange rate",
        "cancel my transfer",
        "top up failed",
        "my pin is blocked",
    ]
    pool_texts = distinct + ["money back refund 3", "card lost stolen test 1"]  # train, test rows
    pool_texts += [t + "!" for t in distinct[:4]]  # near-duplicates of pool rows
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t in pool_texts], header=("text",))
    out = select(run_dir, pool, n=5, out=tmp_path / "to_label.csv")
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert all(r["label"] == "" and r["predicted"] in {"refund", "card", "hello"} for r in rows)
    chosen = [r["text"] for r in rows]
    assert "money back refund 3" not in chosen and "card lost stolen test 1" not in chosen
    for i, a in enumerate(chosen):
        assert all(jaccard(shingles(a), shingles(b)) < 0.7 for b in chosen[i + 1 :])
    scores = [float(r["entropy"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    # the picks are the five most uncertain distinct texts by the model's own probabilities
    # (a text and its "!" twin are one group, which scores as its more uncertain member)
    plain = model_uncertainty(run_dir, distinct)
    bang = model_uncertainty(run_dir, [t + "!" for t in distinct[:4]])
    group = np.concatenate([np.maximum(plain[:4], bang), plain[4:]])
    best = {distinct[i] for i in np.argsort(-group)[:5]}
    assert {t.rstrip("!") for t in chosen} == best
    np.testing.assert_allclose(scores, np.sort(group)[::-1][:5], atol=1e-3)


def test_select_usage_errors_exit_2(run_dir, tmp_path, capsys):
    pool = write_csv(tmp_path / "pool.csv", [("hello",)], header=("query",))
    assert main(["select", str(run_dir), "--pool", str(pool), "--n", "0"]) == 2
    assert main(["select", str(run_dir), "--pool", str(pool), "--n", "3"]) == 2
    err = capsys.readouterr().err
    assert "--n" in err and "text" in err
