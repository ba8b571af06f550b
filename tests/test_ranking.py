"""Preference pairs: the format, the batches, and `tunewise run` end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tunewise.cli import main
from tunewise.core.errors import InputError
from tunewise.tasks.ranking.pairs import EncodedPairs, collate_pairs, read_pairs

TOPICS = {
    "refund": "money back refund please",
    "card": "my card is lost stolen",
    "hello": "hello hi good morning",
}


def _pairs(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    rows = []
    for i in range(n):
        q, other = rng.choice(names, 2, replace=False)
        rows.append(
            {
                "query": f"{q} question {i}",
                "preferred": TOPICS[q],
                "rejected": TOPICS[other],
            }
        )
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_pairs_reports_every_bad_row_with_its_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,preferred,rejected\nq,a,b\nq,,b\nq,a,\n", encoding="utf-8")
    with pytest.raises(InputError) as exc:
        read_pairs(path)
    text = str(exc.value)
    assert f"{path}:3: preferred" in text and f"{path}:4: rejected" in text


def test_read_pairs_without_a_query_column_is_a_reward_model_file(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"chosen": "good", "other": "bad"}] * 2)
    pairs = read_pairs(path, ["query", "chosen", "other"])
    assert pairs.queries == ["", ""] and pairs.preferred == ["good", "good"]
    assert pairs.lines == [1, 2]


def test_collate_pairs_puts_preferred_first_and_labels_them():
    data = EncodedPairs([[1, 5], [1, 6, 7], [1, 8], [1, 9]], None, pad_id=0)
    batch = collate_pairs(data, [1, 0])
    assert batch["input_ids"].tolist() == [[1, 6, 7], [1, 5, 0], [1, 9, 0], [1, 8, 0]]
    assert batch["labels"].tolist() == [1, 1, 0, 0]
    assert data.lengths().tolist() == [2, 3]


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("ranking")
    config = {
        "task": "ranking",
        "name": "ranker",
        "output_dir": str(tmp / "runs"),
        "data": {
            "train": str(_write_jsonl(tmp / "train.jsonl", _pairs(96, 0))),
            "test": str(_write_jsonl(tmp / "test.jsonl", _pairs(30, 1))),
        },
        "model": {"name": str(tiny_model_dir), "max_length": 32},
        "adapt": {"method": "full"},
        "train": {
            "epochs": 8,
            "batch_size": 8,
            "lr": 1e-2,
            "precision": "fp32",
            "early_stopping": None,
            "log_every": 11,
        },
        "eval": {"bootstrap": 100},
    }
    path = tmp / "ranking.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["run", str(path)]) == 0
    return tmp / "runs" / "ranker"


def test_ranking_run_learns_to_prefer_the_preferred_text(ranking_run):
    metrics = json.loads((ranking_run / "metrics.json").read_text())
    assert metrics["task"] == "ranking" and metrics["test_size"] == 30
    assert metrics["tuned"]["pairwise_accuracy"] >= 0.7
    assert {"baseline", "delta", "ci95", "significance"} <= metrics.keys()
    assert metrics["loss"]["name"] == "pairwise_ranking"
    assert metrics["regularization"]["active"] == ["weight_decay", "dropout"]
    history = [json.loads(x) for x in (ranking_run / "history.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in history if r["split"] == "train"]
    assert train[-1] < 0.7 * train[0]  # it learned; log 2 is where it starts
    assert (ranking_run / "report.html").is_file()
    assert "pairwise accuracy" in (ranking_run / "model" / "README.md").read_text()


def test_ranking_model_loads_in_transformers_and_scores_pairs(ranking_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from tunewise.tasks.ranking.pairs import Pairs, encode_pairs, score_pairs

    folder = str(ranking_run / "model")
    query, good, bad = "refund question", TOPICS["refund"], TOPICS["hello"]
    scorer = pipeline("text-classification", model=folder)
    got = [
        scorer({"text": query, "text_pair": t}, function_to_apply="none")["score"]
        for t in (good, bad)
    ]
    pairs = Pairs([query], [good], [bad], [1], "inline")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    expected = score_pairs(model, encode_pairs(tokenizer, pairs, 32))
    assert got == pytest.approx([float(expected[0][0]), float(expected[1][0])], abs=1e-4)


def test_compare_runs_ranking_methods_on_the_same_pairs(tmp_path, tiny_model_dir):
    from tunewise.studies.compare import compare_methods

    config = {
        "task": "ranking",
        "name": "rk",
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "train": str(_write_jsonl(tmp_path / "train.jsonl", _pairs(40, 0))),
            "test": str(_write_jsonl(tmp_path / "test.jsonl", _pairs(12, 1))),
        },
        "model": {"name": str(tiny_model_dir), "max_length": 32},
        "train": {"max_steps": 2, "precision": "fp32"},
        "eval": {"bootstrap": 20},
    }
    doc = compare_methods(config, ["full", "bitfit"])
    assert doc["task"] == "ranking" and [r["method"] for r in doc["methods"]] == ["full", "bitfit"]
    assert all(r["test_size"] == 12 and r["macro_f1"] is None for r in doc["methods"])
    assert set(doc["baselines"]) == {"zero_shot"}
    assert (tmp_path / "runs" / "rk-compare" / "compare.html").is_file()


def test_a_pairwise_loss_without_the_ranking_task_is_refused_with_the_fix():
    from tunewise.config import load_config
    from tunewise.core.errors import InputError

    with pytest.raises(InputError, match="train.loss: pairwise_ranking.*set task: ranking"):
        load_config({"data": {"train": "t.jsonl"}, "train": {"loss": "pairwise_ranking"}})
    with pytest.raises(InputError, match="train.loss: a ranking run learns from pairs"):
        load_config({"task": "ranking", "data": {"train": "t.jsonl"}, "train": {"loss": "focal"}})
    cfg = load_config({"task": "ranking", "data": {"train": "t.jsonl"}})
    assert cfg.train.loss == "pairwise_ranking"
