"""Batch prediction against `transformers.pipeline`, and evaluation memory against data size.

Speed: the BANKING77 test texts through the MiniLM-L6 classifier (77 labels), timed end to end
(tokenising included) in one process, interleaved: tunewise's `predict_logits` (rows sorted by
length, batches of 128, bf16 autocast where the CPU has it; also fp32 to separate the effects)
and `transformers.pipeline("text-classification")` at its default batch size and at 32.

Memory: peak RSS of a fresh process that scores the test set repeated 1x and 4x, once with the
streamed metrics (`stream_texts`: texts read lazily, tokenised in chunks, only a confusion
matrix kept) and once encoding everything and keeping every row's logits (`predict_logits`).

    .venv/bin/python bench/predict_speed.py --quick   # 1,000 texts for speed (a few minutes)
    .venv/bin/python bench/predict_speed.py           # all 3,080 test texts

Prints one JSON object as its last line and writes it to bench/results/predict_speed[_quick].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
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


def speed(n: int, repeats: int) -> dict:
    """Texts per second for each way of predicting, best of `repeats` interleaved rounds."""
    import torch
    from transformers import pipeline

    from tunewise.data.encode import encode
    from tunewise.evaluation.predict import predict_logits
    from tunewise.training.loop import bf16_supported

    model, tok, _ = _model()
    model.eval()
    texts = [t for t, _ in _rows()][:n]
    bf16 = bf16_supported(torch.device("cpu"))
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device="cpu")

    def tunewise_predict(use_bf16: bool):
        return predict_logits(model, encode(tok, texts, None, 64), 128, use_bf16)

    ways = {
        "tunewise_sorted_bf16" if bf16 else "tunewise_sorted": lambda: tunewise_predict(bf16),
        "tunewise_sorted_fp32": lambda: tunewise_predict(False),
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


def rss_worker(mode: str, times: int) -> dict:
    """Score the test set `times` over in this process; its peak RSS and accuracy."""
    import numpy as np

    from tunewise.data.encode import encode
    from tunewise.evaluation.metrics import classification_metrics
    from tunewise.evaluation.predict import predict_logits
    from tunewise.evaluation.stream import stream_texts

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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "times": times, "rows": n, "accuracy": accuracy, "peak_rss_mb": peak}


def memory() -> dict:
    out = {}
    for mode in ("streamed", "all_logits"):
        for times in (1, 4):
            cmd = [sys.executable, __file__, "--rss-worker", mode, "--times", str(times)]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            out[f"{mode}_{times}x_mb"] = round(
                json.loads(res.stdout.splitlines()[-1])["peak_rss_mb"], 1
            )
    out["streamed_growth_mb"] = round(out["streamed_4x_mb"] - out["streamed_1x_mb"], 1)
    out["all_logits_growth_mb"] = round(out["all_logits_4x_mb"] - out["all_logits_1x_mb"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        print(json.dumps(rss_worker(args.rss_worker, args.times)))
        return
    texts_per_s = speed(1000 if args.quick else 3080, 2 if args.quick else 3)
    best_tunewise = max(v for k, v in texts_per_s.items() if k.startswith("tunewise"))
    best_pipeline = max(v for k, v in texts_per_s.items() if k.startswith("pipeline"))
    result = {
        "texts": 1000 if args.quick else 3080,
        "texts_per_s": texts_per_s,
        "speedup_vs_pipeline_default": round(best_tunewise / texts_per_s["pipeline_default"], 2),
        "speedup_vs_pipeline_best": round(best_tunewise / best_pipeline, 2),
        "eval_memory": memory(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    name = "predict_speed_quick" if args.quick else "predict_speed"
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
