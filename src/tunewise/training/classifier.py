"""The one way a classifier is trained: `run`, `train`, every `tune` trial, `compare` and
`refine` candidates call `train_classifier`, so a search scores exactly what a run ships.

The recipe's steps, in order: seeded head → adapt (freeze, BitFit, LoRA) → the contrastive stage
on few-shot data → LP-FT head init →
the start weights WiSE-FT mixes with → packing → `fit` (with checkpoint averaging's memory) →
weight averaging → WiSE-FT interpolation → one validation pass of the final model. With
`out_dir` the run's files are written (history.jsonl, checkpoints/, model/, training.json);
without it nothing touches the disk (a trial).

    trained = train_classifier(cfg, splits, run_dir)        # a run
    trained = train_classifier(cfg, splits, callbacks=[pruning])   # a trial
    trained.validation["accuracy"]                          # of the model that ships
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.device import uses_bf16
from tunewise.data.encode import Encoded, encode
from tunewise.data.validate import Splits
from tunewise.evaluation.stream import stream_scores
from tunewise.models import load as models
from tunewise.models.adapt import count_parameters, describe_parameters
from tunewise.training import checkpoint, distributed, packing, recipe
from tunewise.training.callbacks import History, ProgressBar, RowRecorder
from tunewise.training.loop import TrainState, fit


@dataclass
class Trained:
    """The trained model (after averaging and interpolation), how training went, and the final
    model's validation scores (loss, accuracy, macro_f1)."""

    model: nn.Module
    state: TrainState
    summary: dict[str, Any]
    validation: dict[str, float]


def encode_split(tokenizer: Any, ex: Any, splits: Splits, max_length: int) -> Encoded:
    return encode(tokenizer, ex.texts, splits.ids(ex), max_length)


def train_classifier(
    cfg: Any,
    splits: Splits,
    out_dir: Path | None = None,
    *,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
    resume_from: Path | None = None,
) -> Trained:
    """Train `cfg`'s classifier on `splits.train`, choosing on `splits.validation` only."""
    tokenizer = tokenizer or models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    torch.manual_seed(cfg.seed)  # the new head's initial weights too: same config, same run
    model = recipe.build_model(cfg, splits.labels)
    params = count_parameters(model)
    main = distributed.is_main()  # under DDP only the main process logs and saves
    if main:
        console.log(describe_parameters(params, cfg.adapt.method))
    train_data = encode_split(tokenizer, splits.train, splits, cfg.model.max_length)
    val_data = encode_split(tokenizer, splits.validation, splits, cfg.model.max_length)
    bf16 = uses_bf16(cfg.train.precision, model)

    def evaluate_validation(m: nn.Module) -> dict[str, float]:  # memory flat in validation size
        return stream_scores(m, val_data, len(splits.labels), cfg.eval.batch_size, bf16)

    contrastive, head_init = (None, None)
    if resume_from is None:
        contrastive, head_init = recipe.starting_point(cfg, model, train_data, val_data, bf16)
    if head_init is not None:  # where training starts: the doctor checks it is not lost
        head_init["validation"] = evaluate_validation(model)
    data = (train_data, val_data)
    start = recipe.start_weights(cfg, model, splits.labels, data, bf16, resume_from is not None)
    averager = recipe.checkpoint_average(cfg)
    writers = _writers(cfg, out_dir, len(train_data)) if main and out_dir else []
    counts = np.bincount(train_data.labels, minlength=len(splits.labels)).tolist()
    model, collate_fn, train_cfg = packing.prepare(model, cfg.train)  # short rows share a row
    state = fit(
        model,
        train_data,
        averager.wrap(evaluate_validation) if averager else evaluate_validation,
        train_cfg,
        seed=cfg.seed,
        out_dir=out_dir,
        resume_from=resume_from,
        run_hash=checkpoint.config_hash(cfg),
        callbacks=[*writers, *callbacks, *recipe.extra_callbacks(cfg)],
        loss_fn=recipe.build_training_loss(cfg, counts),
        layer_lr_decay=cfg.adapt.layer_lr_decay,
        collate_fn=collate_fn,
    )
    averaging = recipe.finish_average(cfg, averager, model, evaluate_validation, state)
    interpolation = recipe.finish_interpolation(cfg, start, model, evaluate_validation)
    final = evaluate_validation(model)
    summary: dict[str, Any] = {
        "parameters": params,
        "loss": recipe.describe_loss(cfg),
        "regularization": recipe.regularization(cfg, model.config),
        "training": state.summary(),
        "validation": {
            "source": splits.validation_source,
            "size": len(splits.validation),
            "final": final,
        },
        "contrastive": contrastive,
        "head_init": head_init,
        "averaging": averaging,
        "interpolation": interpolation,
        "train_label_counts": dict(Counter(splits.train.labels)),
    }
    if out_dir is not None and main:
        model = recipe.save_trained(model, tokenizer, out_dir)
        (out_dir / rundir.TRAINING).write_text(json.dumps(summary, indent=1))
        t = summary["training"]
        console.log(
            f"trained {state.step} steps in {state.seconds:.0f} s "
            f"({t['samples_per_second']:.0f} samples/s, {state.precision})"
        )
    return Trained(model, state, summary, final)


def _writers(cfg: Any, out_dir: Path, n_rows: int) -> list[Any]:
    """The run's history file, progress bar and (train.record_rows) row record."""
    step_rows = cfg.train.batch_size * cfg.train.grad_accum
    total = cfg.train.max_steps or cfg.train.epochs * -(-n_rows // step_rows)
    writers: list[Any] = [
        History(out_dir / rundir.HISTORY),
        ProgressBar(total, enabled=console.is_terminal),
    ]
    if cfg.train.record_rows:
        writers.append(RowRecorder(out_dir / rundir.ROWS))
    return writers
