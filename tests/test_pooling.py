"""Mean pooling (models/pooling.py): the head reads the masked token mean, and the saved model
loads back through transformers' Auto classes and pipeline with the same predictions."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from tunewise.core.errors import InputError
from tunewise.models.load import load_classifier
from tunewise.models.pooling import MeanPoolingBertForSequenceClassification

TEXTS = ["lost card", "how do I top up my account with a cheque from abroad"]


@pytest.fixture(scope="module")
def mean_dir(tiny_model_dir, tmp_path_factory):
    """The tiny BERT folder plus the sentence-transformers note that it pools by mean."""
    folder = tmp_path_factory.mktemp("tiny-mean")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True})
    )
    return folder


def test_auto_follows_the_encoders_own_pooling(tiny_model_dir, mean_dir):
    assert isinstance(
        load_classifier(str(mean_dir), ["a", "b"]), MeanPoolingBertForSequenceClassification
    )
    assert not isinstance(
        load_classifier(str(tiny_model_dir), ["a", "b"]), MeanPoolingBertForSequenceClassification
    )
    cls = load_classifier(str(mean_dir), ["a", "b"], pooling="cls")
    assert type(cls).__name__ == "BertForSequenceClassification"


def test_logits_are_the_head_on_the_masked_mean_and_ignore_padding(mean_dir):
    model = load_classifier(str(mean_dir), ["a", "b", "c"]).eval()
    encoder = AutoModel.from_pretrained(mean_dir).eval()
    tok = AutoTokenizer.from_pretrained(mean_dir)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        alone = model(**tok(TEXTS[:1], return_tensors="pt")).logits
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)  # padding is not averaged


def test_saved_model_reloads_through_auto_classes_and_pipeline(mean_dir, tmp_path):
    model = load_classifier(str(mean_dir), ["neg", "pos"]).eval()
    tok = AutoTokenizer.from_pretrained(mean_dir)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "tunewise_mean_bert"
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path, use_safetensors=True)
    assert isinstance(again, MeanPoolingBertForSequenceClassification)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**batch).logits, model(**batch).logits)
        probs = model(**batch).logits.softmax(-1)
    out = pipeline("text-classification", model=str(tmp_path))(TEXTS)
    assert [o["label"] for o in out] == [["neg", "pos"][i] for i in probs.argmax(-1).tolist()]
    assert out[0]["score"] == pytest.approx(float(probs[0].max()), abs=1e-5)


def test_mean_pooling_on_a_non_bert_encoder_is_refused_by_name(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, vocab_size=100)
    DistilBertModel(config).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="model.pooling"):
        load_classifier(str(tmp_path), ["a", "b"], pooling="mean")
