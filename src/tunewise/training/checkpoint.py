"""Resumable training state: tensors as safetensors, everything else as JSON; never pickle.

A run directory keeps `checkpoints/step-00000120/` folders, each holding `model.safetensors`,
`optimizer.safetensors`, `state.json` (step, epoch, sampler position, early stopping, the loss
window, scheduler, grad scaler, RNG states, config hash, the sizes of the append-only logs) and
`manifest.json` (sha256 and size of each file). A checkpoint is written into a `.tmp-` folder,
fsynced and renamed into place, so a crash or a full disk mid-save leaves the previous one
intact; the newest `train.keep_checkpoints` are kept, plus the best. Resuming picks the newest
folder whose checksums hold:

    tunewise train configs/banking77.yaml train.checkpoint_every=50
    tunewise train configs/banking77.yaml train.checkpoint_every=50 --resume auto
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.training.state_json import (
    join_optimizer,
    plain,
    rng_state,
    set_rng_state,
    split_optimizer,
)

PREFIX, TMP = "step-", ".tmp-"
LOGS = (rundir.HISTORY, rundir.ROWS)  # append-only run logs, cut back to the checkpoint on resume
FORMAT = 1
STOPPER = ("best_", "best_step_", "bad_evals_")  # EarlyStopping's learned state
NOT_RESTORED = ("precision", "total_steps", "seconds")  # this session's own


def config_hash(cfg: Any) -> str:
    """sha256 of the resolved config, less where outputs go (a run may be moved or renamed)."""
    doc = cfg.to_dict()
    for key in ("name", "output_dir", "track"):
        doc.pop(key, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Checkpoints:
    """Writes checkpoints of one training run into `root` (the run's `checkpoints/`).

    `save` is called after a step; `every` steps apart (None: only at the end, at each new
    best and on SIGTERM/SIGINT). Only the writer process (rank 0) touches the disk.
    """

    root: Path
    every: int | None
    keep: int
    run_hash: str
    writer: bool = True
    last_: Path | None = None  # the newest checkpoint written by this run
    seconds_: float = 0.0  # spent writing checkpoints

    def due(self, step: int) -> bool:
        return self.every is not None and step % self.every == 0

    def check_space(self, model: torch.nn.Module) -> int:
        """Refuse before training when `keep` + best + one being written cannot fit."""
        per = estimate_bytes(model)
        need = per * (self.keep + 2)
        if not self.writer:
            return need
        self.root.mkdir(parents=True, exist_ok=True)
        have = sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())  # replaced
        free = shutil.disk_usage(self.root).free
        if free + have < need:
            message = (f"checkpoints need about {need:,} bytes ({self.keep} kept + best + one "
                       f"being written, {per:,} each); {free:,} bytes free")  # fmt: skip
            fix = (f"free {need - free - have:,} bytes, lower train.keep_checkpoints, or point "
                   "output_dir at a larger disk")  # fmt: skip
            where = (str(self.root), None, "train.keep_checkpoints")
            raise InputError([Problem(*where, message, fix)])
        return need

    def save(self, parts: dict[str, Any], state: Any, stopper: Any, window: tuple) -> Path | None:
        """Write the state after step `state.step` atomically, then prune; once per step.

        `parts` holds model, optimizer, scheduler and scaler; `window` the training loss summed
        since the last log line and its count. A failed save of any kind (OSError, a
        SafetensorError, any Exception from the writer) warns, removes its `.tmp-` folder and
        keeps the previous checkpoints: training goes on, and the next save may succeed.
        KeyboardInterrupt and SystemExit are not failed saves and still stop the run.
        """
        folder = self.root / f"{PREFIX}{state.step:08d}"
        if not self.writer or folder == self.last_:
            return self.last_
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "trainer": dataclasses.asdict(state),
            "early_stopping": {k: getattr(stopper, k) for k in STOPPER} if stopper else None,
            "loss_window": [float(window[0]), int(window[1])],
            "config_hash": self.run_hash,
        }
        started = time.perf_counter()
        try:
            write_checkpoint(folder, parts, record)
        except Exception as exc:  # disk full, permission, SafetensorError: never end the run
            console.log(f"[yellow]checkpoint at step {state.step} failed "
                        f"({type(exc).__name__}: {exc}); kept the last")  # fmt: skip
            clean_temporary(self.root)
            return self.last_
        self.last_ = folder
        prune(self.root, self.keep, state.best_step)
        seconds = time.perf_counter() - started
        self.seconds_ += seconds
        console.log(f"checkpoint {folder.name} written in {seconds:.2f} s")
        return folder


def for_run(out_dir: Path, cfg: Any, run_hash: str, writer: bool, model: Any) -> Checkpoints:
    """The run's checkpoints as TrainConfig `cfg` asks, once the disk is known to hold them."""
    ckpt = Checkpoints(out_dir / rundir.CHECKPOINTS, cfg.checkpoint_every, cfg.keep_checkpoints,
                       run_hash, writer)  # fmt: skip
    ckpt.check_space(model)
    return ckpt


def estimate_bytes(model: torch.nn.Module) -> int:
    """Weights, plus AdamW's two moments per trainable value, plus 1 MiB of JSON and headers."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = sum(2 * p.numel() * 4 for p in model.parameters() if p.requires_grad)
    return weights + moments + (1 << 20)


def write_checkpoint(folder: Path, parts: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write into a temporary folder, fsync every file, add the manifest, rename into place."""
    tmp = folder.with_name(f"{TMP}{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(parts["model"], str(tmp / "model.safetensors"))
        tensors, opt_meta = split_optimizer(parts["optimizer"].state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        scaler = parts.get("scaler")
        meta = {
            "format": FORMAT,
            **state,
            "optimizer": opt_meta,
            "scheduler": plain(parts["scheduler"].state_dict()),
            "scaler": plain(scaler.state_dict()) if scaler is not None else None,
            "logs": _log_sizes(folder.parent.parent),
            "rng": rng_state(),
        }
        (tmp / "state.json").write_text(json.dumps(meta))
        manifest = {f.name: _digest(f) for f in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / "manifest.json")
        _fsync(tmp)
        shutil.rmtree(folder, ignore_errors=True)  # a corrupt folder of the same step
        os.replace(tmp, folder)
        _fsync(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _digest(path: Path) -> dict[str, Any]:
    """sha256 and size of a file just written; fsync it on the way."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    _fsync(path)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _log_sizes(run_dir: Path) -> dict[str, int]:
    return {name: (run_dir / name).stat().st_size for name in LOGS if (run_dir / name).exists()}


def prune(root: Path, keep: int, best_step: int) -> None:
    """Delete all but the newest `keep` checkpoints and the best one."""
    steps = sorted(_steps(root), reverse=True)
    for step in steps[keep:]:
        if step != best_step:
            shutil.rmtree(root / f"{PREFIX}{step:08d}", ignore_errors=True)


def _steps(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    names = (p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))
    return [int(n[len(PREFIX) :]) for n in names if n[len(PREFIX) :].isdigit()]


def clean_temporary(root: Path) -> list[str]:
    """Remove `.tmp-` folders a crash left behind mid-save; their names."""
    left = [p for p in root.glob(f"{TMP}*")] if root.is_dir() else []
    for p in left:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in left]


def verify(folder: Path) -> str | None:
    """Why `folder` is not a usable checkpoint (missing file, size or checksum), or None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return f"manifest.json unreadable ({exc})"
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        if name not in manifest:
            return f"manifest.json does not list {name}"
    for name, want in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, manifest says {want['bytes']}"
        if _digest(path)["sha256"] != want["sha256"]:
            return f"{name} fails its sha256 checksum"
        if name.endswith(".safetensors") and not _is_safetensors(path):
            return f"{name} is not a safetensors file"
    return None


def _is_safetensors(path: Path) -> bool:
    """Whether the header parses: a file that merely has the right checksum may still be junk."""
    try:
        with safe_open(str(path), "pt") as f:
            f.keys()
    except Exception:  # SafetensorsError, OSError: anything but a clean header
        return False
    return True


def latest_valid(root: Path, say: Callable[[str], None] = console.log) -> Path | None:
    """The newest checkpoint whose checksums hold; invalid newer ones are named and removed."""
    for name in clean_temporary(root):
        say(f"removed an unfinished checkpoint: {root / name}")
    for step in sorted(_steps(root), reverse=True):
        folder = root / f"{PREFIX}{step:08d}"
        problem = verify(folder)
        if problem is None:
            return folder
        say(f"[yellow]skipping checkpoint {folder}: {problem}; trying the previous one")
        shutil.rmtree(folder, ignore_errors=True)
    return None


def resume_point(
    cfg: Any, resume: str | Path | None, writer: bool = True
) -> tuple[Any, Path | None]:
    """The config to train with and the checkpoint to resume from, checked before models load.

    `resume` is a run directory or "auto" (this config's run directory; a fresh start when it
    holds no valid checkpoint). `check_resumable` then checks the checkpoint's config hash.
    The writer locks the run directory first: no other process may be saving into it.
    """
    if resume is None:
        return cfg, None
    if str(resume) != "auto":
        run_dir = Path(resume)
        cfg = dataclasses.replace(cfg, output_dir=str(run_dir.parent), name=run_dir.name)
    if writer and cfg.run_dir().is_dir():
        rundir.lock(cfg.run_dir())
    folder = latest_valid(cfg.run_dir() / rundir.CHECKPOINTS)
    if folder is None:
        if str(resume) == "auto":
            console.log(f"no valid checkpoint in {cfg.run_dir()}: starting from scratch")
            return cfg, None
        raise _resume_error(str(resume), "holds no valid checkpoint", "train without --resume")
    return cfg, folder


def check_resumable(folder: Path, cfg: Any) -> None:
    """The checkpoint must come from this config (its hash), as prepared for training."""
    saved = json.loads((folder / "state.json").read_text())
    if saved.get("config_hash") != config_hash(cfg):
        raise _resume_error(
            str(folder),
            "was written with a different config (its hash differs)",
            f"resume with the config the run started with: {cfg.run_dir() / 'config.yaml'}",
        )
    console.log(f"resuming from {folder} (step {saved['step']}, epoch {saved['epoch']})")


def _resume_error(where: str, message: str, fix: str) -> InputError:
    return InputError([Problem(where, None, "--resume", message, fix)])


def restore(folder: Path, parts: dict[str, Any]) -> dict[str, Any]:
    """Load weights, optimizer, scheduler, scaler and RNG from `folder`; return state.json.

    Safetensors and JSON only, so a planted file can be wrong but can never run code. The run's
    logs are cut back to their size at the checkpoint, so the steps after it are logged once.
    """
    meta = json.loads((folder / "state.json").read_text())
    load_model(parts["model"], str(folder / "model.safetensors"))
    parts["optimizer"].load_state_dict(
        join_optimizer(load_file(str(folder / "optimizer.safetensors")), meta["optimizer"])
    )
    parts["scheduler"].load_state_dict(meta["scheduler"])
    if parts.get("scaler") is not None and meta.get("scaler"):
        parts["scaler"].load_state_dict(meta["scaler"])
    run_dir = folder.parent.parent
    for name, size in meta.get("logs", {}).items():
        if (run_dir / name).exists():
            os.truncate(run_dir / name, size)
    for name in set(LOGS) - set(meta.get("logs", {})):
        (run_dir / name).unlink(missing_ok=True)
    set_rng_state(meta["rng"])
    return meta


def resume(folder: Path, parts: dict[str, Any], state: Any, stopper: Any) -> tuple:
    """Restore everything `Checkpoints.save` wrote into the live objects.

    Returns (best weights or None, loss window sum, its count) for the loop's own variables.
    """
    meta = restore(folder, parts)
    for key, value in meta["trainer"].items():
        if key not in NOT_RESTORED and hasattr(state, key):
            setattr(state, key, value)
    if stopper is not None and meta.get("early_stopping"):
        for key, value in meta["early_stopping"].items():
            setattr(stopper, key, value)
    best = best_weights(parts["model"], folder.parent, state.best_step) if stopper else None
    return best, *meta["loss_window"]


def best_weights(model: Any, root: Path, step: int) -> dict[str, torch.Tensor] | None:
    """The weights of the best checkpoint (early stopping restores them at the end)."""
    folder = root / f"{PREFIX}{step:08d}"
    if step < 0 or verify(folder) is not None:
        if step >= 0:
            console.log(f"[yellow]best checkpoint {folder} is missing or corrupt: the final "
                        "weights, not the best, will be kept")  # fmt: skip
        return None
    loaded = load_file(str(folder / "model.safetensors"))
    live = model.state_dict()
    kept = {live[k].data_ptr(): k for k in loaded}  # tied weights were saved once
    return {k: loaded[k] if k in loaded else loaded[kept[v.data_ptr()]] for k, v in live.items()}
