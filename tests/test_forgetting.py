"""Forgetting: base vs tuned linear probes on general tasks, with fake embedders on tiny data."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from tests.conftest import write_csv
from tunewise.evaluation.forgetting import forgetting_report, load_task

WORDS = {
    "DESC": "how why explain",
    "HUM": "who person whom",
    "LOC": "where city country",
    "NUM": "many much when",
}


def bag_of_words(texts) -> np.ndarray:
    """A fixed, informative encoder: hashed word counts, L2-normalised."""
    out = np.zeros((len(texts), 64))
    for r, text in enumerate(texts):
        for word in text.lower().split():
            out[r, zlib.crc32(word.encode()) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def noise(texts) -> np.ndarray:
    """An encoder that forgot everything: a random vector per text."""
    rng = np.random.default_rng([zlib.crc32(t.encode()) for t in texts])
    return rng.normal(size=(len(texts), 64))


@pytest.fixture
def data_root(tmp_path):
    """A TREC-shaped folder (latin-1, `COARSE:fine question`) and no SST-2 at all."""
    (tmp_path / "trec").mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train.txt", 240), ("test.txt", 120)):
        lines = []
        for i in range(n):
            label = list(WORDS)[i % 4]
            word = rng.choice(WORDS[label].split())
            fine = rng.choice(["desc", "other"])
            lines.append(f"{label}:{fine} {word.capitalize()} caf\xe9 item {rng.integers(1000)} ?")
        (tmp_path / "trec" / name).write_bytes("\n".join(lines).encode("latin-1"))
    return tmp_path


def test_trec_reads_coarse_labels_and_caps_rows(data_root):
    task = load_task("trec", data_root, max_train=100, max_test=40, seed=0)
    assert task.classes == 4 and len(task.train_texts) == 100 and len(task.test_texts) == 40
    assert "café" in task.train_texts[0] and not task.train_texts[0].startswith("DESC")


def test_identical_encoders_give_zero_delta_and_zero_ci(data_root):
    doc = forgetting_report(["trec"], bag_of_words, bag_of_words, data_root, n_boot=200)
    (task,) = doc["tasks"]
    assert task["base_accuracy"] == task["tuned_accuracy"] > 0.9
    assert task["delta"] == 0.0 and task["ci95"] == [0.0, 0.0] and doc["mean_delta"] == 0.0
    json.dumps(doc)


def test_a_forgetful_encoder_shows_a_negative_delta_inside_its_ci(data_root):
    doc = forgetting_report(["trec"], bag_of_words, noise, data_root, n_boot=500, seed=3)
    (task,) = doc["tasks"]
    lo, hi = task["ci95"]
    assert task["delta"] < -0.3 and lo <= task["delta"] <= hi < 0
    assert task["train_size"] == 240 and task["test_size"] == 120


def test_missing_data_is_skipped_with_a_note_not_a_crash(data_root, tmp_path):
    doc = forgetting_report(
        ["sst2", "trec", str(tmp_path / "nope.csv")], bag_of_words, bag_of_words, data_root
    )
    assert [t["name"] for t in doc["tasks"]] == ["trec"]
    reasons = {s["name"]: s["reason"] for s in doc["skipped"]}
    assert "data not found" in reasons["sst2"] and "stsa.binary.train" in reasons["sst2"]
    assert "nope.csv" in reasons[str(tmp_path / "nope.csv")]
    empty = forgetting_report(["sst2"], bag_of_words, bag_of_words, tmp_path / "none")
    assert empty["tasks"] == [] and empty["mean_delta"] is None


def test_a_user_file_is_split_and_probed(tmp_path):
    rows = [
        (f"{WORDS[label].split()[i % 3]} thing {i}", label) for i in range(80) for label in WORDS
    ]
    path = write_csv(tmp_path / "general.csv", rows)
    doc = forgetting_report([str(path)], bag_of_words, bag_of_words, tmp_path, n_boot=0)
    (task,) = doc["tasks"]
    assert task["name"] == "general" and task["ci95"] is None
    assert task["train_size"] + task["test_size"] == 320 and task["test_size"] == 80
