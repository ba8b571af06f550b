"""Slices: per-slice metrics equal metrics on the subset; worst slice; metadata columns read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.conftest import write_csv
from tunewise.data.load import read_examples
from tunewise.evaluation.slices import length_buckets, slice_report, subset_scores


def test_subset_scores_match_sklearn_on_the_subset():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 9, 300)
    pred = y.copy()
    pred[::7] = (y[::7] + 1) % 9  # some errors, into a neighbouring class
    rows = y >= 6  # a subset holding only the top classes, and a few wrong predictions
    scores = subset_scores(y[rows], pred[rows])
    assert scores["accuracy"] == pytest.approx(accuracy_score(y[rows], pred[rows]))
    assert scores["macro_f1"] == pytest.approx(f1_score(y[rows], pred[rows], average="macro"))


def test_groups_equal_metrics_on_their_rows_and_the_worst_is_named():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 400)
    pred = y.copy()
    channel = np.array(["web", "app", "phone", "fax"])[np.arange(400) % 4]
    channel[:3] = "email"  # 3 rows: too small to rank
    hurt = (channel == "phone") & (np.arange(400) % 3 == 0)
    pred[hurt] = (y[hurt] + 1) % 5
    doc = slice_report(y, pred, {"channel": list(channel)}, min_size=20)
    groups = {g["value"]: g for g in doc["groups"]}
    assert set(groups) == {"app", "fax", "phone", "web"}
    for value, g in groups.items():
        rows = channel == value
        assert g["size"] == rows.sum()
        assert g["accuracy"] == pytest.approx(accuracy_score(y[rows], pred[rows]))
        assert g["macro_f1"] == pytest.approx(f1_score(y[rows], pred[rows], average="macro"))
    worst = doc["worst"]
    assert (worst["slice"], worst["value"]) == ("channel", "phone")
    assert worst["gap"] == pytest.approx(doc["overall"]["accuracy"] - groups["phone"]["accuracy"])
    assert doc["skipped"] == [
        {"slice": "channel", "value": "email", "size": 3, "reason": "fewer than 20 rows"}
    ]
    assert doc["by"] == ["channel"] and doc["overall"]["size"] == 400
    json.dumps(doc)  # plain types only: it goes into metrics.json


def test_no_rankable_group_means_no_worst():
    doc = slice_report(np.zeros(5, int), np.zeros(5, int), {"length": ["≤3 tokens"] * 5})
    assert doc["groups"] == [] and doc["worst"] is None and len(doc["skipped"]) == 1


def test_length_buckets_cut_at_quartiles_and_read_in_order():
    lengths = np.arange(1, 101)  # 1..100 tokens
    labels = length_buckets(lengths)
    assert labels[0] == "≤25 tokens" and labels[-1] == "≥76 tokens"
    assert labels[25] == "26–50 tokens" and labels[74] == "51–75 tokens"
    doc = slice_report(np.zeros(100, int), np.zeros(100, int), {"length": labels})
    order = [g["value"] for g in doc["groups"]]
    assert order == ["≤25 tokens", "26–50 tokens", "51–75 tokens", "≥76 tokens"]
    assert length_buckets([7] * 30) == ["all lengths"] * 30
    assert set(length_buckets([5] * 30 + [9] * 10)) == {"≤5 tokens", "≥6 tokens"}


def test_read_examples_keeps_metadata_columns(tmp_path):
    rows = [("hi", "a", "web", "x"), ("yo", "b", "", "y"), ("hey", "a", "app", "z")]
    path = write_csv(tmp_path / "t.csv", rows, header=("text", "label", "channel", "other"))
    ex, problems = read_examples(path, "text", "label", keep=["channel", "absent"])
    assert not problems and ex.meta == {"channel": ["web", "", "app"]}
    assert ex.subset([2, 0]).meta == {"channel": ["app", "web"]}
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "hi", "label": "a", "channel": 3}\n{"text": "yo", "label": "b"}\n')
    ex, _ = read_examples(jsonl, "text", "label", keep=["channel"])
    assert ex.meta == {"channel": ["3", ""]}
    plain, _ = read_examples(path, "text", "label")
    assert plain.meta == {}


def test_evaluate_glue_slices_by_length_and_named_columns():
    from tunewise.config import EvalConfig
    from tunewise.data.load import Examples
    from tunewise.evaluation.analyses import Scored, slices
    from tunewise.evaluation.predict import TopPredictions

    n = 40
    channel = ["web"] * 20 + [""] * 20
    ex = Examples([f"t{i}" for i in range(n)], ["a"] * n, list(range(2, n + 2)), "t.csv")
    ex.meta = {"channel": channel}
    y = np.zeros(n, int)
    pred = np.zeros(n, int)
    pred[:5] = 1  # 5 wrong, all on web
    top = TopPredictions(pred, np.ones(n), None, np.arange(n) % 8 + 2)
    scored = Scored(ex, y, top, ["a", "b"], np.arange(n) % 8)
    doc = slices(EvalConfig(slice_cols=["channel", "nope"], min_slice_size=10), scored)
    assert doc["by"] == ["length", "channel"]
    assert "column 'nope' is not in t.csv" in doc["notes"][0]
    channel_groups = {g["value"]: g for g in doc["groups"] if g["slice"] == "channel"}
    assert set(channel_groups) == {"web", "(missing)"}
    assert doc["worst"]["value"] == "web" and doc["worst"]["accuracy"] == 0.75
