"""Audit of all of BANKING77 (train 10,003 + test 3,080 rows): time and what it finds.

    .venv/bin/python bench/audit_banking77.py [--quick]

Runs the same audit as `tunewise audit train.csv --test test.csv --label-col category` with the
default config (MiniLM-L6 embeddings for the label-noise check), and reports the wall time and
the number of duplicates, near-duplicates, cross-split leaks and label-noise candidates; the first
20 candidates are listed for review. `--quick` audits a 2,000/600-row stratified sample. Prints
one JSON object as its last line and writes bench/results/audit_banking77.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tunewise.config import load_config
from tunewise.data.curate import run_audit
from tunewise.data.load import read_examples
from tunewise.data.split import stratified_sample

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT.parent / "shared" / "data" / "banking77"


def _count(findings, code: str, **match) -> int:
    return sum(
        f.evidence.get("count", 0)
        for f in findings
        if f.code == code and all(f.evidence.get(k) == v for k, v in match.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 train / 600 test rows")
    args = parser.parse_args()
    torch.set_num_threads(2)  # the target machine: 2 cores
    train, _ = read_examples(BANKING / "train.csv", "text", "category")
    test, _ = read_examples(BANKING / "test.csv", "text", "category")
    if args.quick:
        train, test = stratified_sample(train, 2000, 0), stratified_sample(test, 600, 0)
    cfg = load_config(
        {"data": {"train": str(BANKING / "train.csv")}, "audit": {"max_examples": 20}}
    )
    started = time.perf_counter()
    findings, summary = run_audit(cfg, train, test)
    seconds = time.perf_counter() - started
    noise = next((f for f in findings if f.code == "label-noise"), None)
    result = {
        "benchmark": "audit_banking77",
        "rows": {"train": len(train), "test": len(test)},
        "seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "duplicates": _count(findings, "duplicate"),
        "near_duplicate_rows": _count(findings, "near-duplicate"),
        "leaks_exact": _count(findings, "leakage", kind="exact"),
        "leaks_near": _count(findings, "leakage", kind="near"),
        "conflicting_label_rows": _count(findings, "conflicting-labels"),
        "label_noise_candidates": _count(findings, "label-noise"),
        "pii_rows": _count(findings, "pii"),
        "errors": sum(f.severity == "error" for f in findings),
        "findings": {f"{f.code}/{f.severity}": f.message for f in findings},
        "first_noise_candidates": [
            {k: e[k] for k in ("line", "text", "label", "suggested")}
            for e in (noise.evidence["examples"] if noise else [])
        ],
    }
    out = ROOT / "bench" / "results" / "audit_banking77.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
