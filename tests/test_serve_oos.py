"""Serving "I don't know": /predict abstains above the run's out-of-scope threshold (oos.json, or
--oos-threshold), Prometheus counts it, and /feedback takes `out_of_scope` as a correction."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import yaml

from tests.serve_helpers import LABELS, classifier_run
from tunewise.data.encode import encode
from tunewise.evaluation import oos
from tunewise.feedback.store import OUT_OF_SCOPE, open_store
from tunewise.models.features import logits_and_features
from tunewise.serving.server import background, build_app

KNOWN = ["my card is lost", "where is my refund", "my card has not arrived"]
UNKNOWN = "what is the weather in paris tomorrow"


def features_of(predictor, texts: list[str]) -> oos.Outputs:
    data = encode(predictor.tokenizer, texts, None, predictor.max_length)
    return oos.Outputs(*logits_and_features(predictor.model, data, 8, bf16=predictor.bf16))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny classifier run with a kNN detector (k=1) whose bank is KNOWN: those texts score
    0, UNKNOWN more, and the threshold sits halfway (the tiny random model's vectors are close
    together, so the scale is small; fp32, as bf16 would round it away)."""
    from tunewise.serving.predictor import load_predictor

    root = classifier_run(tmp_path_factory.mktemp("serve-oos"), precision="fp32")
    predictor = load_predictor(root)
    scorer = oos.KNNScorer(k=1).fit(features_of(predictor, KNOWN).features)
    half = float(scorer.score(features_of(predictor, [UNKNOWN]).features)[0]) / 2
    det = oos.Detector("knn", threshold=half, k=1, scorer=scorer)
    oos.save_detector(det, root, label="oos")
    return root


@pytest.fixture(scope="module")
def server(run_dir):
    with background(build_app(run_dir)) as url:
        yield url


def test_predict_abstains_above_the_threshold(server, run_dir):
    known = requests.post(f"{server}/predict", json={"text": KNOWN[0]}).json()
    assert known["abstained"] is False and known["label"] in LABELS
    threshold = oos.load_detector(run_dir)[0].threshold
    assert known["oos_score"] < threshold / 10 and known["oos_threshold"] == threshold
    unknown = requests.post(f"{server}/predict", json={"text": UNKNOWN}).json()
    assert unknown["abstained"] is True and unknown["label"] is None
    assert unknown["oos_score"] == pytest.approx(2 * threshold, rel=0.05)
    assert unknown["top_k"] and unknown["score"] == unknown["top_k"][0]["score"]
    metrics = requests.get(f"{server}/metrics").text
    assert "tunewise_abstentions_total 1.0" in metrics


def test_serve_scores_the_vectors_evaluate_scores(run_dir):
    """The served oos_score is the detector's score of the same head inputs evaluate reads."""
    from tunewise.serving.predictor import load_predictor

    predictor = load_predictor(run_dir)
    det, _ = oos.load_detector(run_dir)
    texts = [UNKNOWN, KNOWN[1], "hello there"]
    expected = det.of(features_of(predictor, texts))
    served = [p["oos_score"] for p in predictor.predict(texts)]
    assert np.allclose(served, expected, rtol=0.02, atol=1e-9)


def test_the_threshold_option_overrides_the_run(run_dir, tmp_path):
    from tunewise.serving.predictor import load_predictor

    never = load_predictor(run_dir, oos_threshold=math.inf).predict([UNKNOWN])[0]
    assert never["abstained"] is False and never["label"] in LABELS
    bare = classifier_run(tmp_path / "bare")  # no oos.json: a threshold applies to msp
    assert "abstained" not in load_predictor(bare).predict([UNKNOWN])[0]
    always = load_predictor(bare, oos_threshold=0.0).predict([UNKNOWN])[0]
    msp = 1 - always["score"]
    assert always["abstained"] is True and always["oos_score"] == pytest.approx(msp, abs=1e-6)


def test_feedback_takes_out_of_scope_and_remembers_abstentions(server, run_dir):
    pred = requests.post(f"{server}/predict", json={"text": UNKNOWN}).json()
    confirm = {"request_id": pred["request_id"], "verdict": "correct"}
    r = requests.post(f"{server}/feedback", json=confirm, headers={"Idempotency-Key": "oos-1"})
    assert r.status_code == 201
    answered = requests.post(f"{server}/predict", json={"text": KNOWN[2]}).json()
    mark = {
        "request_id": answered["request_id"],
        "verdict": "incorrect",
        "correction": OUT_OF_SCOPE,
    }
    r = requests.post(f"{server}/feedback", json=mark, headers={"Idempotency-Key": "oos-2"})
    assert r.status_code == 201
    bad = {**mark, "correction": "none_of_these"}
    r = requests.post(f"{server}/feedback", json=bad, headers={"Idempotency-Key": "oos-3"})
    assert r.status_code == 422 and OUT_OF_SCOPE in r.json()["detail"]
    rows = {r["request_id"]: r for r in open_store(None, run_dir).rows()}
    assert rows[pred["request_id"]]["prediction"] == OUT_OF_SCOPE  # the model said "not sure"
    assert rows[answered["request_id"]]["correction"] == OUT_OF_SCOPE


def exported(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run, its config naming training data as a real run's does, exported."""
    from tunewise.serving.export import export

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**cfg, "data": {"train": "train.csv"}}))
    export(copy)
    return copy


def test_the_onnx_backend_abstains_as_pytorch_does(run_dir, tmp_path):
    """The export carries the head's input vector as a second output, so `--backend onnx`
    scores the same kNN distances and abstains on the same texts; export.json records it."""
    from tunewise.serving.predictor import load_predictor

    copy = exported(run_dir, tmp_path)
    check = json.loads((copy / "onnx" / "export.json").read_text())["checks"]["model.onnx"]
    assert check["abstention_agreement"] == 1.0
    texts = [UNKNOWN, *KNOWN]
    torch_side = load_predictor(copy).predict(texts)
    onnx_side = load_predictor(copy, "onnx").predict(texts)
    assert [p["abstained"] for p in onnx_side] == [True, False, False, False]
    assert [p["abstained"] for p in torch_side] == [True, False, False, False]
    assert onnx_side[0]["label"] is None and onnx_side[1]["label"] in LABELS
    scores = [[p["oos_score"] for p in side] for side in (onnx_side, torch_side)]
    assert np.allclose(*scores, rtol=0.05, atol=1e-7)


def test_an_export_without_the_vectors_is_refused_with_the_fix(run_dir, tmp_path):
    """An export of logits only (as tunewise wrote before) cannot feed a kNN detector: serving
    it would answer every text, so loading names the file and the command that re-exports."""
    from transformers import AutoModelForSequenceClassification

    from tunewise.core.errors import InputError
    from tunewise.serving.onnx_backend import OnnxPredictor

    copy = exported(run_dir, tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(copy / "model").eval()
    ids = torch.ones(1, 4, dtype=torch.long)
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["logits"]}
    torch.onnx.export(model, (ids, ids), str(copy / "onnx" / "model.onnx"), dynamo=False, **names)
    with pytest.raises(InputError, match="no head-input output.*tunewise export"):
        OnnxPredictor(copy)
