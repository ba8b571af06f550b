"""What `tunewise tune` leaves in RUN_DIR/tune/: the best config, every trial, plots, a summary.

    best_config.yaml   the base config with the best trial's values; `tunewise run` takes it as is
    trials.csv         one row per trial: number, state, value, params, seconds, steps, error
    summary.json       counts, compute spent, the best trial, and after the retrain its test scores
    *.png              optimisation history, parameter importances, parallel coordinates, curves

Why compute is counted in training steps and rows as well as seconds: wall time depends on
what else the machine runs; steps and rows seen do not.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState
from rich.table import Table

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import BlockingFinding
from tunewise.studies.tune import plots, space

COLUMNS = (
    "number",
    "state",
    "value",
    "params",
    "seconds",
    "steps",
    "samples",
    "pruned_at",
    "error",
)


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trials.csv row; `pruned_at` is the last evaluation slot a pruned trial reported."""
    a = trial.user_attrs
    pruned = trial.state == TrialState.PRUNED and trial.intermediate_values
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": json.dumps(trial.params or trial.system_attrs.get("fixed_params", {})),
        "seconds": a.get("seconds"),
        "steps": a.get("steps"),
        "samples": a.get("samples"),
        "pruned_at": max(trial.intermediate_values) if pruned else None,
        "error": a.get("error", ""),
    }


def write(
    study: optuna.Study, cfg: RunConfig, params: list, tune_dir: Path, storage: str | None
) -> dict:
    """Write trials.csv, best_config.yaml, the plots and summary.json; return the summary.

    Raises BlockingFinding (exit 1) when no trial completed: there is no best config to give.
    """
    trials = study.get_trials(deepcopy=False)
    with open(tune_dir / "trials.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(trial_row(t) for t in trials)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        raise BlockingFinding(f"no trial completed; see {tune_dir / 'trials.csv'}")
    best = study.best_trial
    best_cfg = load_config(cfg.to_dict(), space.overrides(best.params))
    write_best_config(tune_dir / "best_config.yaml", best_cfg, best, cfg.tune.metric)
    summary = {
        "study": study.study_name,
        "storage": storage,
        "sampler": cfg.tune.sampler,
        "pruner": cfg.tune.pruner,
        "metric": cfg.tune.metric,
        "direction": study.direction.name.lower(),
        "space": [p.key for p in params],
        "states": dict(Counter(t.state.name for t in trials)),
        "compute": compute(trials),
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "plots": plots.write_plots(study, tune_dir, cfg.tune.metric),
    }
    write_summary(tune_dir, summary)
    print_best(summary, tune_dir)
    return summary


def compute(trials: list) -> dict[str, float]:
    """Training spent over all trials: optimizer steps, rows seen, seconds."""
    total = {key: 0.0 for key in ("steps", "samples", "seconds")}
    for t in trials:
        for key in total:
            total[key] += t.user_attrs.get(key) or 0
    return {k: round(v, 2) for k, v in total.items()}


def write_best_config(path: Path, cfg: RunConfig, best: Any, metric: str) -> None:
    """The best config as YAML, headed by the command that runs it (the configs/ convention)."""
    head = (
        f"# tunewise run {path}\n"
        f"# best of a tunewise tune study: trial {best.number}, validation {metric} "
        f"{best.value:.4f}\n# searched: "
        + ", ".join(f"{k}={v}" for k, v in best.params.items())
        + "\n"
    )
    body = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    path.write_text(head + body, encoding="utf-8")


def write_summary(tune_dir: Path, summary: dict) -> None:
    (tune_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


def retrained(run_dir: Path) -> dict | None:
    """Test scores of the retrained best config (from its metrics.json), for summary.json."""
    path = run_dir / rundir.METRICS
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    keys = ("tuned", "baseline_name", "baseline", "delta", "ci95", "test_size")
    return {"run_dir": str(run_dir), **{k: metrics.get(k) for k in keys}}


def print_best(summary: dict, tune_dir: Path) -> None:
    """The table `tunewise tune` ends its search with."""
    table = Table(title=f"study {summary['study']}: best of {sum(summary['states'].values())}")
    table.add_column("key")
    table.add_column("value", justify="right")
    best = summary["best"]
    table.add_row(f"validation {summary['metric']}", f"{best['value']:.4f}")
    for key, value in best["params"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    out = console
    out.print(table)
    states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items())
    out.print(f"trials: {states}; compute: {summary['compute']}")
    out.print(f"best config: {tune_dir / 'best_config.yaml'}")
