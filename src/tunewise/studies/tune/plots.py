"""Static images of a study, written to RUN_DIR/tune/ and inlined into report.html.

Drawn on bare matplotlib `Figure`s (Agg canvas), as report/html.py does, so nothing depends on
a display, a browser or pyplot's global state. Four views answer the questions a reader has:
did the search improve (history), which settings mattered (importances), where the good region
lies (parallel coordinates), and what the pruner stopped (intermediate curves).

    names = write_plots(study, Path("runs/b77/tune"), "accuracy")
    section = report_section(Path("runs/b77"))   # for the HTML report; None without tune/
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from optuna.trial import TrialState

from tunewise.report.tune_section import IMAGES


def write_plots(study: optuna.Study, out: Path, metric: str) -> list[str]:
    """Draw every view that the study has enough trials for; the file names written."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    views = {
        "history.png": lambda: _history(trials, metric, maximize),
        "importances.png": lambda: _importances(study),
        "parallel.png": lambda: _parallel(done, metric),
        "curves.png": lambda: _curves(trials, metric),
    }
    written = []
    for name, draw in views.items():
        fig = draw()
        if fig is not None:
            FigureCanvasAgg(fig)
            fig.savefig(out / name, dpi=100, bbox_inches="tight", metadata={"Software": None})
            written.append(name)
    return written


def _history(trials: list, metric: str, maximize: bool) -> Figure | None:
    """Each trial's value (pruned: its last reported score, as x) and the best so far."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    ax.scatter([t.number for t in done], [t.value for t in done], s=18, label="complete")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="grey", label="pruned")
    best = np.maximum.accumulate if maximize else np.minimum.accumulate
    ax.step(
        [t.number for t in done],
        best([t.value for t in done]),
        where="post",
        color="#d62728",
        label="best so far",
    )
    ax.set(xlabel="trial", ylabel=f"validation {metric}", title="Optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _importances(study: optuna.Study) -> Figure | None:
    """fANOVA importances of the searched keys (needs a few complete trials that differ)."""
    try:
        with warnings.catch_warnings():  # "importances will be equal" when scores barely differ
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None
    if not scores:
        return None
    names = list(scores)[::-1]
    fig = Figure(figsize=(6.4, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    ax.barh(names, [scores[n] for n in names], color="#4c78a8")
    ax.set(xlabel="importance (fANOVA)", title="Parameter importances")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _axis(values: list) -> tuple[np.ndarray, list[str]]:
    """Values scaled to [0, 1] (log scale for positive ranges over a decade) and end labels."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        x = np.asarray(values, dtype=float)
        if x.min() > 0 and x.max() / x.min() >= 10:
            x = np.log10(x)
        span = x.max() - x.min()
        lo, hi = min(values), max(values)
        return (x - x.min()) / (span or 1), [f"{lo:.3g}", f"{hi:.3g}"]
    order = sorted({json.dumps(v) for v in values})
    pos = np.array([order.index(json.dumps(v)) for v in values], dtype=float)
    return pos / max(len(order) - 1, 1), [json.loads(order[0]), json.loads(order[-1])]


def _parallel(done: list, metric: str) -> Figure | None:
    """One line per complete trial across the searched keys, coloured by its score."""
    keys = sorted({k for t in done for k in t.params})
    if len(done) < 2 or not keys:
        return None
    columns = [[t.params.get(k) for t in done] for k in keys] + [[t.value for t in done]]
    scaled, ends = zip(*(_axis(c) for c in columns), strict=True)
    lines = np.stack(scaled, axis=1)
    values = np.array([t.value for t in done], dtype=float)
    colour = (values - values.min()) / ((values.max() - values.min()) or 1)
    fig = Figure(figsize=(max(6.4, 1.5 * len(columns)), 3.8))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    for row, c in sorted(zip(lines, colour, strict=True), key=lambda rc: rc[1]):
        ax.plot(range(len(columns)), row, color=cmap(c), alpha=0.8, linewidth=1.2)
    labels = [k.rsplit(".", 1)[-1] for k in keys] + [metric]
    ax.set_xticks(range(len(columns)), labels, rotation=20)
    for i, (lo, hi) in enumerate(ends):
        ax.annotate(str(lo), (i, 0), fontsize=7, xytext=(2, -10), textcoords="offset points")
        ax.annotate(str(hi), (i, 1), fontsize=7, xytext=(2, 4), textcoords="offset points")
    ax.set(
        yticks=[],
        title="Parallel coordinates (brighter = better score)"
        if values.max() != values.min()
        else "Parallel coordinates",
    )
    return fig


def _curves(trials: list, metric: str) -> Figure | None:
    """Intermediate validation scores per trial: solid complete, dashed pruned."""
    shown = [t for t in trials if t.intermediate_values]
    if not shown:
        return None
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    for t in shown:
        steps = sorted(t.intermediate_values)
        style = "-" if t.state == TrialState.COMPLETE else "--"
        values = [t.intermediate_values[s] for s in steps]
        ax.plot(steps, values, style, marker="o", markersize=3, linewidth=1, alpha=0.7)
    ax.set(xlabel="evaluation", ylabel=f"validation {metric}", title=IMAGES["curves.png"])
    ax.grid(alpha=0.3)
    return fig
