"""Which recipe ingredients pay, measured: each variant × regime × seed, mean ± sd over seeds.

Ingredients are chosen on validation rows only (BANKING77's training file split into train and
validation); test accuracy is read only with `--test`, for the recipe already chosen.

    python bench/recipe.py --quick                 # 10-shot BANKING77, plain vs LP-FT, 1 seed
    python bench/recipe.py --regimes b77_10shot --variants plain,lpft,lpft_llrd --seeds 13,14
    python bench/recipe.py --regimes b77_full --variants recipe --seeds 13 --test
    python bench/recipe.py --regimes b77_10shot --variants ablation --test  # less one each

Regimes: `b77_10shot` (10 training rows per intent, 10 other rows per intent for validation),
`b77_full` (the demo's 90/10 split of the training file), `trec_10shot` and `trec_full` (TREC's
6 coarse question types, a data set the recipe was not chosen on). Run directories go under
`--out` and are reused when their training.json exists (`--fresh` retrains). A variant may add
overrides after `+`: `--variants lpft_wise,lpft_wise+train.lr=1e-4`. Heavy: run it under
`flock /tmp/tunewise-heavy.lock` on a shared machine. Prints one JSON object as its last line and
writes it to bench/results/recipe.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "configs" / "banking77.yaml"

# each variant: overrides on top of configs/banking77.yaml (after the regime's own)
VARIANTS = {
    "plain": ["adapt.head_init=random", "train.average_last=3"],
    "lpft": ["adapt.head_init=linear_probe", "train.average_last=3"],
    "lpft_llrd": [
        "adapt.head_init=linear_probe",
        "adapt.layer_lr_decay=0.8",
        "train.average_last=3",
    ],
    "lpft_wise": [
        "adapt.head_init=linear_probe",
        "train.average_last=3",
        "train.interpolate_start=true",
    ],
    "lpft_freeze3_wise": [
        "adapt.head_init=linear_probe",
        "adapt.method=freeze",
        "adapt.freeze_layers=3",
        "train.average_last=3",
        "train.interpolate_start=true",
    ],
    "recipe": [],  # configs/banking77.yaml exactly as `make demo` runs it
    "foundation": [  # the plain recipe of the foundation issue: [CLS] head, nothing added
        "model.pooling=cls",
        "adapt.method=full",
        "adapt.head_init=random",
        "train.average_last=null",
        "train.interpolate_start=false",
        "train.rdrop=0",
    ],
    # ablations: the recipe less one ingredient each (`--variants ablation` runs them all)
    "minus_meanpool": ["model.pooling=cls"],
    "minus_lpft": ["adapt.head_init=random"],
    "minus_freeze": ["adapt.method=full"],
    "minus_average": ["train.average_last=null"],
    "minus_wise": ["train.interpolate_start=false"],
    "minus_rdrop": ["train.rdrop=0"],
}
ABLATION = ["recipe", *(name for name in VARIANTS if name.startswith("minus_"))]
FEW_SHOT_EPOCHS = ["train.epochs=10", "train.early_stopping.patience=10"]


def write_rows(path: Path, rows: list[dict[str, str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(rows)
    return str(path)


def banking_rows(split: str) -> list[dict[str, str]]:
    with open(DATA / "banking77" / f"{split}.csv", encoding="utf-8") as f:
        return [{"text": r["text"], "category": r["category"]} for r in csv.DictReader(f)]


def trec_rows(split: str, fine: bool = False) -> list[dict[str, str]]:
    """TREC's `COARSE:fine question` lines as text/category rows: the 6 coarse types, or with
    `fine` the whole `COARSE:fine` label (50 classes, 4 to 962 training rows each)."""
    lines = (DATA / "trec" / f"{split}.txt").read_text(encoding="latin-1").splitlines()
    out = []
    for line in lines:
        label, _, text = line.partition(" ")
        out.append({"text": text.strip(), "category": label if fine else label.split(":")[0]})
    return out


def k_shot(rows: list[dict[str, str]], k: int, seed: int) -> tuple[list, list]:
    """k rows per class for training and k other rows per class for validation (seeded).

    A class with n < 2k rows keeps min(n, k) for training and the n - k left (if any) for
    validation, so a class of k rows or fewer trains on all of them and validates on none.
    """
    by: dict[str, list] = defaultdict(list)
    for r in rows:
        by[r["category"]].append(r)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by):
        picked = by[label][:]
        rng.shuffle(picked)
        train += picked[:k]
        val += picked[k : 2 * k]
    return train, val


def regime_overrides(regime: str, seed: int, out: Path) -> list[str]:
    """Data overrides of one regime; writes the few-shot files it needs under `out`."""
    dataset, shots = regime.split("_")
    read = banking_rows if dataset == "b77" else trec_rows
    test = DATA / "banking77" / "test.csv" if dataset == "b77" else None
    out.mkdir(parents=True, exist_ok=True)
    if test is None:
        test = Path(write_rows(out / "trec_test.csv", trec_rows("test")))
    data = [f"data.test={test}", "data.label_col=category"]
    if shots == "full":
        train = DATA / "banking77" / "train.csv" if dataset == "b77" else None
        if train is None:
            train = Path(write_rows(out / "trec_train.csv", read("train")))
        return [*data, f"data.train={train}", "data.validation=null"]
    tr, va = k_shot(read("train"), int(shots.removesuffix("shot")), seed)
    names = [
        write_rows(out / f"{regime}_s{seed}_{s}.csv", r) for s, r in (("train", tr), ("val", va))
    ]
    return [*data, f"data.train={names[0]}", f"data.validation={names[1]}", *FEW_SHOT_EPOCHS]


def validation_scores(run_dir: Path) -> dict[str, float | None]:
    """Validation accuracy of the early-stopped model and of the weight average, from the run."""
    summary = json.loads((run_dir / "training.json").read_text())
    best = summary["training"]["best_step"]
    evals = [
        json.loads(line)
        for line in (run_dir / "history.jsonl").read_text().splitlines()
        if '"validation"' in line
    ]
    at_best = [e for e in evals if e["step"] == best] or evals[-1:]
    avg = summary.get("averaging") or {}
    mix = summary.get("interpolation") or {}
    return {
        "alpha": mix.get("alpha"),
        "val_accuracy_interpolated": (mix.get("chosen") or {}).get("accuracy")
        if mix.get("alpha", 1.0) < 1.0
        else None,  # 1.0: the trained (or averaged) model was kept
        "val_accuracy": at_best[-1]["accuracy"],
        "val_accuracy_averaged": (avg.get("averaged") or {}).get("accuracy"),
        "average_kept": avg.get("kept"),
        "train_seconds": summary["training"]["seconds"],
    }


def variant_overrides(variant: str) -> list[str]:
    """A named variant, optionally with `+key=value` overrides: `lpft_wise+train.lr=1e-4`."""
    name, *extra = variant.split("+")
    return [*VARIANTS[name], *extra]


def one(regime: str, variant: str, seed: int, args) -> dict:
    import tunewise

    name = f"{regime}-{variant}-s{seed}".replace("+", "~").replace("=", "")
    run_dir = args.out / "runs" / name
    overrides = [
        f"name={name}",
        f"output_dir={args.out / 'runs'}",
        f"seed={seed}",
        "eval.forgetting=[]",
        "track.backends=[]",
        *regime_overrides(regime, seed, args.out / "data"),
        *variant_overrides(variant),
    ]
    if args.fresh or not (run_dir / "training.json").exists():
        tunewise.train(str(CONFIG), overrides)
    row = {"regime": regime, "variant": variant, "seed": seed, **validation_scores(run_dir)}
    if args.test:
        metrics = tunewise.evaluate(run_dir)
        row["test_accuracy"] = metrics["tuned"]["accuracy"]
        row["test_macro_f1"] = metrics["tuned"]["macro_f1"]
    return row


def summarise(rows: list[dict]) -> dict:
    """Mean ± sd over seeds of every score, per regime and variant."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["regime"], r["variant"])].append(r)
    out: dict = defaultdict(dict)
    for (regime, variant), rs in groups.items():
        cell: dict = {"seeds": [r["seed"] for r in rs]}
        keys = ("val_accuracy", "val_accuracy_averaged", "val_accuracy_interpolated", "alpha")
        for key in (*keys, "test_accuracy", "train_seconds"):
            values = [r[key] for r in rs if r.get(key) is not None]
            if values:
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cell[key] = {"mean": round(statistics.mean(values), 4), "sd": round(sd, 4)}
        out[regime][variant] = cell
    return dict(out)


def merged(path: Path, rows: list[dict]) -> list[dict]:
    """Rows of earlier invocations (batches that each fit one turn of the heavy lock) plus these;
    a new row replaces an old one of the same regime, variant and seed."""
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    key = lambda r: (r["regime"], r["variant"], r["seed"])  # noqa: E731
    new = {key(r) for r in rows}
    return [r for r in old if key(r) not in new] + rows


def write_result(bench: str, quick: bool, rows: list[dict], summarise) -> None:
    """Merge `rows` into bench/results/BENCH[_quick].json with `summarise(rows)`; print it."""
    out = ROOT / "bench" / "results" / f"{bench}{'_quick' if quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    rows = merged(out, rows)
    result = {"bench": bench, "quick": quick, "rows": rows, "summary": summarise(rows)}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10-shot BANKING77, plain vs lpft, 1 seed")
    p.add_argument("--regimes", default="b77_10shot")
    p.add_argument("--variants", default="plain,lpft,lpft_llrd")
    p.add_argument("--seeds", default="13,14,15")
    p.add_argument("--test", action="store_true", help="also score on test (chosen recipe only)")
    p.add_argument("--fresh", action="store_true", help="retrain even when a run exists")
    p.add_argument("--out", type=Path, default=Path("/tmp/tunewise-recipe"))
    args = p.parse_args()
    if args.quick:
        args.regimes, args.variants, args.seeds = "b77_10shot", "plain,lpft", "13"
    variants = args.variants.replace("ablation", ",".join(ABLATION)).split(",")
    rows = [
        one(regime, variant, int(seed), args)
        for regime in args.regimes.split(",")
        for seed in args.seeds.split(",")  # seed-major: a cut-short batch still pairs variants
        for variant in variants
    ]
    write_result("recipe", args.quick, rows, summarise)


if __name__ == "__main__":
    main()
