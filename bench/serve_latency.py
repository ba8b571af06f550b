"""`tunewise serve` vs `transformers.pipeline` in-process, on the same trained model.

Measures (1) latency at batch 1: p50/p99 of sequential single-text requests over HTTP on
loopback (keep-alive), against p50/p99 of single-text `pipeline(...)` calls in this process;
target p50 <= 0.5x; (2) throughput: 16 concurrent clients on loopback (a bounded number of
requests), against sequential pipeline calls; target >= 3x. Each serve backend runs as its own
`tunewise serve` subprocess on a copy of the run (its feedback.db and onnx/ stay out of RUN).

    flock /tmp/tunewise-heavy.lock .venv/bin/python bench/serve_latency.py --run runs/banking77
    .venv/bin/python bench/serve_latency.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TUNEWISE_DATA_DIR", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench" / "results" / "serve_latency.json"


def texts(n: int) -> list[str]:
    with open(DATA / "banking77" / "test.csv", encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    return [rows[i % len(rows)] for i in range(n)]


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "n": len(ms),
    }


def bench_pipeline(model: Path, lat_texts: list[str], tp_texts: list[str]) -> dict:
    """Single-text calls of transformers.pipeline, in this process, one after another."""
    import transformers

    import tunewise  # noqa: F401  # registers the mean-pooled head's model type with Auto*

    transformers.logging.set_verbosity_error()
    pipe = transformers.pipeline("text-classification", model=str(model), device="cpu")
    for t in lat_texts[:20]:
        pipe(t)
    times, labels = [], []
    for t in lat_texts:
        start = time.perf_counter()
        labels.append(pipe(t)[0]["label"])
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for t in tp_texts:
        pipe(t)
    elapsed = time.perf_counter() - start
    return {
        **percentiles(times),
        "throughput_rps": round(len(tp_texts) / elapsed, 1),
        "labels": labels,
    }


def start_server(run: Path, backend: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    from tunewise.serving.server import free_port

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tunewise",
        "serve",
        str(run),
        "--port",
        str(port),
        "--backend",
        backend,
        *(["--threads", str(threads)] if threads else []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("serve did not start")


def sequential(base: str, lat_texts: list[str]) -> dict:
    session = requests.Session()
    for t in lat_texts[:20]:
        session.post(f"{base}/predict", json={"text": t}).raise_for_status()
    times, labels = [], []
    for t in lat_texts:
        start = time.perf_counter()
        r = session.post(f"{base}/predict", json={"text": t})
        times.append(time.perf_counter() - start)
        r.raise_for_status()
        labels.append(r.json()["label"])
    return {**percentiles(times), "labels": labels}


async def _concurrent(base: str, tp_texts: list[str], clients: int) -> float:
    import aiohttp

    queue = list(reversed(tp_texts))

    async def client(session) -> None:
        while queue:
            text = queue.pop()
            async with session.post(f"{base}/predict", json={"text": text}) as r:
                r.raise_for_status()
                await r.read()

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))  # warm the connections
        queue.extend(reversed(tp_texts))
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - start


def batch_totals(base: str) -> tuple[float, float]:
    """(texts, forward passes) so far, from the server's /metrics."""
    lines = requests.get(f"{base}/metrics").text.splitlines()
    value = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("tunewise_batch")}
    return value.get("tunewise_batch_size_sum", 0.0), value.get("tunewise_batch_size_count", 0.0)


def bench_serve(run: Path, backend: str, lat_texts, tp_texts, clients: int, threads) -> dict:
    proc, base = start_server(run, backend, threads)
    try:
        result = sequential(base, lat_texts)
        texts_before, passes_before = batch_totals(base)
        elapsed = asyncio.run(_concurrent(base, tp_texts, clients))
        texts_after, passes_after = batch_totals(base)
        result["throughput_rps"] = round(len(tp_texts) / elapsed, 1)
        result["clients"] = clients
        # texts per forward pass under the 16 clients (their warm-up round included)
        passes = max(passes_after - passes_before, 1)
        result["mean_batch_concurrent"] = round((texts_after - texts_before) / passes, 2)
        return result
    finally:
        proc.kill()
        proc.wait()


def prepare_runs(source: Path, backends: list[str]) -> dict[str, Path]:
    """A copy of the run per backend: torch as is, onnx exported fp32, onnx-int8 quantised."""
    root = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    runs = {}
    for backend in ["torch", *backends]:
        run = root / backend
        if run.exists():
            continue
        shutil.copytree(source / "model", run / "model")
        shutil.copy(source / "config.yaml", run / "config.yaml")
        if backend.startswith("onnx"):
            cmd = [sys.executable, "-m", "tunewise", "export", str(run), "--format", "onnx"]
            cmd += ["--quantize", "int8"] if backend == "onnx-int8" else []
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        runs[backend] = run
    return runs


def compare(runs: dict[str, Path], lat, tp, clients: int, threads: int | None) -> dict:
    """Pipeline and each serve backend, all with the same intra-op thread count."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    result: dict = {"pipeline": bench_pipeline(runs["torch"] / "model", lat, tp)}
    torch.set_num_threads(default)
    reference = result["pipeline"].pop("labels")
    for backend, run in runs.items():
        served = bench_serve(run, backend.split("-")[0], lat, tp, clients, threads)
        same = sum(a == b for a, b in zip(served.pop("labels"), reference, strict=True))
        served["label_agreement_with_pipeline"] = round(same / len(reference), 4)
        served["p50_vs_pipeline"] = round(served["p50_ms"] / result["pipeline"]["p50_ms"], 3)
        served["p99_vs_pipeline"] = round(served["p99_ms"] / result["pipeline"]["p99_ms"], 3)
        served["throughput_vs_pipeline"] = round(
            served["throughput_rps"] / result["pipeline"]["throughput_rps"], 2
        )
        served["meets_p50_target"] = served["p50_vs_pipeline"] <= 0.5
        served["meets_throughput_target"] = served["throughput_vs_pipeline"] >= 3
        result[f"serve_{backend}"] = served
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "banking77"))
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--n-latency", type=int, default=500)
    parser.add_argument("--n-throughput", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--threads",
        default="default,1",
        help="intra-op thread counts to compare at, for both sides alike",
    )
    parser.add_argument("--quick", action="store_true", help="150 latency / 300 throughput")
    args = parser.parse_args()
    if args.quick:
        args.n_latency, args.n_throughput = 150, 300
    backends = [b for b in args.backends.split(",") if b]
    runs = prepare_runs(Path(args.run), backends)
    lat, tp = texts(args.n_latency), texts(args.n_throughput)
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other jobs"
    result: dict = {
        "run": str(args.run),
        "machine": machine,
        "quick": args.quick,
        "n_latency": args.n_latency,
        "n_throughput": args.n_throughput,
    }
    for threads in [None if t == "default" else int(t) for t in args.threads.split(",")]:
        name = f"threads_{threads or 'default'}"
        result[name] = compare(runs, lat, tp, args.clients, threads)
    shutil.rmtree(runs["torch"].parent, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_name("serve_latency_quick.json" if args.quick else OUT.name).write_text(
        json.dumps(result, indent=1)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
