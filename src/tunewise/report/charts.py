"""Charts as inline PNG data URIs, and the two charts of audit.html.

Figures are drawn on bare `Figure` objects with the Agg canvas rather than through pyplot, so
rendering never touches pyplot's global state or the user's chosen backend; the PNG's Software
metadata is dropped because it holds a URL and the pages must not point at the network.

    src = png(class_chart(profile))      # <img src="{{ src }}">
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_TICK_CLASSES = 40  # above this, class names on the axis are unreadable
COLORS = {"train": "#4c78a8", "test": "#f58518"}


def png(fig: Figure) -> str:
    """Encode a figure as a data URI."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def class_chart(profile: dict, min_count: int | None = None) -> Figure | None:
    """Rows per class, largest first, train and test side by side; the smallest class an
    audit still accepts as a dashed line. Class names only while they stay readable."""
    splits = [s for s in profile.get("splits") or [] if s.get("labels")]
    if not splits:
        return None
    train = splits[0]["labels"]
    order = sorted(set().union(*(s["labels"] for s in splits)), key=lambda k: (-train.get(k, 0), k))
    k = len(order)
    ticks = k <= MAX_TICK_CLASSES
    fig = Figure(figsize=(min(12.0, max(5.0, 0.22 * k + 2.0)), 3.6 if not ticks else 4.4))
    ax = fig.add_subplot()
    width = 0.8 / len(splits)
    for i, s in enumerate(splits):
        counts = [s["labels"].get(label, 0) for label in order]
        x = np.arange(k) + (i - (len(splits) - 1) / 2) * width
        ax.bar(x, counts, width=width, label=f"{s['name']} ({sum(counts):,} rows)",
               color=COLORS.get(s["name"], "#54a24b"))  # fmt: skip
    if min_count:
        ax.axhline(min_count, ls="--", color="#cf222e", lw=1, label=f"{min_count} rows")
    ax.set_xticks(range(k) if ticks else [], order if ticks else [], rotation=90, fontsize=7)
    xlabel = "class" if ticks else f"{k} classes, largest first (names in the table below)"
    ax.set(ylabel="rows", xlabel=xlabel, title="Rows per class", xlim=(-0.7, k - 0.3))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def length_chart(profile: dict) -> Figure | None:
    """Text lengths per split as overlaid histograms, with model.max_length marked: rows to
    its right are cut before the model sees their end."""
    splits = [s for s in profile.get("splits") or [] if s.get("lengths")]
    if not splits:
        return None
    unit, limit = profile.get("unit", "tokens"), profile.get("max_length")
    top = max(max(s["lengths"]) for s in splits)
    right = max(top, limit or 0) + 1
    step = max(1, int(np.ceil(right / 80)))  # whole numbers per bin: no empty gaps
    bins = np.arange(0, right + step, step).tolist()
    fig = Figure(figsize=(7.0, 3.4))
    ax = fig.add_subplot()
    for s in splits:
        lengths = np.asarray(s["lengths"])
        ax.hist(lengths, bins=bins, alpha=0.6, density=True, color=COLORS.get(s["name"]),
                label=f"{s['name']} (median {np.median(lengths):.0f})")  # fmt: skip
    if limit:
        ax.axvline(limit, ls="--", color="#cf222e", lw=1, label=f"model.max_length = {limit}")
    ax.set(xlabel=f"{unit} per row", ylabel="share of rows", title="Text length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
