"""Adaptation methods on BANKING77 with the default model: full, head, freeze, bitfit, lora.

Every method trains on the same split and seed and is scored on the same test rows; the table
holds accuracy, macro-F1, trainable parameters, train seconds and peak memory (process RSS on
CPU). Learning rates differ per method because a frozen encoder needs a larger step (chosen a
priori from the papers' ranges, not tuned here): full 3e-4, freeze 3e-4 (first 3 of 6 layers),
bitfit 3e-3, head 1e-2, lora 1e-3 (r 8, alpha 16).

    .venv/bin/python bench/compare_methods.py          # full data, 7 epochs: ~25 min on 2 cores
    .venv/bin/python bench/compare_methods.py --quick  # 2,000 rows, 2 epochs: minutes

Prints one JSON object as its last line and writes it to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

METHOD_OVERRIDES = {
    "full": ["full:train.lr=3e-4"],
    "freeze": ["freeze:train.lr=3e-4", "freeze:adapt.freeze_layers=3"],
    "bitfit": ["bitfit:train.lr=3e-3"],
    "head": ["head:train.lr=1e-2"],
    "lora": ["lora:train.lr=1e-3"],
}
QUICK = ["data.max_rows=2000", "train.epochs=2", "eval.bootstrap=200"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 2 epochs")
    parser.add_argument("--methods", default="full,head,freeze,bitfit,lora")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    from tunewise.studies.compare import compare_methods

    transformers.logging.set_verbosity_error()
    methods = args.methods.split(",")
    name = "compare_methods_quick" if args.quick else "compare_methods"
    if set(methods) != set(METHOD_OVERRIDES):  # a partial run keeps its own results file
        name += "_" + "_".join(methods)
    overrides = [f"name={name}", "output_dir=runs/bench", "eval.forgetting=[]"]
    overrides += QUICK if args.quick else []
    overrides += [o for m in methods for o in METHOD_OVERRIDES[m]]
    start = time.perf_counter()
    doc = compare_methods(ROOT / "configs" / "banking77.yaml", methods, overrides)
    keep = (
        "method",
        "accuracy",
        "macro_f1",
        "trainable_parameters",
        "trainable_percent",
        "train_seconds",
        "peak_memory_mb",
        "lr",
        "steps",
        "ci95_vs_baseline",
    )
    result = {
        "name": name,
        "quick": args.quick,
        "overrides": overrides,
        "test_size": doc["test_size"],
        "baselines": doc["baselines"],
        "methods": [{k: r[k] for k in keep} for r in doc["methods"]],
        "machine": doc["machine"],
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
