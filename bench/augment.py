"""Augmentation benchmark: BANKING77 with 10 training rows per class, tuned with vs without EDA.

    .venv/bin/python bench/augment.py [--quick]

Same seeds for both arms (3 seeds): each run fine-tunes the embedded MiniLM-L6 with the default
recipe on 770 training rows (plus 2 rows per class held out as validation), with and without
`prepare.augment: {method: eda, per_example: 2}`, for the same number of optimisation steps (so
a gain is not just more updates), and is scored on the same test rows. Reports test accuracy
mean ± sd per arm. `--quick` uses 300 test rows and 60 steps instead of all 3,080 and 400.
Prints one JSON object as its last line and writes bench/results/augment.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

from tunewise.core.errors import BlockingFinding
from tunewise.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT.parent / "shared" / "data" / "banking77"
PER_CLASS = 12  # 10 to train on, 2 held out for validation (early stopping)


def _slice(out: Path, test_rows: int) -> tuple[Path, Path, Path]:
    """train (10/class), validation (2/class), test: seeded, the same for every run."""
    import random

    with open(BANKING / "train.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_class: dict[str, list] = {}
    for row in rows:
        by_class.setdefault(row["category"], []).append(row)
    rng = random.Random(0)
    train, val = [], []
    for items in by_class.values():
        picked = rng.sample(items, PER_CLASS)
        train += picked[:10]
        val += picked[10:]
    with open(BANKING / "test.csv", encoding="utf-8") as fh:
        test = list(csv.DictReader(fh))
    test = rng.sample(test, min(test_rows, len(test)))
    paths = []
    for name, part in (("train", train), ("validation", val), ("test", test)):
        path = out / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "category": r["category"]} for r in part)
        paths.append(path)
    return paths[0], paths[1], paths[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 test rows, 60 steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", default=["without", "with_eda"])
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunewise-augment-"))
    test_rows = 300 if args.quick else 3080
    train, val, test = _slice(tmp, test_rows)
    steps = 60 if args.quick else 400
    arms: dict[str, list[float]] = {arm: [] for arm in args.arms}
    for seed in args.seeds:
        for arm in arms:
            overrides = [
                f"data.train={train}",
                f"data.validation={val}",
                f"data.test={test}",
                f"output_dir={tmp / 'runs'}",
                f"name={arm}-{seed}",
                f"seed={seed}",
                f"train.max_steps={steps}",
                "train.early_stopping=null",
                "audit.label_noise=false",
                "eval.bootstrap=100",
            ]
            if arm == "with_eda":
                overrides.append(f"prepare.augment={{method: eda, per_example: 2, seed: {seed}}}")
            with contextlib.suppress(BlockingFinding):  # a doctor's verdict is data here
                run(ROOT / "configs" / "banking77.yaml", overrides)
            metrics = json.loads((tmp / "runs" / f"{arm}-{seed}" / "metrics.json").read_text())
            arms[arm].append(metrics["tuned"]["accuracy"])
            _write(_result(args, arms, steps, test_rows, started))  # partial results survive
    result = _result(args, arms, steps, test_rows, started)
    _write(result)
    print(json.dumps(result))


def _result(args, arms: dict, steps: int, test_rows: int, started: float) -> dict:
    return {
        "benchmark": "augment",
        "quick": args.quick,
        "train_rows_per_class": 10,
        "steps": steps,
        "test_rows": test_rows,
        "seeds": args.seeds,
        "accuracy": {
            arm: {
                "mean": round(statistics.mean(v), 4) if v else None,
                "sd": round(statistics.stdev(v), 4) if len(v) > 1 else None,
                "runs": v,
            }
            for arm, v in arms.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _write(result: dict) -> None:
    out = ROOT / "bench" / "results" / "augment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
