"""A mean-pooled classifier saved as a standard `BertForSequenceClassification`, so that
`transformers.pipeline("text-classification", model="runs/<run>/model")` loads it with no
tunewise code installed (the run-directory contract), and tunewise rebuilds it bit for bit.

Why a graph and not a custom class: transformers' pipeline reads the head on `[CLS]` after a
tanh pooler, while the head was trained on the masked mean of the tokens (models/pooling.py).
One extra BERT layer computes that mean, and the pooler and classifier read it back:

- attention: query and key weights 0, so every score is 0 and softmax is uniform over the
  unmasked keys: each head returns the masked mean (CLS and SEP included, as `mean_pool`);
- value: the first n rows are the classifier's weight C (so the mean m becomes C m, the
  logits without bias); the next rows are the constants +B, -B, +B, ... (zero sum), which the
  LayerNorm sees as a variance so much larger than the logits' that its scale is constant to
  ~||l||² / (2 · spare · B²);
- attention output dense = K · I: the residual ([CLS]'s own vector) is 1/K of the result;
- FFN output weights 0: the layer's output is the first LayerNorm's, unchanged;
- pooler: α on the first n dims (tanh in its linear regime: relative error (α u)² / 3);
- classifier: undoes the known scale and the LayerNorm's mean over all dims (the logits'
  share of it is their sum / H, recovered from the sum of the n logit dims), bias = the bias.

Measured on the BANKING77 run (docs/serving.md): same labels, probabilities within 3.2e-6.
The graph is exact only in fp32 (bf16 would round the constants); tunewise never runs it:
`load_native` turns the file back into the mean-pooled model (value rows = C exactly).

    save_portable(model, folder)      # config.json says tunewise_pooling: mean
    model = load_native(folder)       # MeanPoolingBertForSequenceClassification again
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig

from tunewise.models.pooling import MeanPoolingBertConfig, MeanPoolingBertForSequenceClassification

POOLING_KEY = "tunewise_pooling"  # config.json: "mean" marks a portable mean-pooled file
LAYERS_KEY = "tunewise_layers"  # the encoder's own layer count (the extra layer is the last)
K = 2.0**20  # attention output scale: the residual [CLS] vector weighs 1 / K
B = 2.0**12  # the constants that fix the LayerNorm's scale
ALPHA = 2.0**-6  # pooler gain: tanh(α u) = α u to (α u)² / 3
WEIGHTS = "model.safetensors"


def fits(model: Any) -> bool:
    """Whether the extra layer has room: n logit dims plus at least two constant dims."""
    return model.config.num_labels <= model.config.hidden_size - 2


def save_portable(model: MeanPoolingBertForSequenceClassification, folder: Path) -> Path:
    """Write config.json and model.safetensors of the standard-BERT graph into `folder`."""
    config, state = portable(model)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    return folder


def portable(model: MeanPoolingBertForSequenceClassification) -> tuple[BertConfig, dict]:
    """The standard config and weights equal (in fp32) to the mean-pooled `model`."""
    c = model.config
    layers, n, hidden = c.num_hidden_layers, int(c.num_labels or 0), c.hidden_size
    own = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    state = {k: v.contiguous() for k, v in own.items() if k.startswith("bert.")}
    state.update(_extra_layer(f"bert.encoder.layer.{layers}.", own, n, hidden, c))
    state.update(_pooler_and_classifier(own["classifier.bias"], n, hidden))
    values = c.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "_attn_implementation"):
        values.pop(key, None)
    config = BertConfig(**values)
    config.num_hidden_layers = layers + 1
    config.architectures = ["BertForSequenceClassification"]
    setattr(config, POOLING_KEY, "mean")
    setattr(config, LAYERS_KEY, layers)
    return config, state


def _extra_layer(prefix: str, own: dict, n: int, hidden: int, c: Any) -> dict:
    zeros = torch.zeros
    value_w, value_b = zeros(hidden, hidden), zeros(hidden)
    value_w[:n] = own["classifier.weight"]
    pairs = (hidden - n) // 2
    value_b[n : n + 2 * pairs] = torch.tensor([B, -B]).repeat(pairs)
    ones = torch.ones(hidden)
    return {
        prefix + "attention.self.query.weight": zeros(hidden, hidden),
        prefix + "attention.self.query.bias": zeros(hidden),
        prefix + "attention.self.key.weight": zeros(hidden, hidden),
        prefix + "attention.self.key.bias": zeros(hidden),
        prefix + "attention.self.value.weight": value_w,
        prefix + "attention.self.value.bias": value_b,
        prefix + "attention.output.dense.weight": torch.eye(hidden) * K,
        prefix + "attention.output.dense.bias": zeros(hidden),
        prefix + "attention.output.LayerNorm.weight": ones.clone(),
        prefix + "attention.output.LayerNorm.bias": zeros(hidden),
        prefix + "intermediate.dense.weight": zeros(c.intermediate_size, hidden),
        prefix + "intermediate.dense.bias": zeros(c.intermediate_size),
        prefix + "output.dense.weight": zeros(hidden, c.intermediate_size),
        prefix + "output.dense.bias": zeros(hidden),
        prefix + "output.LayerNorm.weight": ones.clone(),
        prefix + "output.LayerNorm.bias": zeros(hidden),
    }


def _pooler_and_classifier(bias: torch.Tensor, n: int, hidden: int) -> dict:
    """After the LayerNorm a logit dim is u_i = s (K l_i - μ), μ the mean over all dims; with
    β = 1 / (H - n), u_i + β Σ_j u_j = s K l_i, and s K = 1 / (B sqrt(spare / H))."""
    spare = 2 * ((hidden - n) // 2)
    scale = B * math.sqrt(spare / hidden) / ALPHA  # from tanh(α u) back to the logit
    pooler = torch.zeros(hidden, hidden)
    pooler[range(n), range(n)] = ALPHA
    mix = torch.eye(n, dtype=torch.float64) + 1.0 / (hidden - n)
    classifier = torch.zeros(n, hidden)
    classifier[:, :n] = (mix * scale).float()
    return {
        "bert.pooler.dense.weight": pooler,
        "bert.pooler.dense.bias": torch.zeros(hidden),
        "classifier.weight": classifier,
        "classifier.bias": bias.clone(),
    }


def is_portable(folder: Path) -> bool:
    """Whether `folder/config.json` is a portable mean-pooled classifier."""
    path = Path(folder) / "config.json"
    return path.is_file() and json.loads(path.read_text()).get(POOLING_KEY) == "mean"


def load_native(folder: Path) -> MeanPoolingBertForSequenceClassification:
    """The mean-pooled model back from a portable file: the extra layer's value rows are the
    classifier, so nothing is approximated."""
    values = json.loads((Path(folder) / "config.json").read_text())
    layers = int(values.pop(LAYERS_KEY))
    for key in (POOLING_KEY, "model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    values["num_hidden_layers"] = layers
    config = MeanPoolingBertConfig(**values)
    config.architectures = ["MeanPoolingBertForSequenceClassification"]
    state = load_file(str(Path(folder) / WEIGHTS))
    n = config.num_labels
    native = {
        k: v
        for k, v in state.items()
        if k.startswith("bert.") and not _extra(k, layers) and not k.startswith("bert.pooler.")
    }
    value = state[f"bert.encoder.layer.{layers}.attention.self.value.weight"]
    native["classifier.weight"] = value[:n].clone()
    native["classifier.bias"] = state["classifier.bias"]
    model = MeanPoolingBertForSequenceClassification(config)
    model.load_state_dict(native, strict=True)
    return model.eval()


def _extra(key: str, layers: int) -> bool:
    return key.startswith(f"bert.encoder.layer.{layers}.")
