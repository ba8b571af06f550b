"""Does training keep the start it was given? The recipe's first epoch(s), on validation only.

Each variant × regime × seed trains the recipe (configs/banking77.yaml plus the regime's data and
the variant's overrides) with the schedule of the whole run, and stops after `--epochs` epochs.
It records the starting point's validation accuracy (the probe head's, under LP-FT), validation
every `--eval-every` of an epoch, and the pre-clip gradient norm of every logged step: what
issue 20 asks of a stable recipe (no evaluation below the start; median norm ≤ 10 × the clip).

    python bench/first_epoch.py --quick                        # BANKING77, the recipe, 1 seed
    python bench/first_epoch.py --regimes b77_full,trec50_full --seeds 13,14 \\
        --variants recipe,recipe+train.lr=1e-4,recipe+train.warmup_ratio=0.2

Regimes are bench/recipe.py's (`b77_full`, `b77_10shot`, `trec_full`, ...) plus `trec50_full`
(TREC's 50 fine classes) and `oos50_full` (BANKING77-OOS's 50 in-scope intents with their own
validation file). Nothing is written to disk but the result: bench/results/first_epoch.json
(rows of earlier invocations kept, a new row replacing its old one) and one JSON line on stdout.
Heavy: run it under `flock /tmp/tunewise-heavy.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from recipe import (  # noqa: E402  (bench/recipe.py: regimes, variants, readers)
    CONFIG,
    DATA,
    regime_overrides,
    trec_rows,
    variant_overrides,
    write_result,
    write_rows,
)


class Stop(Exception):
    """Raised from the history callback once the screened epochs are evaluated."""


class Watch:
    """Collects validation evaluations and logged gradient norms; stops after `epochs`."""

    def __init__(self, epochs: float, steps_per_epoch: int, eval_every: int):
        self.last_step = round(epochs * steps_per_epoch) - eval_every // 2  # the nearest one
        self.evals, self.norms, self.losses = [], [], []

    def on_log(self, record: dict) -> None:
        if record["split"] == "train":
            self.norms.append(record["grad_norm"])
            self.losses.append(record["loss"])
            return
        self.evals.append({"epoch": record["epoch"], "accuracy": record["accuracy"]})
        if record["step"] >= self.last_step:
            raise Stop


def data_overrides(regime: str, seed: int, out: Path) -> list[str]:
    """bench/recipe.py's regimes, plus TREC's 50 fine classes and BANKING77-OOS in-scope."""
    out.mkdir(parents=True, exist_ok=True)
    if regime == "trec50_full":
        train = write_rows(out / "trec50_train.csv", trec_rows("train", fine=True))
        test = write_rows(out / "trec50_test.csv", trec_rows("test", fine=True))
        return [f"data.train={train}", f"data.test={test}", "data.label_col=category"]
    if regime == "oos50_full":
        files = {s: DATA / "banking77_oos" / f"{s}.csv" for s in ("train", "valid", "test")}
        return [
            f"data.train={files['train']}",
            f"data.validation={files['valid']}",
            f"data.test={files['test']}",
            "data.label_col=category",
        ]
    return regime_overrides(regime, seed, out)


def one(regime: str, variant: str, seed: int, args) -> dict:
    from tunewise import pipeline
    from tunewise.tasks import classification as task
    from tunewise.training import classifier

    overrides = [
        f"seed={seed}",
        "eval.forgetting=[]",
        "track.backends=[]",
        *data_overrides(regime, seed, args.out / "data"),
        *variant_overrides(variant),
    ]
    cfg = pipeline.configure(str(CONFIG), overrides)
    cfg, splits = task.prepare(cfg, task.load_data(cfg), None)
    step_rows = cfg.train.batch_size * cfg.train.grad_accum
    steps_per_epoch = -(-len(splits.train) // step_rows)
    cfg.train.eval_every = max(1, round(args.eval_every * steps_per_epoch))
    cfg.train.log_every = max(1, min(cfg.train.log_every, steps_per_epoch // 10))
    cfg.train.early_stopping = None  # the screened epochs run to their end
    watch, start = Watch(args.epochs, steps_per_epoch, cfg.train.eval_every), {}
    fit = classifier.fit

    def fit_from_start(model, data, evaluate, train_cfg, **kw):  # the start, scored as fit sees it
        start.update(evaluate(model))
        return fit(model, data, evaluate, train_cfg, **kw)

    began = time.perf_counter()
    classifier.fit = fit_from_start
    try:
        classifier.train_classifier(cfg, splits, callbacks=[watch])
    except Stop:
        pass
    finally:
        classifier.fit = fit
    clip = cfg.train.clip_grad_norm or float("inf")
    lowest = min(e["accuracy"] for e in watch.evals)
    return {
        "regime": regime,
        "variant": variant,
        "seed": seed,
        "start_accuracy": round(start["accuracy"], 4),
        "evals": watch.evals,
        "lowest_accuracy": lowest,
        "fall_below_start": round(max(0.0, start["accuracy"] - lowest), 4),
        "last_accuracy": watch.evals[-1]["accuracy"],
        "grad_norm_median": round(statistics.median(watch.norms), 2),
        "share_over_10x_clip": round(sum(n > 10 * clip for n in watch.norms) / len(watch.norms), 3),
        "loss_max": round(max(watch.losses), 3),
        "seconds": round(time.perf_counter() - began, 1),
    }


def summarise(rows: list[dict]) -> dict:
    """Mean ± sd over seeds, per regime and variant."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["regime"], r["variant"])].append(r)
    out: dict = defaultdict(dict)
    keys = ("start_accuracy", "lowest_accuracy", "fall_below_start", "last_accuracy")
    for (regime, variant), rs in groups.items():
        cell: dict = {"seeds": [r["seed"] for r in rs]}
        for key in (*keys, "grad_norm_median"):
            values = [r[key] for r in rs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cell[key] = {"mean": round(statistics.mean(values), 4), "sd": round(sd, 4)}
        out[regime][variant] = cell
    return dict(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="b77_full, recipe, seed 13, half an epoch")
    p.add_argument("--regimes", default="b77_full")
    p.add_argument("--variants", default="recipe")
    p.add_argument("--seeds", default="13")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs screened (of the full run)")
    p.add_argument("--eval-every", type=float, default=0.25, help="share of an epoch")
    p.add_argument("--out", type=Path, default=Path("/tmp/tunewise-first-epoch"))
    args = p.parse_args()
    if args.quick:
        args.regimes, args.variants, args.seeds, args.epochs = "b77_full", "recipe", "13", 0.5
    rows = []
    for regime in args.regimes.split(","):
        for seed in args.seeds.split(","):
            for variant in args.variants.split(","):
                rows.append(one(regime, variant, int(seed), args))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    write_result("first_epoch", args.quick, rows, summarise)


if __name__ == "__main__":
    main()
