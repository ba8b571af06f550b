"""Streamed metrics and compact predictions equal those computed from every row's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert
from tunewise.data.encode import Encoded, encode
from tunewise.evaluation.metrics import classification_metrics
from tunewise.evaluation.predict import predict_logits, predict_top
from tunewise.evaluation.stream import RunningScores, stream_scores, stream_texts


@pytest.fixture(scope="module")
def tokenizer():
    from tunewise.models.load import load_tokenizer

    return load_tokenizer("minilm-l6")


def _texts(n: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(0)
    words = [
        "card",
        "refund",
        "lost",
        "money",
        "transfer",
        "pin",
        "account",
        "top",
        "up",
        "fee",
        "cash",
    ]
    texts = [" ".join(rng.choice(words, rng.integers(2, 15))) for _ in range(n)]
    return texts, [int(i % 4) for i in range(n)]


def test_stream_scores_match_full_logits(tokenizer):
    model = tiny_bert(num_labels=4)
    texts, labels = _texts(90)
    data = encode(tokenizer, texts, labels, 32)
    logits, loss = predict_logits(model, data, batch_size=16)
    full = classification_metrics(np.array(labels), logits.argmax(1), 4)
    streamed = stream_scores(model, data, 4, batch_size=16)
    assert streamed["accuracy"] == pytest.approx(full["accuracy"])
    assert streamed["macro_f1"] == pytest.approx(full["macro_f1"])
    assert streamed["loss"] == pytest.approx(loss, rel=1e-5)


def test_stream_texts_equals_encoded_scores_across_chunks(tokenizer):
    model = tiny_bert(num_labels=4)
    texts, labels = _texts(70)
    whole = stream_scores(model, encode(tokenizer, texts, labels, 32), 4, batch_size=8)
    chunked = stream_texts(model, tokenizer, iter(texts), iter(labels), 4, 32, 8, chunk_rows=16)
    assert chunked["rows"] == 70
    assert chunked["accuracy"] == pytest.approx(whole["accuracy"])
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_running_scores_skip_unknown_labels():
    running = RunningScores(3)
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    running.update(logits, torch.tensor([0, -1, 1]))
    out = running.result()
    assert running.rows == 2 and out["accuracy"] == 0.5
    assert running.cm.sum() == 2 and running.cm[1, 2] == 1


def test_unlabelled_data_scores_nothing():
    model = tiny_bert(num_labels=3)
    data = Encoded([[101, 2000, 102]] * 4, [-1] * 4, 0)
    assert stream_scores(model, data, 3)["accuracy"] == 0.0


def test_predict_top_equals_full_logits_across_chunks(tokenizer):
    model = tiny_bert(num_labels=4)
    texts, labels = _texts(70)
    logits, _ = predict_logits(model, encode(tokenizer, texts, labels, 32), batch_size=16)
    top = predict_top(model, tokenizer, texts, 32, batch_size=8, temperature=2.0, chunk_rows=16)
    probs = torch.tensor(logits).softmax(-1)
    np.testing.assert_array_equal(top.pred, logits.argmax(1))  # input order, not length order
    np.testing.assert_allclose(top.confidence, probs.amax(-1).numpy(), rtol=1e-5)
    scaled = (torch.tensor(logits) / 2.0).softmax(-1).amax(-1).numpy()
    np.testing.assert_allclose(top.scaled_confidence, scaled, rtol=1e-5)
    assert (top.scaled_confidence < top.confidence).all()  # T > 1 softens every row
    expected = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=32)["input_ids"]]
    assert top.lengths.tolist() == expected
    assert predict_top(model, tokenizer, texts, 32).scaled_confidence is None
