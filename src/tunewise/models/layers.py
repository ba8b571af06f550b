"""How deep each parameter sits, from its name: embeddings 0, layer i is i + 1, the rest on top.

Freezing the first layers, gradual unfreezing (ULMFiT: top layers first) and layer-wise
learning-rate decay (lower layers hold general features, so they should move less) all need one
answer to "how deep is this parameter?", so it lives here. Names work through wrappers such as
PEFT's `base_model.model.` prefix. Example: `depth("bert.encoder.layer.0.output.dense.weight", 6)`
is 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

HEAD_PATTERN = re.compile(r"(^|\.)(classifier|score|pre_classifier|lm_head)\.")
_BLOCK = r"\.(?:layers?|h|blocks?)\.(\d+)"  # transformers' names for a stack of blocks
LAYER_PATTERN = re.compile(_BLOCK + r"\.")  # a parameter inside block i
BLOCK_PATTERN = re.compile(_BLOCK + "$")  # block i itself, as a module name
EMBEDDING_PATTERN = re.compile(r"(^|\.)(embeddings|embed_tokens|wte|wpe)\.")


def is_head(name: str) -> bool:
    """True for the task head (classifier, score, pre_classifier, lm_head), wrapped or not."""
    return bool(HEAD_PATTERN.search(name))


def is_embedding(name: str) -> bool:
    return bool(EMBEDDING_PATTERN.search(name)) and not is_head(name)


def layer_index(name: str) -> int | None:
    """The transformer block a parameter belongs to, or None (embeddings, pooler, head)."""
    match = LAYER_PATTERN.search(name)
    return int(match.group(1)) if match else None


def num_layers(names: Iterable[str]) -> int:
    """Number of transformer blocks, from the highest block index among `names`."""
    indices = [i for i in map(layer_index, names) if i is not None]
    return max(indices) + 1 if indices else 0


def depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for block i, n_layers + 1 for the rest (pooler, final norm, head)."""
    if is_embedding(name):
        return 0
    index = layer_index(name)
    return n_layers + 1 if index is None or is_head(name) else index + 1


def depths(model: nn.Module) -> dict[str, int]:
    """`depth` of every named parameter of `model`."""
    names = [name for name, _ in model.named_parameters()]
    n = num_layers(names)
    return {name: depth(name, n) for name in names}
