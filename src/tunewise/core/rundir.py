"""The run directory (DESIGN.md contract): the names of its files, and how a run starts.

Every stage reads and writes a run through these names, so `tunewise doctor`, `report`,
`evaluate` and `serve` find what `run` wrote:

    run_dir = start_run(cfg)                 # runs/<name>/ with config.yaml
    (run_dir / METRICS).write_text(...)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tunewise.core.console import console

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

# Outputs of an earlier run under the same name that a new run must not inherit.
STALE = (HISTORY, METRICS, BASELINE, TRAINING, ROWS, NONFINITE, OOS, OOS_STATE)


def dump_config(cfg: Any, path: Path) -> Path:
    """`cfg` (a RunConfig) as YAML that the config loader reads back to an equal config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def start_run(cfg: Any) -> Path:
    """Create `cfg.run_dir()` with the resolved config; clear an earlier run's outputs."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in STALE:
        (run_dir / stale).unlink(missing_ok=True)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # never resume an older run
    dump_config(cfg, run_dir / CONFIG)
    console.log(f"run directory: {run_dir}")
    return run_dir
