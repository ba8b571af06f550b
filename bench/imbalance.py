"""Losses on long-tailed data: cross-entropy, weighted cross-entropy and focal; macro-F1 by seed.

The training set is a long-tailed BANKING77 subsample: classes in a seeded random order keep
from 100 down to 5 examples each (geometric decay, about 2,400 rows); the test set is the full,
balanced BANKING77 test set, so macro-F1 weighs every intent equally. Each loss trains with the
same config and split for each seed; the result is the mean ± sd of test macro-F1 and accuracy.

    .venv/bin/python bench/imbalance.py            # 3 seeds x 3 losses, 5 epochs: ~40 min, 2 cores
    .venv/bin/python bench/imbalance.py --quick    # 3 seeds x 3 losses, 2 epochs, 770 test rows

Prints one JSON object as its last line and writes it to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LOSSES = ("cross_entropy", "weighted_cross_entropy", "focal")
SUBSAMPLE_SEED = 0
MOST, FEWEST = 100, 5


def long_tail(rows: list[list[str]], seed: int = SUBSAMPLE_SEED) -> list[list[str]]:
    """Keep MOST rows of the first class down to FEWEST of the last, classes in seeded order."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[list[str]]] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    classes = [sorted(by_class)[i] for i in rng.permutation(len(by_class))]
    keep = []
    for k, label in enumerate(classes):
        n = round(MOST * (FEWEST / MOST) ** (k / (len(classes) - 1)))
        pool = by_class[label]
        keep += [pool[i] for i in sorted(rng.choice(len(pool), min(n, len(pool)), replace=False))]
    return keep


def balanced_sample(rows: list[list[str]], per_class: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[list[str]]] = {}
    for row in rows:
        by_class.setdefault(row[1], []).append(row)
    return [
        r
        for label in sorted(by_class)
        for r in [by_class[label][i] for i in rng.permutation(len(by_class[label]))[:per_class]]
    ]


def _write(path: Path, rows: list[list[str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "category"], *rows])
    return str(path)


def _read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


def one_run(train: str, test: str, loss: str, seed: int, epochs: int, out: Path) -> dict:
    """Train with `loss` and `seed`, evaluate on the test file; macro-F1, accuracy, seconds."""
    from tunewise import pipeline

    overrides = [
        f"data.train={train}",
        f"data.test={test}",
        f"train.loss={loss}",
        f"seed={seed}",
        f"train.epochs={epochs}",
        f"name={loss}-{seed}",
        f"output_dir={out}",
        "eval.forgetting=[]",
        "eval.bootstrap=0",
    ]
    run_dir = pipeline.train(ROOT / "configs" / "banking77.yaml", overrides)
    metrics = pipeline.evaluate(run_dir)
    return {
        "loss": loss,
        "seed": seed,
        "macro_f1": metrics["tuned"]["macro_f1"],
        "accuracy": metrics["tuned"]["accuracy"],
        "seconds": metrics["training"]["seconds"],
    }


def summarise(runs: list[dict]) -> dict:
    """mean ± sd per loss over seeds."""
    table = {}
    for loss in LOSSES:
        mine = [r for r in runs if r["loss"] == loss]
        table[loss] = {
            key: {
                "mean": round(statistics.mean(r[key] for r in mine), 4),
                "sd": round(statistics.stdev(r[key] for r in mine), 4) if len(mine) > 1 else 0.0,
            }
            for key in ("macro_f1", "accuracy")
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 770 test rows")
    parser.add_argument("--seeds", default="13,14,15")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    from tunewise.data.sources import data_dir

    transformers.logging.set_verbosity_error()
    name = "imbalance_quick" if args.quick else "imbalance"
    out = ROOT / "runs" / "bench" / name
    out.mkdir(parents=True, exist_ok=True)
    source = data_dir() / "banking77"
    train_rows = long_tail(_read(source / "train.csv"))
    test_rows = _read(source / "test.csv")
    test_rows = balanced_sample(test_rows, 10) if args.quick else test_rows
    train, test = _write(out / "train.csv", train_rows), _write(out / "test.csv", test_rows)
    epochs = 2 if args.quick else 5
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [one_run(train, test, loss, s, epochs, out) for s in seeds for loss in LOSSES]
    counts = sorted(sum(r[1] == c for r in train_rows) for c in {r[1] for r in train_rows})
    result = {
        "name": name,
        "quick": args.quick,
        "train_rows": len(train_rows),
        "per_class": {"max": counts[-1], "min": counts[0], "median": counts[len(counts) // 2]},
        "test_rows": len(test_rows),
        "epochs": epochs,
        "seeds": seeds,
        "summary": summarise(runs),
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
