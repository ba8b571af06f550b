"""The classification head's input vectors: what a feature-space out-of-scope score measures.

A sequence classifier ends in one `nn.Linear` onto its labels; the vector that layer reads is
the pooled encoder output (mean-pooled for `tunewise_mean_bert`, the `[CLS]` pooler for BERT,
the dense+tanh output of RoBERTa's head). A forward pre-hook on that layer captures it for any
architecture, so evaluation and serving read the same vectors from one pass with the logits:

    with head_inputs(model) as captured:
        logits = model(**batch).logits
    features = captured.pop()

The linear-probe baseline's head input is the untuned encoder's embedding (models/embed.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from tunewise.core.device import autocast
from tunewise.data.encode import Encoded, collate, eval_batches


def head_layer(model: nn.Module) -> nn.Linear:
    """The last Linear layer onto the model's labels (out_features == num_labels)."""
    config: Any = model.config  # a transformers config, which nn.Module's typing cannot see
    n = config.num_labels
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n]
    if not found:
        raise ValueError(f"no Linear layer with {n} outputs in {type(model).__name__}")
    return found[-1]


@contextmanager
def head_inputs(
    model: nn.Module, head: nn.Linear | None = None, grad: bool = False
) -> Iterator[list[torch.Tensor]]:
    """A list that receives the head's input (float32, detached unless `grad`) at every forward
    pass; `head` is `head_layer(model)`, passed by a caller that hooks the same model again."""
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple) -> None:
        captured.append((args[0] if grad else args[0].detach()).float())

    handle = (head or head_layer(model)).register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@torch.inference_mode()
def logits_and_features(
    model: Any, data: Encoded, batch_size: int = 128, bf16: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and head inputs of every row, in input order (batches sorted by length)."""
    model.eval()
    device = next(model.parameters()).device
    logits = np.zeros((len(data), model.config.num_labels), dtype=np.float32)
    features: np.ndarray | None = None
    with head_inputs(model) as captured:
        for rows in eval_batches(data.lengths(), batch_size):
            batch = {k: v.to(device) for k, v in collate(data, rows).items() if k != "labels"}
            with autocast(model, bf16):
                logits[rows] = model(**batch).logits.float().cpu().numpy()
            vectors = captured.pop().cpu().numpy()
            if features is None:
                features = np.zeros((len(data), vectors.shape[-1]), dtype=np.float32)
            features[rows] = vectors
    if features is None:
        features = np.zeros((0, 0), dtype=np.float32)
    return logits, features
