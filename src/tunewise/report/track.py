"""Experiment tracking: log a finished run to MLflow (default), Weights & Biases or Comet.

Tracking reads the run directory after the fact, so the training loop carries no tracker code
and a run can be (re)logged later. MLflow's own local store lives in the output folder, its
artifacts (report, metrics, the model) beside it in `mlartifacts/`, never in the working directory:

    mlflow ui --backend-store-uri sqlite:///runs/mlflow.db     # browse what tunewise logged
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from tunewise.core import rundir
from tunewise.core.files import sha256_file, sha256_json

SKIPPED_KEYS = ("labels", "per_class", "confusion_matrix", "train_label_counts", "errors")
UNSAFE_NAME = re.compile(r"[^\w\-. :/]")


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 1}}` → `{"train.lr": 1}`; lists are kept as their JSON text."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def data_hash(config: dict[str, Any]) -> str:
    """SHA-256 over the hashes of the run's data files (train, validation, test), 16 hex digits."""
    data = config.get("data") or {}
    files = [data.get(k) for k in ("train", "validation", "test")]
    return sha256_json([sha256_file(p) for p in files if p and Path(p).is_file()])[:16]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric leaves of metrics.json, e.g. tuned.accuracy, delta.macro_f1."""
    kept = {k: v for k, v in metrics.items() if k not in SKIPPED_KEYS}
    return {
        UNSAFE_NAME.sub("_", k): float(v)
        for k, v in flat(kept).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / rundir.HISTORY
    return (
        [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    )


def log_mlflow(run_dir: Path, uri: str | None, experiment: str) -> str:
    """Log params, per-step metrics, final metrics, tags and artifacts; return the MLflow run id."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter
    config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    uri = uri or f"sqlite:///{(run_dir.parent / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    _experiment(mlflow, experiment, artifact_root(uri))
    with mlflow.start_run(run_name=config.get("name")) as active:
        mlflow.log_params({k: str(v)[:500] for k, v in flat(config).items()})
        mlflow.set_tags(
            {
                "tunewise.data_hash": data_hash(config),
                "tunewise.run_dir": str(run_dir.resolve()),
                "tunewise.task": config.get("task", ""),
            }
        )
        for record in _history(run_dir):
            values = {
                f"{record['split']}.{k}": float(v)
                for k, v in record.items()
                if k not in ("step", "split") and isinstance(v, int | float)
            }
            mlflow.log_metrics(values, step=int(record["step"]))
        metrics_path = run_dir / rundir.METRICS
        if metrics_path.exists():
            mlflow.log_metrics(_scalars(json.loads(metrics_path.read_text())))
        for name in (rundir.REPORT, rundir.METRICS, rundir.DOCTOR, rundir.AUDIT, rundir.CONFIG):
            if (run_dir / name).exists():
                mlflow.log_artifact(str(run_dir / name))
        if (run_dir / rundir.MODEL).is_dir():
            mlflow.log_artifacts(str(run_dir / rundir.MODEL), artifact_path="model")
        return active.info.run_id


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: `mlartifacts/` beside a SQLite store (else
    MLflow puts them in ./mlruns of whatever directory the command ran in); None for a server,
    which has its own artifact store."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def _experiment(mlflow: Any, name: str, artifacts: str | None) -> None:
    """Select experiment `name`, creating it with `artifacts` as its artifact location."""
    if artifacts is not None and mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)


def log_wandb(run_dir: Path, project: str) -> str:
    """Log the same scalars to Weights & Biases (needs `wandb` installed and logged in)."""
    import wandb

    config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    run = wandb.init(project=project, name=config.get("name"), config=flat(config))
    for record in _history(run_dir):
        run.log(
            {f"{record['split']}/{k}": v for k, v in record.items() if k not in ("split",)},
            step=int(record["step"]),
        )
    metrics_path = run_dir / rundir.METRICS
    if metrics_path.exists():
        run.summary.update(_scalars(json.loads(metrics_path.read_text())))
    run.finish()
    return str(run.id)


def log_comet(run_dir: Path, project: str) -> str:
    """Log the same scalars to Comet (needs `comet_ml` installed and COMET_API_KEY set)."""
    import comet_ml

    config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    run = comet_ml.Experiment(project_name=project)
    run.set_name(config.get("name"))
    run.log_parameters(flat(config))
    for record in _history(run_dir):
        values = {
            f"{record['split']}.{k}": v
            for k, v in record.items()
            if k not in ("step", "split") and isinstance(v, int | float)
        }
        run.log_metrics(values, step=int(record["step"]))
    metrics_path = run_dir / rundir.METRICS
    if metrics_path.exists():
        run.log_metrics(_scalars(json.loads(metrics_path.read_text())))
    run.end()
    return str(run.get_key())


def track(run_dir: Path, backends: list[str], uri: str | None, experiment: str) -> dict[str, str]:
    """Log the run to every configured backend that is installed; returns {backend: run id}."""
    done: dict[str, str] = {}
    for backend in backends:
        if importlib.util.find_spec(backend) is None:
            continue  # optional trackers: no hard dependency
        if backend == "mlflow":
            done[backend] = log_mlflow(run_dir, uri, experiment)
        elif backend == "wandb" and (
            os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")
        ):
            done[backend] = log_wandb(run_dir, experiment)
        elif backend == "comet_ml" and os.environ.get("COMET_API_KEY"):
            done[backend] = log_comet(run_dir, experiment)
    return done
