"""The training loop: one function, read top to bottom.

AdamW (no decay on biases/norms) → warmup + schedule → bf16 autocast where the hardware has it
(and, on CPU, cheap dropout masks: models/rand_dropout.py) →
global-norm clipping (the pre-clip norm is logged) → evaluation every N steps or per epoch →
early stopping that restores the best weights. Callbacks see every log record. Each optimizer step
takes `batch_size * grad_accum` rows, split into `grad_accum` micro-batches whose gradients add up,
so 4 x 8 trains like 1 x 32. `loss_fn(logits, labels)` replaces the model's own loss when given;
`cfg.rdrop` adds R-Drop's consistency term (training/rdrop.py).
With `out_dir`, checkpoints go to out_dir/checkpoints (training/checkpoint.py) and `resume_from`
continues one exactly; a NaN/inf step is skipped and SIGTERM/SIGINT stop cleanly (faults.py).

    state = fit(model, encoded_train, evaluate, cfg.train, seed=13, out_dir=run_dir)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunewise.core.device import resolve_precision
from tunewise.data.encode import Encoded, collate, train_batches
from tunewise.models.rand_dropout import use_rand_dropout
from tunewise.training import checkpoint
from tunewise.training.averaging import weights_copy
from tunewise.training.callbacks import EarlyStopping
from tunewise.training.distributed import shard
from tunewise.training.faults import Watch
from tunewise.training.losses import LossFn, rdrop_consistency
from tunewise.training.optim import build_optimizer, clip_grad_norm
from tunewise.training.rdrop import twice
from tunewise.training.schedules import build_scheduler


@dataclass
class TrainState:
    """Where training stands; saved with checkpoints and summarised in metrics.json."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # batches done in this epoch: where the sampler resumes
    samples: int = 0
    seconds: float = 0.0
    total_steps: int = 0
    best_step: int = -1
    best_metric: float | None = None
    stopped_early: bool = False
    stop_reason: str = ""  # "stopped early at epoch 4/10: validation ... did not improve ..."
    precision: str = "fp32"
    nonfinite_steps: int = 0  # skipped for a NaN/inf loss or gradient

    def summary(self) -> dict[str, Any]:
        """training.json's "training" section, the same for every task."""
        return {
            "steps": self.step,
            "epochs": self.epoch,
            "seconds": round(self.seconds, 2),
            "samples_per_second": round(self.samples / max(self.seconds, 1e-9), 2),
            "best_step": self.best_step,
            "best_metric": self.best_metric,
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "precision": self.precision,
        }


def batch_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], loss_fn: LossFn | None, rdrop: float = 0.0
):
    """The model's own loss, or `loss_fn(logits, labels)` when a training loss was chosen.

    With `rdrop` > 0 (R-Drop) the batch runs twice in one stacked forward pass, each copy under
    its own dropout masks above the frozen layers: the loss over both copies plus `rdrop` x their
    symmetric KL.
    """
    if loss_fn is None:
        return model(**batch).loss
    labels = batch.pop("labels")
    if not rdrop:
        return loss_fn(model(**batch).logits, labels)
    logits = twice(model, batch)  # frozen lower layers run once (training/rdrop.py)
    return loss_fn(logits, torch.cat([labels, labels])) + rdrop * rdrop_consistency(logits)


def fit(
    model: nn.Module,
    data: Encoded,
    evaluate: Callable[[nn.Module], dict[str, float]],
    cfg: Any,
    *,
    seed: int,
    out_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
    loss_fn: LossFn | None = None,
    collate_fn: Callable[[Any, list[int]], dict[str, torch.Tensor]] = collate,
    layer_lr_decay: float | None = None,
    resume_from: Path | None = None,
    run_hash: str = "",
) -> TrainState:
    """Train `model` on `data` following the TrainConfig `cfg`; return the final state.

    `collate_fn(data, rows)` builds a batch (pairs for ranking); `layer_lr_decay` scales each
    lower layer's learning rate (see `build_optimizer`); `resume_from` is a checkpoint folder
    and `run_hash` the config hash its checkpoints record.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state = TrainState(precision=resolve_precision(cfg.precision, device))
    AcceleratorState._reset_state()  # a process may train again with other precision settings
    accelerator = Accelerator(
        mixed_precision="bf16" if state.precision == "bf16" else "no", cpu=device.type == "cpu"
    )
    step_rows = cfg.batch_size * cfg.grad_accum
    steps_per_epoch = math.ceil(len(data) / step_rows)
    state.total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    eval_every = cfg.eval_every or steps_per_epoch
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, layer_lr_decay)
    scheduler = build_scheduler(
        optimizer, cfg.schedule, state.total_steps, round(cfg.warmup_ratio * state.total_steps)
    )
    if device.type == "cpu":  # same dropout, masks drawn faster (models/rand_dropout.py)
        use_rand_dropout(model)
    else:  # cuDNN attention builds a plan per new shape (60 ms on an H100), which length-grouped
        torch.backends.cuda.enable_cudnn_sdp(False)  # batches keep meeting; process-wide
    model, optimizer = accelerator.prepare(model, optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    es = cfg.early_stopping
    stopper = EarlyStopping(es.metric, es.patience, es.min_delta) if es else None
    best_weights = None
    lengths = data.lengths()

    def log(record: dict[str, Any]) -> None:
        for cb in callbacks:
            if hasattr(cb, "on_log"):
                cb.on_log(record)

    parts = {"model": accelerator.unwrap_model(model), "optimizer": optimizer,
             "scheduler": scheduler, "scaler": accelerator.scaler}  # fmt: skip
    writer = accelerator.is_main_process  # refuses now when checkpoints cannot fit on the disk
    ckpt = checkpoint.for_run(out_dir, cfg, run_hash, writer, parts["model"]) if out_dir else None
    window_samples, loss_count = 0, 0
    loss_sum = torch.zeros((), device=accelerator.device)
    if resume_from is not None:  # weights, optimizer, schedule, sampler position, RNG, as they were
        best_weights, window_sum, loss_count = checkpoint.resume(resume_from, parts, state, stopper)
        loss_sum = torch.tensor(window_sum, device=accelerator.device)
    main_dir = out_dir if accelerator.is_main_process else None
    reduce = accelerator.reduce if accelerator.num_processes > 1 else None  # agree under DDP
    watch = Watch.start(cfg.max_nonfinite_steps, main_dir, reduce, log)
    start = window_start = time.perf_counter()
    while state.step < state.total_steps and not state.stopped_early:
        batches = train_batches(lengths, step_rows, seed + state.epoch, cfg.group_by_length)
        for rows in batches[state.epoch_step :]:  # a resumed epoch goes on where it stopped
            model.train()
            for cb in callbacks:
                if hasattr(cb, "on_step_begin"):
                    cb.on_step_begin(state, model)
            loss = torch.zeros((), device=accelerator.device)
            for part in (rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)):
                # under DDP each process takes a disjoint slice; `share` keeps the mean exact
                mine, share = shard(part, accelerator.process_index, accelerator.num_processes)
                batch = {k: v.to(accelerator.device) for k, v in collate_fn(data, mine).items()}
                with accelerator.autocast():  # each micro-batch weighs by its share of the rows
                    part_loss = batch_loss(model, batch, loss_fn, cfg.rdrop)
                    part_loss = part_loss * (share * len(part) / len(rows))
                accelerator.backward(part_loss)
                loss += part_loss.detach().float()
            grad_norm = clip_grad_norm(accelerator, optimizer, trainable, cfg.clip_grad_norm)
            finite = watch.step_is_finite(loss, grad_norm)  # and agree on a pending stop
            if finite:  # a NaN/inf step changes no weight
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.epoch_step += 1
            state.samples += len(rows)
            window_samples += len(rows)
            for cb in callbacks:
                if hasattr(cb, "on_step_end"):
                    cb.on_step_end(state, rows)
            if finite:
                loss_sum, loss_count = loss_sum + loss.detach().float(), loss_count + 1
            else:  # logged on its own, kept out of the average; aborts past the limit
                watch.skip(state, rows, loss, grad_norm)

            if state.step % cfg.log_every == 0 or state.step == state.total_steps:
                now = time.perf_counter()
                log(
                    {
                        "step": state.step,
                        "epoch": round(state.step / steps_per_epoch, 4),
                        "split": "train",
                        "loss": accelerator.reduce(loss_sum, "mean").item() / loss_count
                        if loss_count
                        else math.nan,  # every step of the window was skipped
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "samples_per_s": window_samples / max(now - window_start, 1e-9),
                    }
                )
                window_start, window_samples, loss_count = now, 0, 0
                loss_sum = torch.zeros((), device=accelerator.device)

            if state.step % eval_every == 0 or state.step == state.total_steps:
                metrics = evaluate(accelerator.unwrap_model(model))
                log(
                    {
                        "step": state.step,
                        "epoch": round(state.step / steps_per_epoch, 4),
                        "split": "validation",
                        **metrics,
                    }
                )
                if stopper is not None:
                    is_best, state.stopped_early = stopper.update(state.step, metrics)
                    if is_best:
                        state.best_step, state.best_metric = state.step, stopper.best_
                        best_weights = weights_copy(accelerator.unwrap_model(model))
                        if ckpt is not None:  # the best checkpoint outlives pruning
                            ckpt.save(parts, state, stopper, (loss_sum, loss_count))
                    if state.stopped_early:
                        at, of = (-(-n // steps_per_epoch) for n in (state.step, state.total_steps))
                        state.stop_reason = f"stopped early at epoch {at}/{of}: {stopper.reason()}"
            if ckpt is not None and (ckpt.due(state.step) or watch.stopping):
                ckpt.save(parts, state, stopper, (loss_sum, loss_count))
            if watch.stopping:  # SIGTERM/SIGINT: the step is done and saved; exit 143/130
                raise watch.interrupted(ckpt.last_ if ckpt else None)
            if state.stopped_early or state.step >= state.total_steps:
                break
        state.epoch += 1
        state.epoch_step = 0

    state.seconds = time.perf_counter() - start
    watch.stop()
    model = accelerator.unwrap_model(model)
    if ckpt is not None:
        ckpt.save(parts, state, stopper, (loss_sum, loss_count))
    if best_weights is not None:
        model.load_state_dict(best_weights)
    for cb in callbacks:
        if hasattr(cb, "on_end"):
            cb.on_end(state)
    return state
