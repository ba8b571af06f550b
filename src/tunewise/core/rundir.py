"""The run directory (DESIGN.md contract): the names of its files, and how a run starts.

Every stage reads and writes a run through these names, so `tunewise doctor`, `report`,
`evaluate` and `serve` find what `run` wrote:

    run_dir = start_run(cfg)                 # runs/<name>/ with config.yaml
    (run_dir / METRICS).write_text(...)

One process writes a run directory at a time (`lock`), and a new run never wipes a finished
one: `start_run` keeps it aside as runs/<name>.1 (then .2, ...).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem

CONFIG = "config.yaml"  # the fully resolved config that produced the run
MODEL = "model"  # Hugging Face folder: config.json, model.safetensors, tokenizer, README.md
ADAPTER = "adapter"  # LoRA runs: the PEFT adapter beside the merged model/
METRICS = "metrics.json"
HISTORY = "history.jsonl"  # one line per logged step or evaluation
AUDIT = "audit.json"
AUDIT_HTML = "audit.html"
DOCTOR = "doctor.json"
REPORT = "report.html"
CHECKPOINTS = "checkpoints"
FEEDBACK_DB = "feedback.db"
TUNE = "tune"
BASELINE = "baseline.json"  # the untuned model's predictions on the test rows
TRAINING = "training.json"  # what training did: steps, seconds, parameters, regularisers
PREPARE = "prepare.json"  # rows changed per cleaning step
DROPPED = "dropped.jsonl"  # every row cleaning removed, with its reason
ROWS = "rows.jsonl"  # train.record_rows: the rows of each step
NONFINITE = "nonfinite.json"  # NaN/inf steps that were skipped
DATA = "data"  # split files a run made itself (held-out test, redacted text)
LINEAGE = "lineage.json"
ONNX = "onnx"
OOS = "oos.json"  # the out-of-scope detector serve abstains by: method, threshold
OOS_STATE = "oos.safetensors"  # its fitted state (kNN bank, Mahalanobis means and precision)

LOCK = ".lock"  # held (flock) by the one process writing the run; holds its PID

# Outputs of an earlier run under the same name that a new run must not inherit.
STALE = (HISTORY, METRICS, BASELINE, TRAINING, ROWS, NONFINITE, OOS, OOS_STATE)
# What makes a run finished, and so worth keeping aside rather than clearing.
FINISHED = (MODEL, METRICS)
# Stays with the name when a finished run is kept aside: the study `tune --study NAME` continues.
STAYS = (LOCK, TUNE)

_held: dict[Path, int] = {}  # run directories this process has locked: their lock file's fd


def dump_config(cfg: Any, path: Path) -> Path:
    """`cfg` (a RunConfig) as YAML that the config loader reads back to an equal config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def start_run(cfg: Any) -> Path:
    """Lock `cfg.run_dir()` and write the resolved config into it. A finished earlier run there
    is kept aside (`keep_aside`); an unfinished one's outputs are cleared."""
    run_dir = cfg.run_dir()
    lock(run_dir)
    if any((run_dir / name).exists() for name in FINISHED):
        kept = keep_aside(run_dir)
        console.log(f"{run_dir} held a finished run: kept it as {kept}")
    for stale in STALE:
        (run_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # never resume an older run
    dump_config(cfg, run_dir / CONFIG)
    console.log(f"run directory: {run_dir}")
    return run_dir


def keep_aside(run_dir: Path) -> Path:
    """Move the run in `run_dir` (all but STAYS) to the next free `<name>.N`; that folder."""
    taken = [p.name.rpartition(".")[2] for p in run_dir.parent.glob(f"{run_dir.name}.*")]
    number = max((int(n) for n in taken if n.isdigit()), default=0) + 1
    kept = run_dir.with_name(f"{run_dir.name}.{number}")
    kept.mkdir()
    for entry in run_dir.iterdir():
        if entry.name not in STAYS:
            os.replace(entry, kept / entry.name)
    return kept


def lock(run_dir: Path) -> None:
    """Hold `run_dir`'s lock until this process ends; refuse if another process holds it.

    The kernel drops an flock when its process dies (even by SIGKILL), so a crash never leaves
    a stale lock. Taking it again in the same process is a no-op (tune, then run of its best).
    """
    key = run_dir.resolve()
    if key in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        message = f"another tunewise process (PID {holder}) is writing this run directory"
        fix = f"wait for PID {holder} to finish, or write this run elsewhere with name=OTHER"
        raise InputError([Problem(str(run_dir), None, "name", message, fix)]) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[key] = fd


def unlock(run_dir: Path) -> None:
    """Let another process write `run_dir` before this one ends (a notebook, a test)."""
    fd = _held.pop(run_dir.resolve(), None)
    if fd is not None:
        os.close(fd)
