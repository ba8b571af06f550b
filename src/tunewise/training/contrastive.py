"""A contrastive stage for few labelled rows a class, before the head is fitted (SetFit's idea).

Why: with a handful of rows per class, cross-entropy fine-tuning moves a sentence encoder little
and the linear probe it starts from reads untuned embeddings. SetFit (Tunstall et al., 2022)
first tunes the encoder on pairs of training rows, the cosine similarity of their pooled vectors
pulled towards 1 for the same label and 0 for different labels: every row takes part in many
pairs, and the classes come apart in the very space the head reads. Here the pooled vector is
the head's input (models/features.py), so it works for any architecture and adaptation (only
the parameters `adapt` left trainable move), and the probe head fitted next (LP-FT) reads it.

`train.contrastive` runs the stage when the median class has at most `max_rows_per_class`
training rows (so the shipped recipe runs it on a few-shot file and not on BANKING77's 130 rows
a class), and keeps it only if a probe on the tuned vectors scores at least as well on the
validation rows as a probe on the untuned ones; otherwise the weights go back. The same check a
quarter of the way in stops a stage that has not helped by then, so data it does not suit pay a
quarter of its time.

    record = contrastive_stage(model, train_data, val_data, cfg.train.contrastive,
                               seed=cfg.seed, bf16=bf16, batch_size=cfg.eval.batch_size)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from tunewise.core.console import console, step_progress
from tunewise.core.device import autocast
from tunewise.data.encode import Encoded, collate
from tunewise.models.features import head_inputs, head_layer, logits_and_features
from tunewise.models.head_init import PROBE_C, fit_probe
from tunewise.training.optim import build_optimizer
from tunewise.training.schedules import build_scheduler

WARMUP = 0.1  # SetFit's warmup proportion


def median_rows_per_class(labels: list[int]) -> float:
    return float(np.median(np.unique(np.asarray(labels), return_counts=True)[1]))


def applies(c: Any, labels: list[int]) -> bool:
    """Whether `train.contrastive` (`c`, None when off) runs on training rows with `labels`."""
    if c is None or len(set(labels)) < 2:
        return False
    return c.max_rows_per_class is None or median_rows_per_class(labels) <= c.max_rows_per_class


def pairs(labels: list[int], per_row: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled row pairs (n, 2) and their targets: for each row, `per_row` times, one other
    row of its class (1.0; none for a class of one row) and one row of another class (0.0)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    same = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    other = {c: np.flatnonzero(y != c) for c in same}
    found: list[tuple[int, int, float]] = []
    for _ in range(per_row):
        for i, c in enumerate(y):
            mates = same[c][same[c] != i]
            if len(mates):
                found.append((i, int(mates[rng.integers(len(mates))]), 1.0))
            found.append((i, int(other[c][rng.integers(len(other[c]))]), 0.0))
    chosen = np.asarray(found)[rng.permutation(len(found))]
    return chosen[:, :2].astype(np.int64), chosen[:, 2].astype(np.float32)


def probe_accuracy(
    model: nn.Module, train: Encoded, val: Encoded, seed: int, batch: int, bf16: bool
) -> float:
    """Validation accuracy of a logistic-regression probe on the head's input vectors."""
    x = logits_and_features(model, train, batch, bf16)[1]
    v = logits_and_features(model, val, batch, bf16)[1]
    n = head_layer(model).out_features
    weight, bias = fit_probe(x, np.asarray(train.labels), n, seed, PROBE_C)
    return float(((v @ weight.T + bias).argmax(1) == np.asarray(val.labels)).mean())


def contrastive_stage(
    model: nn.Module,
    train: Encoded,
    val: Encoded,
    c: Any,
    *,
    seed: int,
    bf16: bool,
    batch_size: int = 128,
) -> dict[str, Any] | None:
    """Tune the trainable weights on row pairs (cosine loss), keep them if validation agrees.
    Nothing to do (None) off few-shot data, or when only the head trains (`adapt.method: head`)."""
    head = {id(p) for p in head_layer(model).parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    if not applies(c, train.labels) or not trainable:
        return None
    started = time.perf_counter()
    before = [p.detach().clone() for p in trainable]
    index, target = pairs(train.labels, c.pairs_per_row, seed)
    steps = -(-len(index) // c.batch_size)
    if c.max_steps is not None:
        steps = min(steps, c.max_steps)
    scores = {"before": probe_accuracy(model, train, val, seed, batch_size, bf16)}

    def helps(when: str) -> bool:
        scores[when] = probe_accuracy(model, train, val, seed, batch_size, bf16)
        return scores[when] >= scores["before"]

    # a quarter of the way in, a stage that has not helped the probe yet stops there
    losses = _train(model, train, index, target, c, steps, seed, bf16, lambda: helps("quarter"))
    kept = helps("after") if len(losses) == steps else False
    if not kept:
        with torch.no_grad():
            for p, saved in zip(trainable, before, strict=True):
                p.copy_(saved)
    record = {
        "median_rows_per_class": median_rows_per_class(train.labels),
        "pairs": len(index),
        "steps": len(losses),
        "planned_steps": steps,
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        "probe_validation_accuracy": scores,
        "kept": kept,
        "seconds": round(time.perf_counter() - started, 2),
    }
    verdict = "kept" if kept else "undone: it did not help the probe"
    path = " → ".join(f"{v:.4f}" for v in scores.values())
    console.log(
        f"contrastive stage: {len(losses)} of {steps} steps on {len(index):,} pairs, probe "
        f"validation accuracy {path} ({verdict})"
    )
    return record


def _train(
    model: nn.Module,
    data: Encoded,
    index: np.ndarray,
    target: np.ndarray,
    c: Any,
    steps: int,
    seed: int,
    bf16: bool,
    go_on: Callable[[], bool],
) -> list[float]:
    """`steps` AdamW steps of MSE(cos(u, v), target) over batches of `c.batch_size` pairs;
    after a quarter of them, fewer if `go_on()` says no. Returns each step's loss."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = build_optimizer(model, c.lr, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, "linear", steps, int(WARMUP * steps))
    params = [p for p in model.parameters() if p.requires_grad]
    head = head_layer(model)
    losses: list[float] = []
    model.train()
    with step_progress("contrastive stage", steps, unit="steps") as advance:
        for step in range(steps):
            span = slice(step * c.batch_size, (step + 1) * c.batch_size)
            rows = index[span]
            batch = collate(data, np.r_[rows[:, 0], rows[:, 1]].tolist())
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            with head_inputs(model, head, grad=True) as captured, autocast(model, bf16):
                model(**batch)
            u, v = captured.pop().float().chunk(2)
            goal = torch.as_tensor(target[span], device=device)
            loss = nn.functional.mse_loss(nn.functional.cosine_similarity(u, v), goal)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            advance(1)
            if step + 1 == max(1, steps // 4) and step + 1 < steps:
                if not go_on():
                    break
                model.train()  # the probe's pass left it in eval mode
    model.eval()
    return losses
