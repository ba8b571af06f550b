"""Report sections for the deeper evaluation: slices, calibration, out of scope, forgetting,
error analysis.

Each function turns one metrics.json section (shapes in evaluation/slices.py,
calibration.py, oos_eval.py, forgetting.py, error_analysis.py) into what the template shows, or
None when the section is absent or malformed, so reports of older runs still render. Charts
come back as matplotlib `Figure`s; html.py encodes them, keeping all PNG handling in one place.

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
    oos = oos_section(metrics.get("oos"))
    if oos and oos.get("figure") is not None:
        oos["image"] = png(oos.pop("figure"))
    return {
        "slices": slices,
        "worst_slice": slices["worst"] if slices else None,
        "calibration": calibration,
        "oos": oos,
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


OOS_COLUMNS = ("auroc", "fpr_at_95_recall", "oos_recall", "oos_precision", "in_scope_answered",
               "in_scope_accuracy_with_abstention", "in_scope_accuracy")  # fmt: skip


def oos_section(doc: Any) -> dict | None:
    """Every out-of-scope method of the tuned model and the probe on the same test rows (the
    served one marked), and the served method's score distributions against its threshold."""
    if not isinstance(doc, dict) or not isinstance(doc.get("methods"), dict):
        return None if not isinstance(doc, dict) or not doc.get("note") else {"note": doc["note"]}
    base = (
        (doc.get("baseline") or {}).get("methods") if isinstance(doc.get("baseline"), dict) else {}
    )

    def rows(methods: Any, model: str) -> list[dict]:
        if not isinstance(methods, dict):
            return []
        return [
            {
                "model": model,
                "method": name,
                "served": model == "tuned" and name == doc.get("method"),
                **{c: m.get(c) if _number(m.get(c)) else None for c in OOS_COLUMNS},
            }  # fmt: skip
            for name, m in methods.items()
            if isinstance(m, dict)
        ]

    served = doc["methods"].get(doc.get("method")) or {}
    hist = served.get("histogram") if isinstance(served, dict) else None
    return {
        "method": doc.get("method"),
        "threshold": served.get("threshold"),
        "threshold_from": doc.get("threshold_from"),
        "coverage": doc.get("coverage"),
        "rows": doc.get("rows") if isinstance(doc.get("rows"), dict) else {},
        "table": rows(doc["methods"], "tuned") + rows(base, "linear probe"),
        "figure": oos_figure(hist, doc.get("method"), served.get("threshold"))
        if isinstance(hist, dict)
        else None,
        "note": doc.get("note"),
    }


def oos_figure(hist: dict, method: Any, threshold: Any) -> Figure | None:
    """Test-row score histograms, in scope against out of scope, and the threshold."""
    edges, ins = hist.get("edges"), hist.get("in_scope")
    if not isinstance(edges, list) or not isinstance(ins, list) or len(edges) != len(ins) + 1:
        return None
    lefts, widths = edges[:-1], [b - a for a, b in zip(edges, edges[1:], strict=False)]
    fig = Figure(figsize=(6.0, 3.2))
    ax = fig.subplots()
    ax.bar(lefts, ins, width=widths, align="edge", alpha=0.6, color="#4c78a8", label="in scope")
    oos = hist.get("oos")
    if isinstance(oos, list) and len(oos) == len(ins) and any(oos):
        ax.bar(lefts, oos, width=widths, align="edge", alpha=0.6, color="#e45756",
               label="out of scope")  # fmt: skip
    if _number(threshold):
        ax.axvline(threshold, color="#24292f", linestyle="--", label="threshold")
    ax.set(xlabel=f"{method} score (higher = more out of scope)", ylabel="test rows")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
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
