"""Checkpoint cost on the BANKING77 demo, and how fast SIGTERM ends a real run.

    flock /tmp/tunewise-heavy.lock .venv/bin/python bench/checkpoint_overhead.py [--quick]

Runs `tunewise train configs/banking77.yaml data.max_rows=2000 train.epochs=1` (MiniLM-L6,
1,800 training rows: 57 steps of 32) with `train.checkpoint_every` = null, 50 and 10, interleaved,
`--repeats` times. The training loop's own seconds come from training.json: they include the
periodic saves and the save at each new best (here once, after the epoch's evaluation), not the
final save. Each save's own seconds are read from the log, so the overhead is also measured
within each run, which the load of other jobs on a shared machine skews far less than a
comparison across runs. Then the same run is sent SIGTERM at step 20 and the seconds until it
has written its checkpoint and exited (code 143) are timed. `--quick`: one repeat of each.
Prints one JSON object as its last line and writes bench/results/checkpoint_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("/tmp/tunewise-bench-checkpoint")
BASE = ["data.max_rows=2000", "train.epochs=1"]


def _cmd(label: str, every: str) -> list[str]:
    config = str(ROOT / "configs" / "banking77.yaml")
    return [sys.executable, "-m", "tunewise", "train", config, *BASE,
            f"output_dir={OUT}", f"name={label}", f"train.checkpoint_every={every}"]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def timed_run(label: str, every: str) -> dict:
    """One training run: loop seconds, wall seconds, checkpoints written and their size."""
    started = time.perf_counter()
    done = subprocess.run(_cmd(label, every), env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    run = OUT / label
    training = json.loads((run / "training.json").read_text())["training"]
    folders = sorted((run / "checkpoints").glob("step-*"))
    size = sum(f.stat().st_size for f in folders[-1].iterdir())
    saves = [
        float(s) for s in re.findall(r"checkpoint step-\d+ written in ([\d.]+) s", done.stderr)
    ]
    loop = training["seconds"]  # every save here happens inside the loop (the last is the best)
    share = 100 * sum(saves) / max(loop - sum(saves), 1e-9)
    return {"every": every, "loop_seconds": loop, "wall_seconds": round(wall, 1),
            "steps": training["steps"], "checkpoint_bytes": size, "save_seconds": saves,
            "overhead_percent": round(share, 1)}  # fmt: skip


def sigterm_run(at_step: int = 20) -> dict:
    """Seconds from SIGTERM (sent once step `at_step` is logged) to the process's exit."""
    label = "sigterm"
    history = OUT / label / "history.jsonl"
    history.unlink(missing_ok=True)
    proc = subprocess.Popen(_cmd(label, "null"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    sent = None
    while proc.poll() is None and sent is None:
        lines = history.read_text().splitlines() if history.exists() else []
        if any(json.loads(x).get("step", 0) >= at_step for x in lines):
            sent = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    _, err = proc.communicate()
    exit_s = time.perf_counter() - sent if sent else None
    saved = sorted((OUT / label / "checkpoints").glob("step-*"))
    return {"exit_code": proc.returncode, "seconds_to_exit": round(exit_s or -1, 2),
            "checkpoint": saved[-1].name if saved else None, "stderr_tail": err[-300:]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of each setting")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    settings = ["null", "50", "10"]
    runs = [
        timed_run(f"every-{every}-{r}", every)
        for r in range(1 if args.quick else args.repeats)
        for every in settings
    ]
    loop = {s: statistics.median(x["loop_seconds"] for x in runs if x["every"] == s)
            for s in settings}  # fmt: skip
    within = {s: statistics.median(x["overhead_percent"] for x in runs if x["every"] == s)
              for s in settings}  # fmt: skip
    saves = [t for x in runs for t in x["save_seconds"]]
    result = {
        "benchmark": "checkpoint_overhead",
        "command": "tunewise train configs/banking77.yaml " + " ".join(BASE[:2]),
        "machine": f"{os.cpu_count()} CPU cores (shared with other jobs)",
        "runs": runs,
        "median_loop_seconds": loop,
        "overhead_percent_vs_null_run": {
            s: round(100 * (loop[s] - loop["null"]) / loop["null"], 1) for s in settings[1:]
        },
        "overhead_percent_within_run": within,  # save seconds / the rest of the same loop
        "save_seconds": {"median": statistics.median(saves), "max": max(saves), "n": len(saves)},
        "checkpoint_bytes": runs[0]["checkpoint_bytes"],
        "sigterm": sigterm_run(),
    }
    out = ROOT / "bench" / "results" / "checkpoint_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
