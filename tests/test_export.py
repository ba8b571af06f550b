"""`tunewise export`: the ONNX graph gives PyTorch's labels and probabilities; int8 stays close."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.tiny_run import trained_run
from tunewise.cli import main
from tunewise.core.errors import InputError
from tunewise.serving.export import export
from tunewise.serving.onnx_backend import OnnxPredictor

TEXTS = [
    "money back refund please",
    "my card is lost stolen and I need a new one before the weekend",
    "hello",
    "good morning, can I get my money back for the card?",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    from tests.conftest import write_csv

    tmp = tmp_path_factory.mktemp("export")
    words = {"refund": "money back refund", "card": "card lost stolen", "hello": "hello hi"}
    rows = [(f"{t} {i}", lab) for i in range(12) for lab, t in words.items()]
    train = write_csv(tmp / "train.csv", rows)
    test = write_csv(tmp / "test.csv", rows[:9])
    return trained_run(tmp, tiny_model_dir, train, test, max_steps=4)


def torch_probabilities(run_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    batch = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return torch.softmax(logits.double(), -1).numpy(), labels


def test_fp32_export_matches_pytorch(run_dir):
    export(run_dir)
    predictor = OnnxPredictor(run_dir)
    expected, labels = torch_probabilities(run_dir, TEXTS)
    assert predictor.labels == labels and predictor.variant == "model.onnx"
    got = predictor.predict(TEXTS, top_k=2)
    assert [g["label"] for g in got] == [labels[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(predictor.probabilities(TEXTS), expected, atol=1e-4)
    for row, probs in zip(got, expected, strict=True):
        assert len(row["top_k"]) == 2 and row["top_k"][0]["label"] == row["label"]
        assert row["top_k"][0]["score"] >= row["top_k"][1]["score"]
        assert row["score"] == pytest.approx(probs.max(), abs=1e-4)
    one = predictor.predict([TEXTS[1]], top_k=1)[0]  # batch of 1, other length: dynamic axes
    assert one["score"] == pytest.approx(expected[1].max(), abs=1e-4)


def test_int8_export_is_recorded_and_served_by_default(run_dir):
    assert main(["export", str(run_dir), "--format", "onnx", "--quantize", "int8"]) == 0
    record = json.loads((run_dir / "onnx" / "export.json").read_text())
    assert record["serve"] == "model.int8.onnx"
    assert set(record["files"]) == {"model.onnx", "model.int8.onnx"}
    assert record["checks"]["model.onnx"]["max_abs_prob_diff"] <= 1e-4
    predictor = OnnxPredictor(run_dir)
    assert predictor.variant == "model.int8.onnx"
    expected, _ = torch_probabilities(run_dir, TEXTS)
    # int8 dynamic quantisation: documented tolerance 0.05 per probability on this tiny model
    assert np.abs(predictor.probabilities(TEXTS) - expected).max() < 0.05
    size = {n: (run_dir / "onnx" / n).stat().st_size for n in record["files"]}
    assert size["model.int8.onnx"] < size["model.onnx"]


def test_a_stale_export_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    export(copy)
    with open(copy / "model" / "model.safetensors", "ab") as f:
        f.write(b" ")  # the weights changed after the export (e.g. a promoted refinement)
    with pytest.raises(InputError, match="older weights"):
        OnnxPredictor(copy)


def test_bad_requests_exit_2_before_loading(tmp_path, run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "tflite"]) == 2
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "model.safetensors" in err


def test_serve_backends_agree(run_dir):
    from tunewise.serving.predictor import load_predictor

    export(run_dir)
    torch_side = load_predictor(run_dir, "torch").predict(TEXTS, top_k=3)
    onnx_side = load_predictor(run_dir, "onnx").predict(TEXTS, top_k=3)
    for a, b in zip(torch_side, onnx_side, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-4)
        scores = {x["label"]: x["score"] for x in b["top_k"]}
        assert all(scores[x["label"]] == pytest.approx(x["score"], abs=1e-4) for x in a["top_k"])
