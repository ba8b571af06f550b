"""Report sections for the deeper evaluation: slices, calibration, forgetting, error analysis.

Each function turns one metrics.json section (shapes in evaluation/slices.py, calibration.py,
forgetting.py, error_analysis.py) into what the template shows, or None when the section is
absent or malformed, so reports of older runs still render. Charts come back as matplotlib
`Figure`s; html.py encodes them, keeping all PNG handling in one place.

    context.update(deeper_context(metrics, png=_png))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure


def deeper_context(metrics: dict, png: Callable[[Figure], str]) -> dict[str, Any]:
    """Template variables for the four sections and the headline's worst slice."""
    slices = slices_section(metrics.get("slices"))
    calibration = calibration_section(metrics.get("calibration"))
    if calibration and calibration.get("figure") is not None:
        calibration["image"] = png(calibration.pop("figure"))
    return {
        "slices": slices,
        "worst_slice": slices["worst"] if slices else None,
        "calibration": calibration,
        "forgetting": forgetting_section(metrics.get("forgetting")),
        "errors": errors_section(metrics.get("errors")),
    }


def _number(value: Any) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def _dicts(value: Any) -> list[dict]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def slices_section(doc: Any) -> dict | None:
    """Groups with their gap to overall accuracy; the worst one marked for highlighting."""
    if not isinstance(doc, dict) or not isinstance(doc.get("overall"), dict):
        return None
    overall = doc["overall"].get("accuracy")
    worst = doc.get("worst") if isinstance(doc.get("worst"), dict) else None
    if worst:
        gap = worst.get("gap")
        worst = {**worst, "vs_overall": -gap if _number(gap) else None}
    worst_key = (worst.get("slice"), worst.get("value")) if worst else None
    groups = []
    for g in _dicts(doc.get("groups")):
        ok = _number(overall) and _number(g.get("accuracy"))
        vs_overall = g["accuracy"] - overall if ok else None  # negative: served worse
        is_worst = (g.get("slice"), g.get("value")) == worst_key
        groups.append({**g, "vs_overall": vs_overall, "worst": is_worst})
    return {
        "overall": doc["overall"],
        "by": doc.get("by") or [],
        "groups": groups,
        "worst": worst,
        "skipped": _dicts(doc.get("skipped")),
        "min_size": doc.get("min_size"),
        "notes": [str(n) for n in doc.get("notes") or []],
    }


def calibration_section(doc: Any) -> dict | None:
    """ECE before/after temperature scaling and a reliability diagram of the test bins."""
    if not isinstance(doc, dict) or not _number(doc.get("ece")):
        return None
    bins = [b for b in _dicts(doc.get("bins")) if _number(b.get("lower"))]
    return {
        "ece": doc["ece"],
        "ece_after": doc.get("ece_after_temperature"),
        "temperature": doc.get("temperature"),
        "validation_size": doc.get("validation_size"),
        "note": doc.get("note"),
        "figure": reliability_figure(bins) if bins else None,
    }


def reliability_figure(bins: list[dict]) -> Figure:
    """Accuracy per confidence bin against the diagonal (perfect calibration), counts below.

    Bars under the diagonal mean over-confidence: the model is right less often than it claims.
    """
    width = bins[0]["upper"] - bins[0]["lower"]
    filled = [b for b in bins if b.get("count") and _number(b.get("accuracy"))]
    fig = Figure(figsize=(5.2, 5.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lefts = [b["lower"] for b in filled]
    top.bar(lefts, [b["accuracy"] for b in filled], width=width, align="edge",
            color="#4c78a8", edgecolor="white", label="accuracy")  # fmt: skip
    top.plot([0, 1], [0, 1], "--", color="#57606a", label="perfect calibration")
    top.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o",
             color="#e45756", markersize=3, label="mean confidence")  # fmt: skip
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title="Reliability diagram (test)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar([b["lower"] for b in bins], [b.get("count") or 0 for b in bins], width=width,
               align="edge", color="#9ecae9", edgecolor="white")  # fmt: skip
    bottom.set(xlabel="confidence (top-class probability)", ylabel="rows")
    bottom.set_yscale("symlog")
    return fig


def forgetting_section(doc: Any) -> dict | None:
    """Base vs tuned probe accuracy per general task, plus skipped tasks and their reasons."""
    if not isinstance(doc, dict):
        return None
    tasks = [t for t in _dicts(doc.get("tasks")) if _number(t.get("delta"))]
    skipped = _dicts(doc.get("skipped"))
    if not tasks and not skipped and not doc.get("note"):
        return None
    return {
        "tasks": tasks,
        "mean_delta": doc.get("mean_delta"),
        "skipped": skipped,
        "note": doc.get("note"),
        "probe": doc.get("probe") if isinstance(doc.get("probe"), dict) else {},
    }


def errors_section(doc: Any) -> dict | None:
    """The most confident wrong predictions and the most confused pairs with example texts."""
    if not isinstance(doc, dict):
        return None
    wrong, pairs = _dicts(doc.get("confident_wrong")), _dicts(doc.get("confused_pairs"))
    return {"confident_wrong": wrong, "confused_pairs": pairs}
