"""Choose which parameters train: small functions over `named_parameters()`.

Why several methods: with little data, updating all 22M+ weights overfits and forgets; freezing
most of them is a regulariser, and trains faster. `full` trains everything; `head` is a linear
probe (encoder frozen); `freeze` keeps the embeddings plus chosen layers fixed; `bitfit` trains
only bias terms plus the head (Ben Zaken et al., 2022); `lora` adds low-rank adapters through
PEFT (see `models/lora.py`). Example: `model = adapt(model, "bitfit")`, then
`count_parameters(model)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from tunewise.core.errors import InputError, Problem
from tunewise.models.layers import is_embedding, is_head, layer_index, num_layers
from tunewise.models.lora import add_lora

METHODS = ("full", "head", "freeze", "bitfit", "lora")
FreezeSpec = int | float | Sequence[int] | str


def adapt(
    model: nn.Module,
    method: str,
    freeze_layers: FreezeSpec = 0,
    lora: dict[str, Any] | None = None,
    freeze_token_embeddings: bool = False,
) -> nn.Module:
    """Set `requires_grad` per the method and return the model to train.

    That is the same model, except for `lora`, which returns PEFT's wrapper around it
    (`lora` holds add_lora's keyword arguments: r, alpha, dropout, target_modules).
    `freeze_token_embeddings` also keeps the input token-embedding matrix fixed (see
    `freeze_input_embeddings`).
    """
    if method == "lora":
        return add_lora(model, **(lora or {}))
    names = [name for name, _ in model.named_parameters()]
    rules: dict[str, Callable[[str], bool]] = {
        "full": lambda name: True,
        "head": is_head,
        "bitfit": lambda name: is_head(name) or name.endswith(".bias"),
    }
    if method == "freeze":
        frozen = frozen_names(names, freeze_layers)
        rules["freeze"] = lambda name: name not in frozen
    if method not in rules:
        raise _error("adapt.method", f"'{method}' is not a method", f"use one of {METHODS}")
    for name, param in model.named_parameters():
        param.requires_grad = rules[method](name)
    if freeze_token_embeddings:
        freeze_input_embeddings(model)
    return model


def freeze_input_embeddings(model: nn.Module) -> None:
    """Keep the token-embedding matrix fixed (positions and the rest still train).

    Why: in MiniLM it is half of all weights (30,522 x 384 = 11.7M of 22.7M), yet a batch uses a
    few hundred of its rows. Training it costs a dense gradient and an AdamW update over every
    row at every step, and the rows of words absent from the training data drift without ever
    seeing them. Frozen, each step is cheaper and unseen words keep their pre-trained meaning.
    """
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if get is not None else None
    if embeddings is None:
        raise _error(
            "adapt.freeze_token_embeddings",
            f"{type(model).__name__} exposes no input embeddings",
            "set adapt.freeze_token_embeddings: false for this model",
        )
    embeddings.weight.requires_grad = False


def frozen_names(names: Sequence[str], spec: FreezeSpec) -> set[str]:
    """Parameters `freeze` keeps fixed; the head always trains.

    An int N freezes the embeddings and blocks 0..N-1; a list of ints freezes the embeddings
    and those blocks; a string is a regular expression and freezes exactly the names it
    matches (`re.search`), e.g. `"embeddings|layer\\.[0-3]\\."`.
    """
    if isinstance(spec, str):
        pattern = _compile(spec)
        chosen = {n for n in names if pattern.search(n)}
    else:
        blocks = _blocks(spec, num_layers(names))
        chosen = {n for n in names if is_embedding(n) or layer_index(n) in blocks}
    chosen = {n for n in chosen if not is_head(n)}
    if not chosen:
        raise _error(
            "adapt.freeze_layers",
            f"{spec!r} matches no parameter",
            "give a layer count, a list of layer indices, or a regex matching parameter names",
        )
    return chosen


def _blocks(spec: int | float | Sequence[int], n_layers: int) -> set[int]:
    """The block indices an int (first N), a share below 1 (that part of the depth, rounded down:
    0.5 of 6 layers is 3) or a list (exact indices) names, checked against depth."""
    if isinstance(spec, float):
        if not 0 <= spec < 1:
            raise _error(
                "adapt.freeze_layers",
                f"{spec!r} is not a share of the layers",
                "give a share from 0 to 1 (0.5: the lower half) or a whole layer count",
            )
        spec = int(spec * n_layers)
    blocks = set(range(spec)) if isinstance(spec, int) else set(spec)
    bad = sorted(i for i in blocks if not 0 <= i < n_layers)
    if bad or (isinstance(spec, int) and spec < 0):
        raise _error(
            "adapt.freeze_layers",
            f"{spec!r} is outside the model's {n_layers} layers",
            f"use a count from 0 to {n_layers}, or indices from 0 to {n_layers - 1}",
        )
    return blocks


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _error("adapt.freeze_layers", f"invalid regex: {exc}", "fix the pattern") from None


def _error(field: str, message: str, fix: str) -> InputError:
    return InputError([Problem("config", None, field, message, fix)])


def count_parameters(model: nn.Module) -> dict[str, float]:
    """Trainable, total and percentage: printed by the run and stored in metrics.json.

    For LoRA the total counts the base model plus the adapters (PEFT's own convention), and
    the head's frozen original copy is not counted twice.
    """
    params = {name: p for name, p in model.named_parameters() if ".original_module." not in name}
    total = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    return {"trainable": trainable, "total": total, "percent": round(100.0 * trainable / total, 4)}


def describe_parameters(params: dict[str, float], method: str) -> str:
    """The line every training run prints: how much of the model fine-tuning may change."""
    return (
        f"trainable parameters: {params['trainable']:,} of {params['total']:,} "
        f"({params['percent']:.2f}%)  method={method}"
    )
