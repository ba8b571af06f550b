"""What a run's config turns into for training: the adapted model, the loss, extra callbacks,
the saved model, and a record of which regularisers were active.

These are the `build_x(cfg)` functions: the only place the model, adapt and train sections are
read; everything they call takes plain arguments. `tunewise run`, `tunewise compare` and the
ranking stage share them, so every path trains the same way:

    model = build_model(cfg, labels)
    loss_fn = build_training_loss(cfg, label_counts)
    contrastive, head = starting_point(cfg, model, train_data, val_data, bf16)
    fit(model, data, evaluate, cfg.train, seed=cfg.seed, loss_fn=loss_fn,
        layer_lr_decay=cfg.adapt.layer_lr_decay, callbacks=extra_callbacks(cfg))
    model = save_trained(model, tokenizer, run_dir)
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunewise.core import rundir
from tunewise.core.errors import InputError, Problem
from tunewise.models import load as models
from tunewise.models.adapt import adapt
from tunewise.models.dropout import dropout_of
from tunewise.models.head_init import init_head_from_probe
from tunewise.models.integrity import write_manifest
from tunewise.models.lora import is_peft, save_adapter_and_merge
from tunewise.training.averaging import (
    CheckpointAverage,
    apply_average,
    interpolate_with_start,
    weights_copy,
)
from tunewise.training.contrastive import contrastive_stage
from tunewise.training.losses import LossFn, build_loss
from tunewise.training.unfreeze import GradualUnfreezing


def build_model(cfg: Any, labels: list[str]) -> nn.Module:
    """The pre-trained model with a fresh head, dropout overrides applied, then adapted."""
    m = cfg.model
    model = models.load_classifier(
        m.name,
        labels,
        m.dropout,
        m.trust_remote_code,
        attention_dropout=m.attention_dropout,
        classifier_dropout=m.classifier_dropout,
        allow_unsafe_weights=m.allow_unsafe_weights,
        pooling=m.pooling,
    )
    a = cfg.adapt
    return adapt(
        model,
        a.method,
        a.freeze_layers,
        lora=dataclasses.asdict(a.lora),
        freeze_token_embeddings=a.freeze_token_embeddings,
    )


def build_training_loss(cfg: Any, label_counts: Sequence[int] | None = None) -> LossFn:
    """`train.loss` with its options; class weights must give one number per class."""
    o = cfg.train.loss_options
    n_classes = len(label_counts) if label_counts is not None else None
    for key in ("class_weights", "alpha"):
        value = getattr(o, key)
        if isinstance(value, list) and n_classes is not None and len(value) != n_classes:
            raise InputError(
                [
                    Problem(
                        "config",
                        None,
                        f"train.loss_options.{key}",
                        f"{len(value)} values for {n_classes} classes",
                        "give one value per class, in label order (sorted names), or null",
                    )
                ]
            )
    return build_loss(
        cfg.train.loss,
        label_smoothing=o.label_smoothing,
        gamma=o.gamma,
        alpha=o.alpha,
        class_weights=o.class_weights,
        margin=o.margin,
        train_label_counts=label_counts,
    )


def extra_callbacks(cfg: Any) -> list[Any]:
    """Loop callbacks the adapt section asks for: gradual unfreezing."""
    a = cfg.adapt
    return [GradualUnfreezing(a.unfreeze_every, a.unfreeze_unit)] if a.unfreeze_every else []


def starting_point(
    cfg: Any, model: nn.Module, train_data: Any, val_data: Any, bf16: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Where fine-tuning starts, and a record of each step: `train.contrastive`'s stage on
    few-shot data, then LP-FT's probe head on `train_data` (`adapt.head_init: linear_probe`)."""
    contrastive = contrastive_stage(
        model,
        train_data,
        val_data,
        cfg.train.contrastive,
        seed=cfg.seed,
        bf16=bf16,
        batch_size=cfg.eval.batch_size,
    )
    if cfg.adapt.head_init != "linear_probe":
        return contrastive, None
    head = init_head_from_probe(model, train_data, seed=cfg.seed, batch_size=cfg.eval.batch_size)
    return contrastive, head


def checkpoint_average(cfg: Any) -> CheckpointAverage | None:
    """The weight averager `train.average_last` asks for; `.wrap(evaluate)` before `fit`."""
    n = cfg.train.average_last
    return CheckpointAverage(n) if n else None


def finish_average(
    cfg: Any, averager: CheckpointAverage | None, model: nn.Module, evaluate: Any, state: Any
) -> dict[str, Any] | None:
    """After `fit`: keep the averaged weights if validation says they are no worse."""
    if averager is None:
        return None
    es = cfg.train.early_stopping
    metric = es.metric if es else "accuracy"
    current = state.best_metric if es and state.best_metric is not None else None
    return apply_average(model, averager, evaluate, metric, current)


def start_weights(
    cfg: Any, model: nn.Module, labels: list[str], data: tuple[Any, Any], bf16: bool, resumed: bool
) -> dict[str, Any] | None:
    """A copy of the weights training starts from, when `train.interpolate_start` needs them.

    A resumed run rebuilds them (same seed, same stages on the same train and validation
    `data`), since `model` already moved.
    """
    if not cfg.train.interpolate_start:
        return None
    if resumed:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, labels)
        starting_point(cfg, model, *data, bf16)
    return weights_copy(model)


def finish_interpolation(
    cfg: Any, start: dict[str, Any] | None, model: nn.Module, evaluate: Any
) -> dict[str, Any] | None:
    """After averaging: WiSE-FT's best mix of start and trained weights, if validation agrees."""
    if start is None:
        return None
    es = cfg.train.early_stopping
    return interpolate_with_start(model, start, evaluate, es.metric if es else "accuracy")


def save_trained(model: Any, tokenizer: Any, run_dir: Path) -> nn.Module:
    """Save model/ (Hugging Face format); LoRA also saves adapter/ and merges first.

    Returns the model that was saved (for LoRA the merged plain model).
    """
    shutil.rmtree(
        run_dir / rundir.ADAPTER, ignore_errors=True
    )  # never a stale adapter beside model/
    if is_peft(model):
        model = save_adapter_and_merge(model, run_dir / rundir.ADAPTER)
        tokenizer.save_pretrained(run_dir / rundir.ADAPTER)
    models.save_classifier(model, run_dir / rundir.MODEL)  # transformers alone loads it
    tokenizer.save_pretrained(run_dir / rundir.MODEL)
    write_manifest(run_dir / rundir.MODEL)  # evaluate and serve check the files against it
    return model


def describe_loss(cfg: Any) -> dict[str, Any]:
    """The loss and the options that apply to it, for training.json."""
    o = cfg.train.loss_options
    used = {
        "cross_entropy": (),
        "weighted_cross_entropy": ("class_weights",),
        "focal": ("gamma", "alpha"),
        "pairwise_ranking": ("margin",),
    }[cfg.train.loss]
    return {
        "name": cfg.train.loss,
        "label_smoothing": o.label_smoothing,
        **{k: getattr(o, k) for k in used},
    }


def regularization(cfg: Any, model_config: Any) -> dict[str, Any]:
    """Which regularisers were in force, with their values; `active` lists those switched on.

    The doctor's `no-regularization` rule reads this from metrics.json.
    """
    t, a = cfg.train, cfg.adapt
    dropout = dropout_of(model_config)
    if a.method == "lora":
        dropout["lora"] = a.lora.dropout
    record: dict[str, Any] = {
        "weight_decay": t.weight_decay,
        "dropout": dropout,
        "label_smoothing": t.loss_options.label_smoothing,
        "early_stopping": t.early_stopping is not None,
        "clip_grad_norm": t.clip_grad_norm,
        "frozen_parameters": a.method != "full" or a.freeze_token_embeddings,
        "gradual_unfreezing": a.unfreeze_every is not None,
        "layer_lr_decay": a.layer_lr_decay,
        "rdrop": t.rdrop,
        "average_last": t.average_last,
        "interpolate_start": t.interpolate_start,
    }
    switched = {
        "weight_decay": t.weight_decay > 0,
        "dropout": any((v or 0) > 0 for v in dropout.values()),
        "label_smoothing": t.loss_options.label_smoothing > 0,
        "early_stopping": record["early_stopping"],
        "frozen_parameters": record["frozen_parameters"],
        "gradual_unfreezing": record["gradual_unfreezing"],
        "layer_lr_decay": (a.layer_lr_decay or 1.0) < 1.0,
        "rdrop": t.rdrop > 0,
        "average_last": t.average_last is not None,
        "interpolate_start": t.interpolate_start,
    }
    record["active"] = [name for name, on in switched.items() if on]
    return record
