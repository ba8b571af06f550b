"""The training loop: one function, read top to bottom.

AdamW (no decay on biases/norms) → warmup + schedule → bf16 autocast where the hardware has it →
global-norm clipping (the pre-clip norm is logged) → evaluation every N steps or per epoch →
early stopping that restores the best weights. Callbacks see every log record.

    state = fit(model, encoded_train, evaluate, cfg.train, seed=13, out_dir=run_dir)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunewise.data.encode import Encoded, collate, train_batches
from tunewise.training.callbacks import EarlyStopping
from tunewise.training.checkpoint import save_checkpoint
from tunewise.training.optim import build_optimizer
from tunewise.training.schedules import build_scheduler


@dataclass
class TrainState:
    """Where training stands; saved with checkpoints and summarised in metrics.json."""

    step: int = 0
    epoch: int = 0
    samples: int = 0
    seconds: float = 0.0
    total_steps: int = 0
    best_step: int = -1
    best_metric: float | None = None
    stopped_early: bool = False
    precision: str = "fp32"


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is fast here (CUDA with bf16, or a CPU with AVX-512 bf16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` becomes bf16 where supported, else fp32."""
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return precision


def fit(
    model: nn.Module,
    data: Encoded,
    evaluate: Callable[[nn.Module], dict[str, float]],
    cfg: Any,
    *,
    seed: int,
    out_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainState:
    """Train `model` on `data` following the TrainConfig `cfg`; return the final state."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state = TrainState(precision=resolve_precision(cfg.precision, device))
    AcceleratorState._reset_state()  # a process may train again with other precision settings
    accelerator = Accelerator(
        mixed_precision="bf16" if state.precision == "bf16" else "no", cpu=device.type == "cpu"
    )
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    state.total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    eval_every = cfg.eval_every or steps_per_epoch
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(
        optimizer, cfg.schedule, state.total_steps, round(cfg.warmup_ratio * state.total_steps)
    )
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

    start = window_start = time.perf_counter()
    window_samples, loss_count = 0, 0
    loss_sum = torch.zeros((), device=accelerator.device)
    while state.step < state.total_steps and not state.stopped_early:
        for rows in train_batches(lengths, cfg.batch_size, seed + state.epoch, cfg.group_by_length):
            batch = {k: v.to(accelerator.device) for k, v in collate(data, rows).items()}
            model.train()
            with accelerator.autocast():
                loss = model(**batch).loss
            accelerator.backward(loss)
            max_norm = cfg.clip_grad_norm if cfg.clip_grad_norm else math.inf
            grad_norm = accelerator.clip_grad_norm_(trainable, max_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.samples += len(rows)
            window_samples += len(rows)
            loss_sum, loss_count = loss_sum + loss.detach().float(), loss_count + 1

            if state.step % cfg.log_every == 0 or state.step == state.total_steps:
                now = time.perf_counter()
                log(
                    {
                        "step": state.step,
                        "epoch": round(state.step / steps_per_epoch, 4),
                        "split": "train",
                        "loss": loss_sum.item() / loss_count,
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
                        best_weights = {
                            k: v.detach().clone()
                            for k, v in accelerator.unwrap_model(model).state_dict().items()
                        }
            if state.stopped_early or state.step >= state.total_steps:
                break
        state.epoch += 1

    state.seconds = time.perf_counter() - start
    model = accelerator.unwrap_model(model)
    if out_dir is not None:
        save_checkpoint(
            out_dir / "checkpoints" / "last", model, optimizer, scheduler, asdict(state)
        )
    if best_weights is not None:
        model.load_state_dict(best_weights)
    for cb in callbacks:
        if hasattr(cb, "on_end"):
            cb.on_end(state)
    return state
