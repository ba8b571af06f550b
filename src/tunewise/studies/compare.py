"""`tunewise compare CONFIG --methods full,head,lora`: adaptation methods side by side.

Why a command: "LoRA is as good as full fine-tuning" holds on some data and not on other data,
and the answer is only worth something when every method sees the same split, the same seed,
the same test rows and the same baseline. This runs each method as its own run directory under
`<output_dir>/<name>-compare/<method>/`, then writes one table to the terminal, `compare.json`
and `compare.html` (a bar chart inlined as PNG, readable offline).

Methods often want their own learning rate; prefix an override with the method's name:

    tunewise compare configs/banking77.yaml --methods full,lora train.epochs=3 lora:train.lr=1e-3
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunewise.config import ADAPT_METHODS, RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console, results
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import read_json
from tunewise.tasks import TASKS

SAMPLE_SECONDS = 0.02


def split_overrides(
    overrides: Sequence[str], methods: Sequence[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides for every method, and `method:key=value` overrides per method."""
    shared: list[str] = []
    per_method: dict[str, list[str]] = {m: [] for m in methods}
    for text in overrides:
        prefix, sep, rest = text.partition("=")[0].partition(":")
        if not sep:
            shared.append(text)
        elif prefix in per_method:
            per_method[prefix].append(text.split(":", 1)[1])
        else:
            fix = f"prefix with one of the compared methods: {', '.join(methods)}"
            raise InputError([Problem("override", None, text, f"'{prefix}' is not compared", fix)])
    return shared, per_method


def check_methods(methods: Sequence[str]) -> list[str]:
    """The methods to compare, each known and named once."""
    bad = [m for m in methods if m not in ADAPT_METHODS]
    if bad or not methods or len(set(methods)) != len(methods):
        message = f"unknown: {', '.join(bad)}" if bad else "give each method once"
        fix = f"a comma-separated list of {', '.join(ADAPT_METHODS)}"
        raise InputError([Problem("--methods", None, "methods", message, fix)])
    return list(methods)


class PeakMemory:
    """Peak resident memory (sampled every 20 ms) and, on CUDA, peak allocated GPU memory.

    Used as `with PeakMemory() as mem: ...`, then `mem.peak_mb`. On CPU this is the whole
    process's peak RSS during the block, so it includes what was resident before it.
    """

    def __enter__(self) -> PeakMemory:
        import psutil
        import torch

        self._process, self._stop = psutil.Process(), threading.Event()
        self.peak_rss = self._process.memory_info().rss
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        import torch

        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = round(self.peak_rss / 2**20, 1)
        self.peak_gpu_mb = (
            round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None
        )
        self.peak_mb = self.peak_gpu_mb if self.cuda else self.peak_rss_mb


def compare_methods(
    config: str | Path | dict | RunConfig,
    methods: Sequence[str] = ADAPT_METHODS,
    overrides: Sequence[str] = (),
) -> dict:
    """Train and evaluate each method on the same split and seed; write compare.json/.html.

    Each method is its task's own training (for classification, `train_classifier`) on the data
    prepared once, as a run directory under <output_dir>/<name>-compare/<method>/.
    """
    methods = check_methods(methods)
    shared, per_method = split_overrides(overrides, methods)
    cfg = _config(config, shared)
    task = TASKS[cfg.task]
    root = Path(cfg.output_dir) / f"{cfg.name}-compare"
    root.mkdir(parents=True, exist_ok=True)
    cfg, data = task.prepare(cfg, task.load_data(cfg), root)
    task.baseline(cfg, data, root)
    rows = [_run_method(cfg, task, method, per_method[method], data, root) for method in methods]
    doc = {
        "name": cfg.name,
        "task": cfg.task,
        "seed": cfg.seed,
        "test_size": rows[0]["test_size"],
        "methods": rows,
        "baselines": _baselines(root),
        "machine": _machine(),
    }
    (root / "compare.json").write_text(json.dumps(doc, indent=1))
    write_compare_html(doc, root / "compare.html")
    print_table(doc, root)
    return doc


def _config(config: str | Path | dict | RunConfig, overrides: list[str]) -> RunConfig:
    if isinstance(config, RunConfig):
        return load_config(config.to_dict(), overrides) if overrides else config
    return load_config(config, overrides)


def _baselines(root: Path) -> dict:
    """The untuned model's scores on the test rows, scored once for every method."""
    data = read_json(root / rundir.BASELINE, {})
    return {k: v["metrics"] for k, v in data.items() if isinstance(v, dict) and "metrics" in v}


def _run_method(cfg: RunConfig, task: Any, method: str, extra: list[str], data, root: Path) -> dict:
    """One method as its own run directory: train (memory watched), then evaluate on test."""
    mcfg = load_config(
        cfg.to_dict(), [f"adapt.method={method}", f"output_dir={root}", f"name={method}", *extra]
    )
    run_dir = rundir.start_run(mcfg)
    if (root / rundir.BASELINE).exists():
        shutil.copy(root / rundir.BASELINE, run_dir / rundir.BASELINE)
    console.log(f"compare: method {method}")
    with PeakMemory() as mem:
        summary = task.train(mcfg, data, run_dir)
    metrics = task.evaluate(run_dir)
    tuned = metrics["tuned"]
    return {
        "method": method,
        "accuracy": tuned["accuracy"],
        "macro_f1": tuned.get("macro_f1"),
        "trainable_parameters": summary["parameters"]["trainable"],
        "trainable_percent": summary["parameters"]["percent"],
        "train_seconds": summary["training"]["seconds"],
        "peak_memory_mb": mem.peak_mb,
        "peak_rss_mb": mem.peak_rss_mb,
        "lr": mcfg.train.lr,
        "steps": summary["training"]["steps"],
        "ci95_vs_baseline": metrics.get("ci95", {}).get("accuracy"),
        "test_size": metrics["test_size"],
        "run_dir": str(run_dir),
        "overrides": extra,
    }


def _machine() -> dict:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def print_table(doc: dict, root: Path) -> None:
    """The comparison as a terminal table, baselines first."""
    from rich.table import Table

    table = Table(title=f"{doc['name']}: methods on the same split (test {doc['test_size']} rows)")
    for col in ("method", "accuracy", "macro-F1", "trainable", "train s", "peak MB", "lr"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, scores in doc["baselines"].items():
        table.add_row(
            f"baseline {name}",
            _num(scores.get("accuracy")),
            _num(scores.get("macro_f1")),
            "0",
            "",
            "",
            "",
        )
    for r in doc["methods"]:
        table.add_row(
            r["method"],
            _num(r["accuracy"]),
            _num(r["macro_f1"]),
            f"{r['trainable_parameters']:,} ({r['trainable_percent']:.2f}%)",
            f"{r['train_seconds']:.0f}",
            f"{r['peak_memory_mb']:.0f}",
            f"{r['lr']:g}",
        )
    out = results
    out.print(table)
    out.print(f"compare: {(root / 'compare.json').resolve()}  {(root / 'compare.html').resolve()}")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _bar_chart(doc: dict) -> str:
    """Grouped bars of accuracy and macro-F1 per method, best baseline as a dashed line."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = doc["methods"]
    x = np.arange(len(rows))
    fig = Figure(figsize=(1.4 * len(rows) + 3, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (key, label) in enumerate((("accuracy", "accuracy"), ("macro_f1", "macro-F1"))):
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        bars = ax.bar(x + (i - 0.5) * 0.38, values, 0.38, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    best = max((s.get("accuracy", 0.0) for s in doc["baselines"].values()), default=None)
    if best is not None:
        ax.axhline(best, color="grey", linestyle="--", linewidth=1, label="best baseline accuracy")
    ax.set_xticks(x, [r["method"] for r in rows])
    ax.set_ylim(0, 1.08)
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_compare_html(doc: dict, path: Path) -> Path:
    """One self-contained page: the chart (inline PNG) and the table; no external resources."""
    esc = html.escape
    head = "".join(
        f"<th>{c}</th>"
        for c in ("method", "accuracy", "macro-F1", "trainable", "train s", "peak MB", "lr")
    )
    body = "".join(
        f"<tr><td>{esc(r['method'])}</td><td>{_num(r['accuracy'])}</td>"
        f"<td>{_num(r['macro_f1'])}</td><td>{r['trainable_parameters']:,} "
        f"({r['trainable_percent']:.2f}%)</td><td>{r['train_seconds']:.0f}</td>"
        f"<td>{r['peak_memory_mb']:.0f}</td><td>{r['lr']:g}</td></tr>"
        for r in doc["methods"]
    )
    base = "".join(
        f"<tr><td>baseline {esc(n)}</td><td>{_num(s.get('accuracy'))}</td>"
        f"<td>{_num(s.get('macro_f1'))}</td><td>0</td><td></td><td></td><td></td></tr>"
        for n, s in doc["baselines"].items()
    )
    m = doc["machine"]
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{esc(doc["name"])}: adaptation methods compared</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:.3rem .7rem;border-bottom:1px solid #ddd;
text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>{esc(doc["name"])}: adaptation methods on the same split</h1>
<p>Seed {doc["seed"]}, {doc["test_size"]} test rows; {esc(str(m["device"]))},
{m["cpu_count"]} CPUs, {m["torch_threads"]} torch threads; {esc(m["time"])}.</p>
<img alt="accuracy and macro-F1 per method" src="{_bar_chart(doc)}">
<table><tr>{head}</tr>{base}{body}</table>
<p>Peak MB is the process's peak resident memory during training (GPU: peak allocated).</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
