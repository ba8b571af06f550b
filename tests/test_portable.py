"""The saved mean-pooled classifier (models/portable.py): a standard BertForSequenceClassification
that transformers alone loads, with the labels and (within 1e-5) the probabilities tunewise
computes; tunewise reads it back as the exact mean-pooled model.

The clean-environment test runs the model card's own snippet in `python -I` with an import hook
that refuses `tunewise`, on real BANKING77 texts with the embedded MiniLM.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertForSequenceClassification

from tests.conftest import BANKING
from tunewise.models.card import write_model_card
from tunewise.models.load import (
    load_classifier,
    load_trained_classifier,
    resolve_model,
    save_classifier,
)
from tunewise.models.pooling import MeanPoolingBertForSequenceClassification
from tunewise.models.portable import is_portable

TEXTS = ["lost card", "how do I top up my account with a cheque from abroad", "hi"]
PROB_TOLERANCE = 1e-5  # measured on the BANKING77 run: at most 3.1e-6 (docs/serving.md)


@pytest.fixture(scope="module")
def mean_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-mean")
    for f in tiny_model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return folder


def _trained_like(model, scale: float = 30.0, seed: int = 0):
    """Head weights as large as a trained head's (BANKING77 logits reach +-40)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        w = model.classifier.weight
        w.copy_(torch.randn_like(w) * scale / w.shape[1] ** 0.5)
        model.classifier.bias.copy_(torch.randn_like(model.classifier.bias))
    return model.eval()


def _save(model, tokenizer, folder: Path) -> Path:
    save_classifier(model, folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_saved_file_is_standard_bert_and_gives_the_same_logits(mean_dir, tmp_path):
    model = _trained_like(load_classifier(str(mean_dir), ["a", "b", "c"]))
    tok = AutoTokenizer.from_pretrained(mean_dir)
    folder = _save(model, tok, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["tunewise_pooling"] == "mean"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(folder.glob("*.bin"))
    plain = BertForSequenceClassification.from_pretrained(folder).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")  # padding: the mean skips it
    with torch.no_grad():
        want, got = model(**batch).logits, plain(**batch).logits
    assert torch.equal(want.argmax(-1), got.argmax(-1))
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)  # raw logits, ranking scores
    torch.testing.assert_close(got.softmax(-1), want.softmax(-1), atol=PROB_TOLERANCE, rtol=0)


def test_tunewise_reads_it_back_as_the_exact_mean_pooled_model(mean_dir, tmp_path):
    model = _trained_like(load_classifier(str(mean_dir), ["a", "b", "c"]))
    folder = _save(model, AutoTokenizer.from_pretrained(mean_dir), tmp_path / "model")
    assert is_portable(folder)
    again = load_trained_classifier(folder)
    assert isinstance(again, MeanPoolingBertForSequenceClassification)
    assert again.config.num_hidden_layers == model.config.num_hidden_layers
    want = model.state_dict()
    assert again.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in again.state_dict().items())  # bit for bit


def test_one_score_per_text_keeps_its_raw_value(mean_dir, tmp_path):
    """Ranking saves one output: the graph must keep the score itself, not only its softmax."""
    model = _trained_like(load_classifier(str(mean_dir), ["score"]))
    tok = AutoTokenizer.from_pretrained(mean_dir)
    plain = BertForSequenceClassification.from_pretrained(_save(model, tok, tmp_path / "m"))
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            plain.eval()(**batch).logits, model(**batch).logits, atol=1e-3, rtol=1e-4
        )


def test_cls_pooled_and_old_tunewise_mean_bert_runs_still_load(tiny_model_dir, mean_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(mean_dir)
    cls = load_classifier(str(tiny_model_dir), ["a", "b"]).eval()
    _save(cls, tok, tmp_path / "cls")
    assert (
        json.loads((tmp_path / "cls" / "config.json").read_text()).get("tunewise_pooling") is None
    )
    assert (
        type(load_trained_classifier(tmp_path / "cls")).__name__ == "BertForSequenceClassification"
    )
    old = load_classifier(str(mean_dir), ["a", "b"]).eval()
    old.save_pretrained(tmp_path / "old")  # what runs saved before the portable graph
    reloaded = load_trained_classifier(tmp_path / "old")
    assert isinstance(reloaded, MeanPoolingBertForSequenceClassification)


def test_too_many_labels_for_the_width_fall_back_to_the_native_type(mean_dir, tmp_path):
    labels = [f"l{i}" for i in range(15)]  # hidden 16: no room for two constant dims
    model = load_classifier(str(mean_dir), labels).eval()
    _save(model, AutoTokenizer.from_pretrained(mean_dir), tmp_path / "m")
    assert (
        json.loads((tmp_path / "m" / "config.json").read_text())["model_type"]
        == "tunewise_mean_bert"
    )
    assert isinstance(
        load_trained_classifier(tmp_path / "m"), MeanPoolingBertForSequenceClassification
    )


CLEAN = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTunewise(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tunewise" or name.startswith("tunewise."):
                raise ImportError("tunewise is not installed here")
            return None

    sys.meta_path.insert(0, NoTunewise())
    sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
    texts = json.load(open(sys.argv[1]))
    {snippet}
    out = [clf(t, truncation=True, max_length=64, top_k=None) for t in texts]
    assert not [m for m in sys.modules if m.split(".")[0] == "tunewise"]
    print(json.dumps(out))
    """
)


def _card_snippet(card: Path) -> str:
    """The python block of the model card, as a user would paste it."""
    code = re.search(r"```python\n(.*?)```", card.read_text(), re.S)
    assert code is not None
    return code.group(1)


@pytest.mark.skipif(not BANKING.is_dir(), reason="BANKING77 mirror not present")
def test_the_model_cards_snippet_runs_with_only_transformers(tmp_path):
    """Real texts, the embedded MiniLM: labels equal, probabilities within PROB_TOLERANCE."""
    with open(BANKING / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[::40][:77]
    labels = sorted({r["category"] for r in rows})
    model = _trained_like(load_classifier("minilm-l6", labels))
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    run = tmp_path / "run"
    _save(model, tok, run / "model")
    (run / "config.yaml").write_text(
        yaml.safe_dump({"name": "t", "model": {"name": "minilm-l6", "max_length": 64},
                        "adapt": {"method": "full"}, "data": {"train": "train.csv"}})
    )  # fmt: skip
    metrics = {"tuned": {"accuracy": 1.0, "macro_f1": 1.0}, "test_size": 1}
    snippet = _card_snippet(write_model_card(run, metrics))
    texts = [r["text"] for r in rows]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = CLEAN.replace("{snippet}", snippet)
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(tmp_path / "texts.json")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)
    for row, out in zip(probs, got, strict=True):
        scores = {o["label"]: o["score"] for o in out}
        assert out[0]["label"] == labels[int(row.argmax())]
        want = torch.tensor([scores[name] for name in labels])
        torch.testing.assert_close(want, row, atol=PROB_TOLERANCE, rtol=0)
    assert load_file(str(run / "model" / "model.safetensors"))  # safetensors, nothing else
