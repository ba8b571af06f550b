"""Few labels: tunewise's default recipe beside SetFit, same encoder, rows, test set and machine.

    python bench/fewshot_vs_setfit.py --quick      # k=5, one seed, both data sets, SetFit capped
    python bench/fewshot_vs_setfit.py              # k = 5, 10, 20 x 5 seeds x 2 data sets
    python bench/fewshot_vs_setfit.py --datasets b77 --ks 10 --seeds 13,14   # one piece of it

Both tools start from the same MiniLM-L6 body (`minilm-l6`, the embedded all-MiniLM-L6-v2) and
train on the same k rows per class (bench/recipe.py's `k_shot`, seeded); both are scored on the
full test set (BANKING77: 3,080 rows, 77 intents; TREC fine-grained: 500 rows, 50 `COARSE:fine`
classes with 4 to 962 training rows each, 42 of them in test). A TREC class with fewer than k
rows trains on all it has (and one with fewer than 2k has fewer or no validation rows).

- `tunewise`: `tunewise.train(configs/banking77.yaml)` + `tunewise.evaluate`, with the few-shot
  settings bench/recipe.py uses for its k-shot regimes (10 epochs, early-stopping patience 10),
  and nothing tuned on test. With k ≤ 30 its default recipe runs the contrastive stage
  (`train.contrastive`), which makes as many pairs as `setfit_iter20`. It chooses (early
  stopping, weight averaging, WiSE-FT's mix) on k other rows per class from the training file:
  it sees 2k labelled rows a class, SetFit k.
- `setfit`: SetFit 1.2.0's documented defaults (`TrainingArguments()`: contrastive pairs by
  "oversampling", CosineSimilarityLoss, 1 epoch of batch 16 at lr 2e-5, then a scikit-learn
  LogisticRegression head on the tuned embeddings). Its pair count grows with the square of the
  training rows (146k pairs at 385 rows, 2.4M at 1,540), so it is by far the slowest piece.
- `setfit_iter20`: the same with `num_iterations=20` (40 pairs a training row), the setting of
  the SetFit paper and of SetFit before 1.0. tunewise's default recipe does not search its
  hyperparameters, so neither does SetFit here.
Logging and checkpoint saving are off for SetFit (`report_to="none"`, `save_strategy="no"`);
every learning setting is its default. Both train in fp32 where the CPU has no bf16 (tunewise's
`precision: auto`; SetFit has no autocast on CPU).

Every (tool, data set, k, seed) is one fresh subprocess (its own peak RSS: VmHWM read right after
training, glibc's mmap threshold fixed as in bench/predict_speed.py) whose result is cached under
`--out/pieces/`; a later invocation reuses it (`--fresh` reruns), so the full grid can be run in
pieces (`--max-pieces N` stops after N new pieces). Pieces run interleaved: for each seed, data
set and k, every tool in turn. Training seconds cover loading the model, preparing the rows and
training (LP-FT, averaging and WiSE-FT included for tunewise; the pairs and the head for SetFit);
not evaluation. `--quick` caps SetFit at 200 contrastive steps (a reduced SetFit, not its
defaults). Prints one JSON object as its last line and writes it to
bench/results/fewshot_vs_setfit[_quick].json, with `accuracy_delta_vs_setfit` (tunewise - SetFit
defaults, mean test accuracy over the seeds both have) and `time_ratio_vs_setfit` (tunewise's
mean training seconds / SetFit's) per data set and k, and the same against `setfit_iter20`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from recipe import (  # noqa: E402  (bench/recipe.py: the shared k-shot split and readers)
    CONFIG,
    DATA,
    FEW_SHOT_EPOCHS,
    banking_rows,
    k_shot,
    trec_rows,
    write_rows,
)

TOOLS = ("tunewise", "setfit", "setfit_iter20")
SETFIT_VARIANTS: dict[str, dict] = {"setfit": {}, "setfit_iter20": {"num_iterations": 20}}
DATASETS = ("b77", "trec50")
QUICK_SETFIT_STEPS = 200
MMAP_THRESHOLD = "131072"  # as bench/predict_speed.py: a peak RSS that repeats to 0.5 MB


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM, reset by exec, unlike getrusage's ru_maxrss)."""
    with open("/proc/self/status", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kb / 1024, 1)


def rows_of(dataset: str, split: str) -> list[dict[str, str]]:
    return banking_rows(split) if dataset == "b77" else trec_rows(split, fine=True)


def split_files(dataset: str, k: int, seed: int, folder: Path) -> dict[str, Path]:
    """The k-shot train/validation files and the full test file, as CSV (text, category)."""
    folder.mkdir(parents=True, exist_ok=True)
    train, val = k_shot(rows_of(dataset, "train"), k, seed)
    test = DATA / "banking77" / "test.csv"
    if dataset != "b77":
        test = Path(write_rows(folder / f"{dataset}_test.csv", rows_of(dataset, "test")))
    stem = f"{dataset}_k{k}_s{seed}"
    return {
        "train": Path(write_rows(folder / f"{stem}_train.csv", train)),
        "validation": Path(write_rows(folder / f"{stem}_val.csv", val)),
        "test": test,
    }


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def run_tunewise(files: dict[str, Path], seed: int, name: str, out: Path) -> dict:
    import tunewise
    import tunewise.pipeline  # noqa: F401  (imports outside the timed part, as for SetFit)

    overrides = [
        f"name={name}",
        f"output_dir={out}",
        f"seed={seed}",
        "eval.forgetting=[]",
        "track.backends=[]",
        f"data.train={files['train']}",
        f"data.validation={files['validation']}",
        f"data.test={files['test']}",
        "data.label_col=category",
        *FEW_SHOT_EPOCHS,
    ]
    started = time.perf_counter()
    run_dir = tunewise.train(str(CONFIG), overrides)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    metrics = tunewise.evaluate(run_dir)
    training = json.loads((Path(run_dir) / "training.json").read_text())
    return {
        "train_seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "accuracy": metrics["tuned"]["accuracy"],
        "macro_f1": metrics["tuned"]["macro_f1"],
        "test_rows": metrics["test_size"],
        "steps": training["training"]["steps"],
        "precision": training["training"]["precision"],
        "overrides": overrides,
    }


def run_setfit(files: dict[str, Path], seed: int, variant: dict, out: Path) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tunewise.evaluation.metrics import classification_metrics
    from tunewise.models.load import resolve_model

    texts, labels = read_csv(files["train"])
    started = time.perf_counter()
    model = SetFitModel.from_pretrained(resolve_model("minilm-l6"))
    args = TrainingArguments(
        output_dir=str(out), seed=seed, save_strategy="no", report_to="none", **variant
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels})
    )
    trainer.train()
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    test_texts, test_labels = read_csv(files["test"])
    pred = [str(p) for p in model.predict(test_texts)]
    names = sorted(set(labels))  # the classes trained on; TREC's test holds no other
    ids = {n: i for i, n in enumerate(names)}
    m = classification_metrics(
        [ids[y] for y in test_labels], [ids[p] for p in pred], len(names)
    )  # tunewise's metric code: macro-F1 counts every trained class, as tunewise evaluate does
    return {
        "train_seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "test_rows": len(test_texts),
        "steps": trainer.state.global_step if hasattr(trainer, "state") else None,
        "setfit_args": {k: str(v) for k, v in variant.items()},
    }


def worker(tool: str, dataset: str, k: int, seed: int, args) -> None:
    """One piece in this fresh process; its result JSON goes to `args.result`."""
    import torch

    torch.set_num_threads(args.threads)
    files = split_files(dataset, k, seed, args.out / "data")
    name = f"{tool}-{dataset}-k{k}-s{seed}{'-quick' if args.quick else ''}"
    if tool == "tunewise":
        row = run_tunewise(files, seed, name, args.out / "runs")
    else:
        variant = dict(SETFIT_VARIANTS[tool])
        if args.quick:
            variant["max_steps"] = QUICK_SETFIT_STEPS
        row = run_setfit(files, seed, variant, args.out / "runs" / name)
    n_train = len(read_csv(files["train"])[0])
    row = {"tool": tool, "dataset": dataset, "k": k, "seed": seed, "train_rows": n_train, **row}
    Path(args.result).write_text(json.dumps(row, indent=1))


def piece(tool: str, dataset: str, k: int, seed: int, args) -> tuple[dict, bool]:
    """A cached piece, or a fresh worker process for it; (row, ran)."""
    tag = "-quick" if args.quick else ""
    result = args.out / "pieces" / f"{tool}-{dataset}-k{k}-s{seed}{tag}.json"
    if result.exists() and not args.fresh:
        return json.loads(result.read_text()), False
    result.parent.mkdir(parents=True, exist_ok=True)
    log = args.out / "logs" / f"{result.stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--worker", tool, dataset, str(k), str(seed)]
    cmd += ["--result", str(result), "--out", str(args.out), "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    threads = str(args.threads)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "OMP_NUM_THREADS": threads}
    env.setdefault("TUNEWISE_DATA_DIR", str(DATA))
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{result.stem} failed (exit {done.returncode}); see {log}")
    return json.loads(result.read_text()), True


def mean_sd(values: list[float], digits: int = 4) -> dict:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), digits), "sd": round(sd, digits)}


def summarise(rows: list[dict]) -> dict:
    """Per data set, k and tool: accuracy, macro-F1, training seconds, peak RSS over seeds."""
    out: dict = {}
    for r in rows:
        cell = out.setdefault(r["dataset"], {}).setdefault(str(r["k"]), {})
        cell.setdefault(r["tool"], []).append(r)
    for ks in out.values():
        for k, tools in ks.items():
            ks[k] = {
                tool: {
                    "seeds": [r["seed"] for r in rs],
                    "train_rows": rs[0]["train_rows"],
                    "accuracy": mean_sd([r["accuracy"] for r in rs]),
                    "macro_f1": mean_sd([r["macro_f1"] for r in rs]),
                    "train_seconds": mean_sd([r["train_seconds"] for r in rs], 1),
                    "peak_rss_mb": mean_sd([r["peak_rss_mb"] for r in rs], 1),
                }
                for tool, rs in sorted(tools.items())
            }
    return out


def against(rows: list[dict], peer: str) -> tuple[dict, dict]:
    """tunewise - peer mean accuracy and tunewise / peer mean training seconds, per data set
    and k, over the seeds both ran (paired)."""
    by = {(r["tool"], r["dataset"], r["k"], r["seed"]): r for r in rows}
    delta: dict = {}
    ratio: dict = {}
    for (tool, dataset, k, seed), r in sorted(by.items()):
        if tool != "tunewise" or (peer, dataset, k, seed) not in by:
            continue
        p = by[(peer, dataset, k, seed)]
        delta.setdefault(dataset, {}).setdefault(str(k), []).append(r["accuracy"] - p["accuracy"])
        ratio.setdefault(dataset, {}).setdefault(str(k), []).append(
            (r["train_seconds"], p["train_seconds"])
        )
    for dataset, ks in delta.items():
        for k in ks:
            ks[k] = round(statistics.mean(ks[k]), 4)
            pairs = ratio[dataset][k]
            ratio[dataset][k] = round(
                statistics.mean(a for a, _ in pairs) / statistics.mean(b for _, b in pairs), 3
            )
    return delta, ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="k=5, seed 13, SetFit capped at 200 steps")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--ks", default="5,10,20")
    p.add_argument("--seeds", default="13,14,15,16,17")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--threads", type=int, default=2, help="torch threads per piece")
    p.add_argument("--out", type=Path, default=Path("/tmp/tunewise-fewshot"))
    p.add_argument("--fresh", action="store_true", help="rerun pieces that are cached")
    p.add_argument("--max-pieces", type=int, default=None, help="stop after N new pieces")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        tool, dataset, k, seed = args.worker
        worker(tool, dataset, int(k), int(seed), args)
        return
    if args.quick:
        args.ks, args.seeds, args.tools = "5", "13", "tunewise,setfit"
    grid = [
        (tool, dataset, int(k), int(seed))
        for seed in args.seeds.split(",")  # seed-major: a cut-short invocation still pairs tools
        for dataset in args.datasets.split(",")
        for k in args.ks.split(",")
        for tool in args.tools.split(",")
    ]
    rows, ran = [], 0
    for i, (tool, dataset, k, seed) in enumerate(grid, 1):
        if args.max_pieces is not None and ran >= args.max_pieces:
            print(f"[{i}/{len(grid)}] stopping: --max-pieces {args.max_pieces} reached", flush=True)
            break
        started = time.perf_counter()
        row, new = piece(tool, dataset, k, seed, args)
        ran += new
        rows.append(row)
        print(
            f"[{i}/{len(grid)}] {tool} {dataset} k={k} seed {seed}: accuracy {row['accuracy']:.4f}"
            f", macro-F1 {row['macro_f1']:.4f}, train {row['train_seconds']:.0f} s, peak RSS "
            f"{row['peak_rss_mb']:.0f} MB"
            + (f" ({time.perf_counter() - started:.0f} s)" if new else " (cached)"),
            flush=True,
        )
    result = {
        "bench": "fewshot_vs_setfit",
        "quick": args.quick,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {args.threads}, load average {os.getloadavg()[0]:.1f} at the end",
        "grid": dict(datasets=args.datasets, ks=args.ks, seeds=args.seeds, tools=args.tools),
        "complete": len(rows) == len(grid),
        "summary": summarise(rows),
        "rows": rows,
    }
    for peer, suffix in (("setfit", ""), ("setfit_iter20", "_iter20")):
        delta, ratio = against(rows, peer)
        result[f"accuracy_delta_vs_setfit{suffix}"] = delta
        result[f"time_ratio_vs_setfit{suffix}"] = ratio
    out = ROOT / "bench" / "results" / f"fewshot_vs_setfit{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
