"""CuCom customer-support SFT of SmolLM2-135M-Instruct on 2 CPU cores: speed, quality, forgetting,
memorisation.

    flock /tmp/tunewise-heavy.lock .venv/bin/python bench/sft_cucom.py [--quick]

Runs `tunewise run configs/cucom_sft.yaml` (LoRA r=16 on all linear layers, loss on agent turns,
packed 256-token rows, bf16 autocast where the CPU has it) with a fixed step budget, then reads
the run's metrics.json: training tokens/s, untuned vs tuned ROUGE-L / BLEU / chrF on held-out
dialogues with paired bootstrap CIs and the randomization p-value, assistant-token perplexity,
forgetting (perplexity on Alpaca-Libre and Self-Instruct before vs after), and the canary
exposure table (secrets planted 1, 4 and 16 times). Full: 500 training dialogues, 20 steps of
8 rows of 256 tokens, 60 held-out prompts. `--quick`: 120 dialogues, 8 steps, 30 prompts.
Prints one JSON object as its last line and writes bench/results/sft_cucom.json
(sft_cucom_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FULL: list[str] = []  # the config as shipped: 500 dialogues, 20 steps of 8 rows, 60 prompts
QUICK = [
    "data.max_rows=120",
    "train.max_steps=8",
    "train.eval_every=4",
    "sft.eval_rows=30",
    "sft.test_rows=30",
    "sft.forgetting_rows=40",
    "sft.canary_candidates=128",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run, a few minutes")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench"), help="output_dir")
    parser.add_argument("--steps", type=int, help="another step budget (61 = one epoch)")
    args = parser.parse_args()
    torch.set_num_threads(2)  # the target machine: 2 cores
    import tunewise

    name = "sft_cucom_quick" if args.quick else "sft_cucom"
    overrides = [*(QUICK if args.quick else FULL), f"output_dir={args.out}"]
    if args.steps:
        name += f"_{args.steps}steps"
        overrides += [
            f"train.max_steps={args.steps}",
            f"train.eval_every={max(args.steps // 3, 1)}",
        ]
    overrides.append(f"name={name}")
    started = time.perf_counter()
    m = tunewise.run(ROOT / "configs" / "cucom_sft.yaml", overrides)
    seconds = time.perf_counter() - started
    result = {
        "benchmark": name,
        "machine": f"{os.cpu_count()} CPU cores (shared), torch threads {torch.get_num_threads()}",
        "overrides": overrides,
        "seconds_total": round(seconds, 1),
        "training": m.get("training"),
        "data": {
            k: m.get("data", {}).get(k)
            for k in (
                "rows",
                "over_length",
                "truncated",
                "dropped_all_truncated",
                "packed_rows",
                "padding_fraction",
                "tokens",
            )
        },
        "test_prompts": m["test_size"],
        "baseline": m.get("baseline"),
        "tuned": m["tuned"],
        "delta": m.get("delta"),
        "ci95": m.get("ci95"),
        "p_value_rougeL": (m.get("significance") or {}).get("p_value"),
        "forgetting": (m.get("forgetting") or {}).get("tasks"),
        "canaries": [
            {
                k: c[k]
                for k in (
                    "repeats",
                    "exposure_before",
                    "exposure_after",
                    "rank_sampled_after",
                    "candidates",
                    "extracted_before",
                    "extracted_after",
                )
            }
            for c in m.get("canaries", [])
        ],
    }
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
