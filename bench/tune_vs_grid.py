"""Does TPE with Hyperband pruning reach a 16-point grid's best for a fraction of its compute?

On a BANKING77 subset (training rows, a separate validation sample, fixed epochs) this runs
`tunewise tune` twice over lr x batch size x weight decay:
  grid:  the 16 points lr {3e-5, 1e-4, 3e-4, 1e-3} x batch {16, 32} x weight decay {0, 0.1},
         no pruning;
  TPE:   the same ranges as continuous (lr log-uniform), Hyperband pruning over evaluation slots,
         stopped once a trial's validation accuracy is within 0.5 points of the grid's best;
         repeated with --seeds sampler seeds (the median fraction is the headline).
Compute is counted in training rows seen and optimizer steps (robust to a busy machine) and in
wall seconds (noisy). Then the TPE best and the default config (lr 3e-4, batch 32, decay 0.01)
are retrained on the same rows and scored once on the full BANKING77 test set (3,080 rows).

    .venv/bin/python bench/tune_vs_grid.py          # 2,000 train rows, 3 epochs: hours
    .venv/bin/python bench/tune_vs_grid.py --quick  # 600 rows, 2 epochs: ~1 h on 2 busy cores
    .venv/bin/python bench/tune_vs_grid.py --quick --reuse-grid --seeds 5   # more TPE seeds

Prints one JSON object as its last line and writes it to bench/results/tune_vs_grid.json
(tune_vs_grid_quick.json for --quick).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SPACE = {
    "train.lr": {
        "type": "float",
        "low": 3e-5,
        "high": 1e-3,
        "log": True,
        "grid": [3e-5, 1e-4, 3e-4, 1e-3],
    },
    "train.batch_size": {"type": "categorical", "choices": [16, 32]},
    "train.weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "grid": [0.0, 0.1]},
}
TOLERANCE = 0.005  # "within 0.5 accuracy points"
SIZES = {"full": (2000, 1000, 3), "quick": (600, 500, 2)}  # train rows, validation rows, epochs


def subset(out: Path, n_train: int, n_val: int, seed: int = 13) -> tuple[Path, Path]:
    """Disjoint seeded samples of BANKING77's train.csv, stratified: intents take turns, so every
    intent is in both parts."""
    from tunewise.data import sources

    src = Path(sources.data_dir()) / "banking77" / "train.csv"
    with open(src, encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    rng, by_label = random.Random(seed), {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    for group in by_label.values():
        rng.shuffle(group)
    turns = itertools.zip_longest(*by_label.values())
    rows = [row for turn in turns for row in turn if row is not None]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in (("train", rows[:n_train]), ("validation", rows[n_train : n_train + n_val])):
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *part])
        paths.append(out / f"{name}.csv")
    return paths[0], paths[1]


def base_overrides(mode: str, data_dir: Path) -> list[str]:
    n_train, n_val, epochs = SIZES[mode]
    train, val = subset(data_dir, n_train, n_val)
    return [
        f"data.train={train}",
        f"data.validation={val}",
        "output_dir=runs/bench",
        f"train.epochs={epochs}",
        "train.early_stopping=null",  # fixed epochs: every full trial costs the same
        "eval.forgetting=[]",
        "eval.bootstrap=200",
        "audit.label_noise=false",
        "track.backends=[]",
        "tune.retrain=false",
        "tune.metric=accuracy",
    ]


def run_study(name: str, overrides: list[str], stop_at: float | None = None) -> list[dict]:
    """One `tune` study; with `stop_at`, stop after the first trial scoring at least that."""
    import optuna

    from tunewise.config import load_config
    from tunewise.studies.tune import search

    cfg = load_config(ROOT / "configs" / "banking77.yaml", [*overrides, f"name={name}"])
    cfg.tune.space = SPACE
    if stop_at is not None:
        original = search._stop_when_queue_empty

        def stop(study: optuna.Study, trial) -> None:
            original(study, trial)
            if trial.value is not None and trial.value >= stop_at:
                study.stop()

        search._stop_when_queue_empty = stop
    try:
        search.tune(cfg)
    finally:
        if stop_at is not None:
            search._stop_when_queue_empty = original
    with open(cfg.run_dir() / "tune" / "trials.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def cumulative(rows: list[dict], upto: int | None = None) -> dict:
    """Compute of trials 0..upto (all when None): rows trained, steps, seconds, trial count."""
    chosen = [r for r in rows if upto is None or int(r["number"]) <= upto]
    total = {k: sum(float(r[k] or 0) for r in chosen) for k in ("samples", "steps", "seconds")}
    return {**{k: round(v, 1) for k, v in total.items()}, "trials": len(chosen)}


def test_accuracy(name: str, overrides: list[str]) -> dict:
    """Train one config on the subset and score it once on the full test set."""
    from tunewise.pipeline import evaluate, train

    run_dir = train(ROOT / "configs" / "banking77.yaml", [*overrides, f"name={name}"])
    metrics = evaluate(run_dir)
    return {
        "accuracy": metrics["tuned"]["accuracy"],
        "macro_f1": metrics["tuned"]["macro_f1"],
        "test_size": metrics["test_size"],
    }


def read_trials(name: str) -> list[dict] | None:
    path = ROOT / "runs" / "bench" / name / "tune" / "trials.csv"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tpe_run(prefix: str, base: list[str], index: int, target: float) -> dict:
    """One TPE + Hyperband study (sampler seed 13 + index) until a trial reaches `target`."""
    rows = run_study(
        f"{prefix}_tpe{index}",
        [
            *base,
            "tune.sampler=tpe",
            "tune.pruner=hyperband",
            "tune.trials=16",
            "tune.startup_trials=4",
            f"tune.seed={13 + index}",
        ],
        stop_at=target,
    )
    done = [r for r in rows if r["state"] == "COMPLETE"]
    reached = [int(r["number"]) for r in done if float(r["value"]) >= target]
    first = min(reached, default=None)
    best = max(done, key=lambda r: float(r["value"]))
    return {
        "sampler_seed": 13 + index,
        "reached_target": first is not None,
        "trial_reaching_target": first,
        "compute_to_target": cumulative(rows, first),  # all trials run when never reached
        "best_validation_accuracy": float(best["value"]),
        "best_params": json.loads(best["params"]),
        "states": dict(Counter(r["state"] for r in rows if r["state"] != "WAITING")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 rows, 2 epochs")
    parser.add_argument("--seeds", type=int, default=3, help="TPE studies (sampler seeds)")
    parser.add_argument("--reuse-grid", action="store_true", help="read the last grid's trials")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    mode = "quick" if args.quick else "full"
    prefix = f"tune_vs_grid_{mode}"
    base = base_overrides(mode, ROOT / "runs" / "bench" / f"{prefix}_data")
    start = time.perf_counter()
    grid = (read_trials(f"{prefix}_grid") if args.reuse_grid else None) or run_study(
        f"{prefix}_grid", [*base, "tune.sampler=grid", "tune.pruner=none", "tune.trials=16"]
    )
    grid_best = max(float(r["value"]) for r in grid if r["state"] == "COMPLETE")
    target = grid_best - TOLERANCE
    grid_cost = cumulative(grid)
    runs = [tpe_run(prefix, base, i, target) for i in range(args.seeds)]
    for run in runs:
        run["fraction"] = {
            k: round(run["compute_to_target"][k] / grid_cost[k], 3)
            for k in ("samples", "steps", "seconds")
        }
    best = max(runs, key=lambda r: r["best_validation_accuracy"])
    from tunewise.studies.tune.space import overrides as as_overrides

    tested = {
        "tpe_best": test_accuracy(f"{prefix}_best", [*base, *as_overrides(best["best_params"])]),
        "default": test_accuracy(f"{prefix}_default", base),
    }
    tested["tpe_best"]["params"] = best["best_params"]
    tested["default"]["params"] = {
        "train.lr": 3e-4,
        "train.batch_size": 32,
        "train.weight_decay": 0.01,
    }
    fractions = sorted(r["fraction"]["samples"] for r in runs)
    result = {
        "bench": "tune_vs_grid",
        "mode": mode,
        "train_rows": SIZES[mode][0],
        "validation_rows": SIZES[mode][1],
        "epochs": SIZES[mode][2],
        "grid_best_validation_accuracy": grid_best,
        "target_validation_accuracy": round(target, 4),
        "compute_grid": grid_cost,
        "tpe_runs": runs,
        "tpe_reached_target": sum(r["reached_target"] for r in runs),
        "median_fraction_samples": statistics.median(fractions),
        "median_fraction_steps": statistics.median(r["fraction"]["steps"] for r in runs),
        "median_fraction_seconds": statistics.median(r["fraction"]["seconds"] for r in runs),
        "target_fraction": 0.25,
        "test_full_banking77": tested,
        "seconds_total": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, shared with other jobs",
    }
    out = ROOT / "bench" / "results" / ("tune_vs_grid.json" if mode == "full" else f"{prefix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
