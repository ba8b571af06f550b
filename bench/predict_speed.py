"""Batch prediction against `transformers.pipeline`, and evaluation memory against data size.

Both parts use one run trained for two steps (MiniLM-L6 with a 77-label head; speed and memory
are measured here, not accuracy).

Speed: BANKING77 test texts through that classifier, timed end to end (tokenising included) in
one process, interleaved: `tunewise evaluate`'s pass (`predict_top`: rows sorted by length,
batches of 128, bf16 autocast where the CPU has it), the predictor `tunewise serve` runs
(`TorchClassifier.predict`, fed micro-batches of 32, its largest, and of 8), each also in fp32
to separate bf16's effect, and `transformers.pipeline("text-classification")` on the same model
at its default batch size and at 32.

Memory: peak RSS of a fresh process that scores the test set repeated 1x, 4x and 16x (--quick:
1x and 4x), with glibc's mmap threshold fixed (see MMAP_THRESHOLD): `tunewise evaluate` itself
(it keeps the texts and a few numbers a row: `predict_top`), the streamed validation metrics
(`stream_texts`: texts read lazily, tokenised in chunks, only a confusion matrix kept), and,
for reference, encoding everything at once and keeping every row's logits (`predict_logits`),
as `evaluate` did before.

    .venv/bin/python bench/predict_speed.py --quick   # 1,000 texts for speed (a few minutes)
    .venv/bin/python bench/predict_speed.py           # all 3,080 test texts
    .venv/bin/python bench/predict_speed.py --memory-only --quick   # the memory part alone

Prints one JSON object as its last line and writes it to bench/results/predict_speed[_quick].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TEST = Path(os.environ.get("TUNEWISE_DATA_DIR", ROOT.parent / "shared" / "data")) / "banking77"
TEST_CSV = TEST / "test.csv"


def _labels() -> list[str]:
    with open(TEST_CSV, encoding="utf-8") as f:
        return sorted({row["category"] for row in csv.DictReader(f)})


def _rows(times: int = 1) -> Iterator[tuple[str, str]]:
    """The test file's (text, category) rows, `times` over, read lazily."""
    for _ in range(times):
        with open(TEST_CSV, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield row["text"], row["category"]


def _model():
    import torch
    from transformers.utils import logging

    from tunewise.models.load import load_classifier, load_tokenizer

    logging.set_verbosity_error()
    labels = _labels()
    torch.manual_seed(0)  # the same (untrained) head in every process
    return load_classifier("minilm-l6", labels), load_tokenizer("minilm-l6"), labels


def speed(run_dir: Path, n: int, repeats: int) -> dict:
    """Texts per second for each way of predicting, best of `repeats` interleaved rounds."""
    from transformers import pipeline

    from tunewise.evaluation.predict import predict_top
    from tunewise.serving.predictor import load_predictor

    served = load_predictor(run_dir)  # what `tunewise serve` runs, in the run's precision
    model, tok, bf16 = served.model, served.tokenizer, served.bf16
    texts = [t for t, _ in _rows()][:n]
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")

    def serve(micro_batch: int, use_bf16: bool) -> None:
        served.bf16 = use_bf16
        for i in range(0, len(texts), micro_batch):
            served.predict(texts[i : i + micro_batch])
        served.bf16 = bf16

    precision = "bf16" if bf16 else "fp32"
    ways = {
        f"evaluate_{precision}": lambda: predict_top(model, tok, texts, 64, 128, bf16),
        "evaluate_fp32": lambda: predict_top(model, tok, texts, 64, 128, False),
        f"serve_batch32_{precision}": lambda: serve(32, bf16),
        "serve_batch32_fp32": lambda: serve(32, False),
        f"serve_batch8_{precision}": lambda: serve(8, bf16),
        "pipeline_default": lambda: pipe(texts, truncation=True, max_length=64),
        "pipeline_batch32": lambda: pipe(texts, truncation=True, max_length=64, batch_size=32),
    }
    best = dict.fromkeys(ways, 0.0)
    for _ in range(repeats):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            best[name] = max(best[name], len(texts) / (time.perf_counter() - t0))
    return {k: round(v, 1) for k, v in best.items()}


def peak_rss_mb() -> float:
    """This process's peak RSS since it started: VmHWM, which exec resets. (getrusage's
    ru_maxrss is not reset by exec: a worker would report its parent's RSS at the fork.)"""
    with open("/proc/self/status", encoding="ascii") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1024


def make_run(folder: Path) -> Path:
    """A finished MiniLM-L6 run for `tunewise evaluate`: two steps of head training on 1,000
    rows (memory is measured here, not accuracy)."""
    from tunewise.pipeline import train

    cfg = {
        "name": "eval_memory",
        "output_dir": str(folder),
        "data": {
            "train": str(TEST / "train.csv"),
            "test": str(TEST_CSV),
            "label_col": "category",
            "max_rows": 1000,
        },
        "adapt": {"method": "head"},
        "train": {"max_steps": 2, "early_stopping": None},
        "eval": {"forgetting": []},
        "audit": {"label_noise": False},
        "track": {"backends": []},
    }
    return train(cfg)


def repeated_test(folder: Path, times: int) -> Path:
    """The test file with its rows `times` over (the header once)."""
    lines = TEST_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    out = folder / f"test_{times}x.csv"
    out.write_text(lines[0] + "".join(lines[1:]) * times, encoding="utf-8")
    return out


def rss_worker(mode: str, times: int, run_dir: Path | None, data: Path | None) -> dict:
    """Score the test set `times` over in this process; its peak RSS and accuracy."""
    import numpy as np

    from tunewise.data.encode import encode
    from tunewise.evaluation.metrics import classification_metrics
    from tunewise.evaluation.predict import predict_logits
    from tunewise.evaluation.stream import stream_texts

    if mode == "evaluate":
        from tunewise.pipeline import evaluate

        metrics = evaluate(run_dir, data)
        peak = peak_rss_mb()
        accuracy, n = metrics["tuned"]["accuracy"], metrics["test_size"]
        return {"mode": mode, "times": times, "rows": n, "accuracy": accuracy, "peak_rss_mb": peak}
    model, tok, labels = _model()
    ids = {name: i for i, name in enumerate(labels)}
    if mode == "streamed":
        scores = stream_texts(  # two lazy passes over the file: texts, and their label ids
            model,
            tok,
            (t for t, _ in _rows(times)),
            (ids[c] for _, c in _rows(times)),
            len(labels),
        )
        accuracy, n = scores["accuracy"], scores["rows"]
    else:
        rows = list(_rows(times))
        y = np.array([ids[c] for _, c in rows])
        logits, _ = predict_logits(model, encode(tok, [t for t, _ in rows], list(y), 64))
        accuracy = classification_metrics(y, logits.argmax(1), len(labels))["accuracy"]
        n = len(rows)
    peak = peak_rss_mb()
    return {"mode": mode, "times": times, "rows": n, "accuracy": accuracy, "peak_rss_mb": peak}


# glibc returns a freed block above this size to the OS at once. Its default threshold moves
# up after the first large free, so which freed activations stay mapped depends on the order of
# allocations, and one process's peak RSS moved by up to 130 MB between identical runs here;
# fixed, the same run gave the same peak to 0.5 MB, so the peak measures what was live.
MMAP_THRESHOLD = "131072"


def peak_rss(mode: str, times: int, run_dir: Path, data: Path) -> dict:
    """One fresh worker process: its rows and peak RSS."""
    cmd = [sys.executable, __file__, "--rss-worker", mode, "--times", str(times)]
    cmd += ["--run", str(run_dir), "--data", str(data)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(res.stdout.splitlines()[-1])


def memory(run_dir: Path, sizes: tuple[int, ...]) -> dict:
    """Peak RSS (MB) of each mode at each multiple of the test set, each in a fresh process."""
    out: dict = {"malloc_mmap_threshold": int(MMAP_THRESHOLD)}
    folder = run_dir.parent
    for mode in ("evaluate", "streamed", "all_logits"):
        for times in sizes:
            got = peak_rss(mode, times, run_dir, repeated_test(folder, times))
            out[f"{mode}_{times}x_mb"] = round(got["peak_rss_mb"], 1)
            out[f"{mode}_{times}x_rows"] = got["rows"]
        out[f"{mode}_growth_mb"] = round(out[f"{mode}_4x_mb"] - out[f"{mode}_1x_mb"], 1)
    return out


def ratios(texts_per_s: dict) -> dict:
    """Each tunewise path over the pipeline at its default and at its best batch size."""
    default = texts_per_s["pipeline_default"]
    best = max(v for k, v in texts_per_s.items() if k.startswith("pipeline"))
    out = {}
    for path in ("evaluate", "serve_batch32", "serve_batch8"):
        fastest = max(v for k, v in texts_per_s.items() if k.startswith(path))
        out[f"{path}_vs_pipeline_default"] = round(fastest / default, 2)
        out[f"{path}_vs_pipeline_best"] = round(fastest / best, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help="skip the speed rounds")
    args = parser.parse_args()
    if args.rss_worker:
        print(json.dumps(rss_worker(args.rss_worker, args.times, args.run, args.data)))
        return
    sizes = (1, 4) if args.quick else (1, 4, 16)
    n = 1000 if args.quick else 3080
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp))
        if args.memory_only:
            print(json.dumps({"eval_memory": memory(run_dir, sizes)}))
            return
        texts_per_s = speed(run_dir, n, 2 if args.quick else 3)
        result = {
            "texts": n,
            "texts_per_s": texts_per_s,
            **ratios(texts_per_s),
            "eval_memory": memory(run_dir, sizes),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    name = "predict_speed_quick" if args.quick else "predict_speed"
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
