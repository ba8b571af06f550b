"""`tunewise refine`: audited intake, versioned data with hashes, a gate that blocks regressions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import write_csv
from tests.tiny_run import trained_run
from tunewise.cli import main
from tunewise.core.files import sha256_file
from tunewise.data.load import Examples
from tunewise.feedback import intake
from tunewise.feedback.refine import gate, refine
from tunewise.feedback.store import OUT_OF_SCOPE, open_store

LABELS = ["card", "hello", "refund"]
WORDS = {
    "refund": "money back refund please",
    "card": "my card is lost stolen",
    "hello": "hello hi good morning",
}


def examples(rows, source="x.csv"):
    return Examples(
        [t for t, _ in rows], [lab for _, lab in rows], list(range(2, len(rows) + 2)), source
    )


def test_intake_keeps_new_consistent_rows_and_says_why_others_are_dropped():
    train = examples([("where is my refund", "refund"), ("lost card", "card")], "train.csv")
    test = examples([("hello there my friend", "hello")], "test.csv")
    feedback = [
        {"id": 1, "text": "I want my money back", "prediction": "refund", "verdict": "correct"},
        {
            "id": 2,
            "text": "card gone",
            "prediction": "hello",
            "verdict": "incorrect",
            "correction": "card",
        },
        {"id": 3, "text": "hmm", "prediction": "hello", "verdict": "incorrect"},
        {"id": 4, "text": "Hello there, my friend!", "prediction": "hello", "verdict": "correct"},
        {
            "id": 5,
            "text": "Where is my refund?",
            "prediction": "card",
            "verdict": "incorrect",
            "correction": "card",
        },
        {"id": 6, "text": "lost card", "prediction": "card", "verdict": "correct"},
        {
            "id": 7,
            "text": "new intent",
            "prediction": "card",
            "verdict": "incorrect",
            "correction": "loan",
        },
        {"id": 8, "text": "hi again", "prediction": "hello", "verdict": "correct"},
        {
            "id": 9,
            "text": "hi again",
            "prediction": "card",
            "verdict": "incorrect",
            "correction": "card",
        },
        {
            "id": 10,
            "text": "refund to jane.doe@example.com please",
            "prediction": "refund",
            "verdict": "correct",
        },
    ]

    class Cfg:
        class data:
            text_col, label_col = "text", "label"

        class eval:
            @staticmethod
            def oos_label():
                return "oos"

    rows, rejected = intake.collect(feedback, [], Cfg)
    assert [r.origin for r in rejected] == ["feedback:3"]
    kept, refused, findings = intake.audit_rows(rows, LABELS, train, test)
    assert [(r.text, r.label) for r in kept] == [
        ("I want my money back", "refund"),
        ("card gone", "card"),
        ("refund to [EMAIL] please", "refund"),
    ]
    why = {r.origin: r.code for r in refused}
    assert why == {
        "feedback:4": "leakage",  # near-duplicate of a frozen test row
        "feedback:5": "conflicting-labels",  # training says refund
        "feedback:6": "duplicate",
        "feedback:7": "conflicting-labels",  # a label the model does not know
        "feedback:8": "conflicting-labels",  # two labels for one text among new rows
        "feedback:9": "conflicting-labels",
    }
    codes = {f.code for f in findings}
    assert {"leakage", "conflicting-labels", "duplicate", "pii"} <= codes


def test_feedback_test_membership_is_stable_and_about_a_quarter():
    texts = [f"customer question number {i}" for i in range(2000)]
    share = sum(intake.held_out(t) for t in texts) / len(texts)
    assert 0.22 < share < 0.28
    assert [intake.held_out(t) for t in texts[:50]] == [
        intake.held_out(t.upper() + "  ") for t in texts[:50]
    ]


def scores(delta_acc, delta_f1=0.0):
    part = {
        "rows": 100,
        "current": {"accuracy": 0.9, "macro_f1": 0.9},
        "candidate": {"accuracy": 0.9 + delta_acc, "macro_f1": 0.9 + delta_f1},
        "delta": {"accuracy": delta_acc, "macro_f1": delta_f1},
        "ci95": {"accuracy": [delta_acc - 0.02, delta_acc + 0.02], "macro_f1": [-0.1, 0.1]},
        "significance": {"p_value": 0.3},
    }
    return part


def test_gate_blocks_only_falls_beyond_the_tolerance():
    assert gate({"test": scores(-0.005)}, 0.01)["promoted"]
    blocked = gate({"test": scores(0.02), "feedback": scores(-0.03)}, 0.01)
    assert not blocked["promoted"] and len(blocked["reasons"]) == 1
    assert blocked["reasons"][0].startswith("feedback accuracy fell -0.0300")
    assert not gate({"test": scores(0.0, -0.05)}, 0.01)["promoted"]
    assert gate({"test": scores(-0.05)}, 0.06)["promoted"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("refine")
    rows = [(f"{t} {i}", lab) for i in range(20) for lab, t in WORDS.items()]
    test = [(f"{t} number {i}", lab) for i in range(5) for lab, t in WORDS.items()]
    train = write_csv(tmp / "train.csv", rows)
    test = write_csv(tmp / "test.csv", test)
    return trained_run(tmp, tiny_model_dir, train, test, epochs=3, lr=1e-2, batch_size=16)


@pytest.fixture
def toy_run(base_run, tmp_path):
    """A fresh copy of the trained toy run: each test refines its own."""
    import shutil

    return Path(shutil.copytree(base_run, tmp_path / "run"))


def plant_feedback(run_dir: Path):
    store = open_store(None, run_dir)
    store.add(
        "k1",
        {
            "text": "please give my money back refund 101",
            "prediction": "refund",
            "verdict": "correct",
        },
    )
    store.add(
        "k2",
        {
            "text": "hello hi good morning 102",
            "prediction": "card",
            "verdict": "incorrect",
            "correction": "hello",
        },
    )
    store.add(
        "k3",
        {"text": "money back refund please number 1", "prediction": "refund", "verdict": "correct"},
    )
    store.add("k4", {"text": "my card is lost", "prediction": "card", "verdict": "incorrect"})
    store.close()


def test_refine_versions_the_data_retrains_and_promotes(toy_run, tmp_path):
    plant_feedback(toy_run)
    labelled = write_csv(
        tmp_path / "labelled.csv",
        [(f"{t} extra {i}", lab) for i in range(4) for lab, t in WORDS.items()]
        + [("unlabelled one", "")],
    )
    old_weights = sha256_file(toy_run / "model" / "model.safetensors")
    record = refine(toy_run, data=[str(labelled)], tolerance=0.5)
    assert record["decision"]["promoted"], record["decision"]
    assert record["intake"]["rejected"] == {"leakage": 1, "empty-or-garbage": 2}
    assert record["intake"]["added_to_train"] + record["intake"]["feedback_test"] == 14
    doc = json.loads((toy_run / "lineage.json").read_text())
    assert doc["current"] == 1 and [v["version"] for v in doc["versions"]] == [0, 1]
    for version in doc["versions"]:
        for item in version["data"].values():
            assert sha256_file(Path(item["path"])) == item["sha256"]
    v0, v1 = doc["versions"]
    assert v1["data"]["test"] == v0["data"]["test"]  # the frozen test set
    assert (
        v1["data"]["train"]["rows"]
        == v0["data"]["train"]["rows"] + record["intake"]["added_to_train"]
    )
    assert {"accuracy", "macro_f1"} <= v1["metrics"]["test"]["current"].keys()
    assert (
        v1["metrics"]["test"]["rows"] == 15 and "p_value" in v1["metrics"]["test"]["significance"]
    )
    served = sha256_file(toy_run / "model" / "model.safetensors")
    assert served == v1["model"]["sha256"] != old_weights
    assert sha256_file(Path(v0["model"]["path"]) / "model.safetensors") == old_weights


def relabel_test_with_current_predictions(run_dir: Path, tmp_path: Path) -> None:
    """Make the current model right on every frozen test row, so any change shows as a fall."""
    import csv

    from tunewise.config import dump_config, load_config
    from tunewise.feedback.refine import predict_ids

    cfg = load_config(run_dir / "config.yaml")
    with open(cfg.data.test, encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    labels = json.loads((run_dir / "model" / "config.json").read_text())["id2label"]
    pred = [labels[str(i)] for i in predict_ids(run_dir / "model", texts, cfg)]
    test = write_csv(tmp_path / "frozen_test.csv", list(zip(texts, pred, strict=True)))
    dump_config(
        load_config(run_dir / "config.yaml", [f"data.test={test}"]), run_dir / "config.yaml"
    )


def sabotaged(current_model: Path):
    """A stand-in for retraining: the current model with its head's rows rotated, so it predicts
    the next label wherever the current model predicts one (every prediction changes)."""

    def retrain(cfg, folder, files, labels):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(current_model)
        order = torch.roll(torch.arange(len(labels)), 1)
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[order])
            model.classifier.bias.copy_(model.classifier.bias[order])
        model.save_pretrained(folder / "candidate" / "model")
        AutoTokenizer.from_pretrained(current_model).save_pretrained(folder / "candidate" / "model")
        return folder / "candidate"

    return retrain


def test_refine_blocks_a_regression_with_exit_1_and_keeps_the_model(
    toy_run, tmp_path, capsys, monkeypatch
):
    from tunewise.feedback import refine as refine_module

    relabel_test_with_current_predictions(toy_run, tmp_path)
    monkeypatch.setattr(refine_module, "_retrain", sabotaged(toy_run / "model"))
    extra = write_csv(
        tmp_path / "extra.csv",
        [(f"{t} again {i}", lab) for i in range(3) for lab, t in WORDS.items()],
    )
    before = sha256_file(toy_run / "model" / "model.safetensors")
    assert main(["refine", str(toy_run), "--data", str(extra), "--tolerance", "0.05"]) == 1
    err = capsys.readouterr().err
    assert "test accuracy fell -1.0000" in err and "beyond tolerance 0.05" in err
    assert sha256_file(toy_run / "model" / "model.safetensors") == before
    doc = json.loads((toy_run / "lineage.json").read_text())
    assert doc["current"] == 0 and doc["versions"][1]["decision"]["promoted"] is False
    assert doc["versions"][1]["metrics"]["test"]["significance"]["p_value"] < 0.001


def test_refine_usage_errors_exit_2(toy_run, tmp_path, capsys):
    assert main(["refine", str(toy_run), "--data", str(tmp_path / "missing.csv")]) == 2
    assert main(["refine", str(toy_run)]) == 2  # no feedback store, no data
    assert main(["refine", str(tmp_path), "--tolerance", "2"]) == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "feedback" in err and "--tolerance" in err


def test_a_second_refinement_builds_on_the_promoted_version(toy_run, tmp_path):
    first = write_csv(
        tmp_path / "a.csv", [(f"{t} first {i}", lab) for i in range(3) for lab, t in WORDS.items()]
    )
    second = write_csv(
        tmp_path / "b.csv", [(f"{t} second {i}", lab) for i in range(3) for lab, t in WORDS.items()]
    )
    assert refine(toy_run, data=[str(first)], tolerance=0.99)["decision"]["promoted"]
    again = refine(toy_run, data=[str(first), str(second)], tolerance=0.99)
    assert again["parent"] == 1 and again["intake"]["added_to_train"] == 9
    assert again["intake"]["rejected"] == {"duplicate": 9}  # the first file is already in v1
    doc = json.loads((toy_run / "lineage.json").read_text())
    v1, v2 = doc["versions"][1:]
    assert doc["current"] == 2 and v2["data"]["train"]["rows"] == v1["data"]["train"]["rows"] + 9
    assert sha256_file(toy_run / "model" / "model.safetensors") == v2["model"]["sha256"]
    assert sha256_file(Path(v1["model"]["path"]) / "model.safetensors") == v1["model"]["sha256"]


def test_refine_learns_out_of_scope_feedback_as_examples_never_as_a_class(toy_run, tmp_path):
    store = open_store(None, toy_run)
    weather = "what is the weather in paris tomorrow"
    store.add("o1", {"text": weather, "prediction": "card", "verdict": "incorrect",
                     "correction": OUT_OF_SCOPE})  # fmt: skip
    pizza = "order me a pizza tonight"  # the model abstained and the tester agreed
    store.add("o2", {"text": pizza, "prediction": OUT_OF_SCOPE, "verdict": "correct"})
    store.close()
    labelled = write_csv(
        tmp_path / "labelled.csv",
        [(f"{t} more {i}", lab) for i in range(3) for lab, t in WORDS.items()],
    )
    record = refine(toy_run, data=[str(labelled)], tolerance=0.5)
    assert record["decision"]["promoted"], record["decision"]
    folder = toy_run / "versions" / "v1"
    added = list(csv.DictReader((folder / "added.csv").read_text().splitlines()))
    assert {r["text"] for r in added if r["label"] == "oos"} == {weather, pizza}
    held = list(csv.DictReader((folder / "feedback_test.csv").read_text().splitlines()))
    assert all(r["label"] != "oos" for r in held)
    labels = json.loads((toy_run / "model" / "config.json").read_text())["id2label"]
    assert "oos" not in labels.values() and len(labels) == len(WORDS)
    # the promoted model's detector, refitted with the two examples choosing its threshold
    assert (
        record["oos"]["threshold_from"] == "youden" and record["oos"]["rows"]["threshold_oos"] == 2
    )
    assert json.loads((toy_run / "oos.json").read_text())["threshold"] == record["oos"]["threshold"]
