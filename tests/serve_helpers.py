"""Tiny run directories for the serving tests: a 3-label BERT classifier and a tiny Llama.

Both use the real MiniLM tokenizer and random weights of width 16, so loading takes well under
a second; what the tests check is the plumbing, not the predictions.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import tiny_bert

LABELS = ["card_arrival", "lost_or_stolen_card", "request_refund"]


def _tokenizer():
    from transformers import AutoTokenizer

    from tunewise.models.load import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))


def classifier_run(root: Path, precision: str = "auto") -> Path:
    """root/config.yaml (task: classification) and root/model/ with LABELS as id2label; the
    same weights every call. `precision` is the run's train.precision, which serving follows."""
    model = tiny_bert(len(LABELS))
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(root / "model")
    _tokenizer().save_pretrained(root / "model")
    config = {
        "task": "classification",
        "name": root.name,
        "model": {"max_length": 32},
        "train": {"precision": precision},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


CHAT = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def llama_run(root: Path, chat: bool = False) -> Path:
    """root/config.yaml (task: causal_lm) and root/model/ with a random 2-layer Llama; `chat`
    gives its tokenizer a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer()
    if chat:
        tok.chat_template = CHAT
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "config.yaml").write_text(yaml.safe_dump({"task": "causal_lm", "name": root.name}))
    return root
