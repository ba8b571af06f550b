"""What `tunewise run` and `evaluate` conclude: metrics.json (tuned vs the baseline on the same
test rows, with CI and p-value) and the table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.config import RunConfig
from tunewise.core import rundir
from tunewise.core.console import results
from tunewise.data.load import Examples
from tunewise.evaluation import analyses
from tunewise.evaluation.compare import compare
from tunewise.evaluation.metrics import classification_metrics, confusion, per_class


def metrics_document(
    run_dir: Path,
    cfg: RunConfig,
    labels: list[str],
    y: np.ndarray,
    pred: np.ndarray,
    test: Examples,
) -> dict[str, Any]:
    """Assemble metrics.json: tuned vs the baseline on the same rows, with CI and p-value."""
    n = len(labels)
    doc: dict[str, Any] = {
        "task": cfg.task,
        "name": cfg.name,
        "test_size": len(y),
        "test_source": test.source,
        "labels": labels,
        "tuned": classification_metrics(y, pred, n),
    }
    saved = run_dir / rundir.BASELINE
    baselines = json.loads(saved.read_text()) if saved.exists() else None
    if baselines and baselines["test_size"] == len(y) and baselines["test_source"] == test.source:
        doc["baselines"] = {k: baselines[k]["metrics"] for k in ("zero_shot", "linear_probe")}
        name = cfg.eval.baseline
        if name == "best":
            name = max(doc["baselines"], key=lambda k: doc["baselines"][k]["accuracy"])
        doc["baseline_name"], doc["baseline"] = name, doc["baselines"][name]
        base_pred = np.array(baselines[name]["predictions"])
        doc.update(compare(y, base_pred, pred, n, n_boot=cfg.eval.bootstrap, seed=cfg.seed))
        doc["baseline_per_class"] = per_class(y, base_pred, labels)  # the report's deltas
    doc["per_class"] = per_class(y, pred, labels)
    doc["confusion_matrix"] = confusion(y, pred, n).tolist()
    training = run_dir / rundir.TRAINING
    if training.exists():
        doc.update(json.loads(training.read_text()))
    return doc


def print_scores(title: str, doc: dict, keys: tuple[str, ...]) -> Any:
    """One row per baseline and one for the tuned model, on `keys`; returns the console."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    for name, scores in {**doc.get("baselines", {}), "tuned": doc["tuned"]}.items():
        table.add_row(name, *(f"{scores[k]:.4f}" for k in keys))
    out = results
    out.print(table)
    return out


def print_summary(metrics: dict, report: Path) -> None:
    """The table `tunewise run` ends with: baselines, tuned, the difference and its CI; then
    where the report page is."""
    title = f"{metrics['name']}: {Path(metrics['test_source']).name}, {metrics['test_size']} rows"
    out = print_scores(title, metrics, ("accuracy", "macro_f1"))
    if "delta" in metrics:
        lo, hi = metrics["ci95"]["accuracy"]
        out.print(
            f"tuned − {metrics['baseline_name']}: accuracy {metrics['delta']['accuracy']:+.4f} "
            f"(95% CI {lo:+.4f} … {hi:+.4f}), McNemar p = "
            f"{metrics['significance']['p_value']:.2g}"
        )
    for line in analyses.summary_lines(metrics):
        out.print(line)
    if "delta" not in metrics:
        out.print("no baseline on these rows (the baselines scored the run's test set)")
    out.print(f"report: {report.resolve()}", soft_wrap=True)  # one line, to copy
