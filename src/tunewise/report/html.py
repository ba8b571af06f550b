"""Render a finished run directory into one self-contained, offline-readable report.html.

Why one file with everything inlined: reports get mailed, attached to tickets and opened years
later on machines without network access. So charts are base64 PNG data URIs, CSS is inline,
and nothing refers to an external resource. Every section except the headline inputs is
optional: a run that lacks, say, a confusion matrix still gets a report with what it has.

The first screen answers the newcomer's question: a verdict box (ship / ship with care / do not
ship, report/verdict.py) with each reason linked to its section, then the headline numbers.
The per-class table sorts in the page with a few lines of inline script (no CDN) and reads as
a plain table without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure

from tunewise.core import rundir
from tunewise.core.errors import InputError, Problem
from tunewise.report.charts import png as _png
from tunewise.report.config_view import config_view
from tunewise.report.evaluation_sections import deeper_context
from tunewise.report.tune_section import report_section as tune_section
from tunewise.report.verdict import merge_findings, verdict

METRIC_COLUMNS = ("accuracy", "macro_f1", "macro_precision", "macro_recall")
MAX_TICK_CLASSES = 30  # above this, tick labels are unreadable; the top-pairs table replaces them
TOP_CONFUSED = 10
SIGNIFICANCE_LEVEL = 0.05  # unless the run's doctor.alpha says otherwise
TEMPLATE_DIR = Path(__file__).parent / "templates"


def write_report(
    run_dir: Path, metrics_file: str = rundir.METRICS, report_file: str = rundir.REPORT
) -> Path:
    """Write run_dir/report.html from the run's config, metrics, history and findings.

    `metrics_file` and `report_file` name another scored file and its page (`tunewise evaluate
    --data new.csv`: metrics-new.json into metrics-new.html)."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / metrics_file, required=True)
    if not isinstance(metrics, dict):
        raise InputError([Problem(str(run_dir / metrics_file), None, "<root>", "not an object")])
    context = _context(metrics, *_read_history(run_dir / rundir.HISTORY))
    context["tune"] = tune_section(run_dir)  # after `tunewise tune`: its study and plots
    context["config"] = config_view(run_dir / rundir.CONFIG, studied=bool(context["tune"]))
    findings = _read_findings(run_dir)
    context["findings"] = link_sections(findings, {k for k, v in context.items() if v})
    context["verdict"] = verdict(metrics, findings, "accuracy", alpha(context["config"]))
    if not context["headline"]:
        context["verdict"]["reasons"][0]["href"] = None  # nothing to link the numbers to
    out = run_dir / report_file
    out.write_text(_environment().get_template("report.html").render(context), encoding="utf-8")
    return out


def alpha(config: dict | None) -> float:
    """The doctor's significance level (doctor.alpha), so report and doctor agree."""
    value = ((config or {}).get("raw") or {}).get("doctor", {}).get("alpha")
    return float(value) if _is_number(value) and 0 < value < 1 else SIGNIFICANCE_LEVEL


def link_sections(findings: list[dict], present: set[str]) -> list[dict]:
    """Keep a finding's "see section" link only where the report has that section."""
    for f in findings:
        if f.get("section") and f["section"][0] not in present:
            f["section"] = None
    return findings


def _read_json(path: Path, required: bool = False) -> Any:
    """Parse a JSON file; a missing optional file is None, a broken one is the user's to fix."""
    if not path.is_file():
        if required:
            raise InputError([Problem(str(path), None, "<file>", "not found", "run training")])
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError([Problem(str(path), exc.lineno, "<json>", exc.msg)]) from exc


def _read_history(path: Path) -> tuple[list[dict], int]:
    """History records plus a count of unreadable lines (a crash can truncate the last one)."""
    if not path.is_file():
        return [], 0
    parsed = [_json_or_none(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    records = [r for r in parsed if isinstance(r, dict)]
    return records, len(parsed) - len(records)


def _json_or_none(line: str) -> Any:
    """One history line, or None when it is not valid JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _read_findings(run_dir: Path) -> list[dict]:
    """Audit and doctor findings, merged where both raise one code, most severe first: they
    can invalidate every number below. Evidence becomes indented JSON text."""
    by_source: dict[str, list[dict]] = {}
    for source in ("audit", "doctor"):
        items = _read_json(run_dir / f"{source}.json") or []
        by_source[source] = [
            {**item, "evidence": _evidence_text(item.get("evidence"))}
            for item in items
            if isinstance(item, dict)
        ]
    return merge_findings(by_source)


def _evidence_text(evidence: Any) -> str | None:
    if evidence is None or isinstance(evidence, str):
        return evidence
    return json.dumps(evidence, indent=1, default=str, ensure_ascii=False)


def _context(metrics: dict, history: list[dict], skipped: int) -> dict:
    """Everything metrics.json and history feed the template; absent sections are None."""
    labels = _labels(metrics)
    return {
        "m": metrics,
        "headline": _headline(metrics),
        "baselines": _baseline_rows(metrics),
        "columns": METRIC_COLUMNS,
        "curves": _learning_curves(history),
        "history_skipped": skipped,
        "confusion": _confusion_section(metrics.get("confusion_matrix"), labels),
        "per_class": _per_class_section(
            metrics.get("per_class"), metrics.get("baseline_per_class")
        ),
        "summaries": _summaries(metrics),
        **deeper_context(metrics, png=_png),
    }


def _labels(metrics: dict) -> list[str]:
    """Class names from metrics.labels, else from per_class rows."""
    if isinstance(metrics.get("labels"), list):
        return [str(x) for x in metrics["labels"]]
    return [str(r.get("label")) for r in metrics.get("per_class") or [] if isinstance(r, dict)]


def _headline(metrics: dict) -> dict | None:
    """Baseline -> tuned scores, deltas with CIs, and a one-sentence verdict."""
    tuned = metrics.get("tuned")
    if not isinstance(tuned, dict):
        return None
    sig = metrics.get("significance") or {}
    delta = metrics.get("delta") or {}
    return {
        "baseline_name": metrics.get("baseline_name", "baseline"),
        "baseline": metrics.get("baseline") or {},
        "tuned": tuned,
        "delta": delta,
        "ci95": metrics.get("ci95") or {},
        "significance": sig,
        "verdict": _verdict(delta.get("accuracy"), sig.get("p_value")),
    }


def _verdict(delta: float | None, p_value: float | None) -> str:
    """McNemar tests accuracy, so the verdict pairs its p-value with the accuracy delta."""
    if delta is None or p_value is None or not _is_number(delta) or not _is_number(p_value):
        return "no significance test available"
    if p_value >= SIGNIFICANCE_LEVEL or delta == 0:
        return f"not significantly different (p={pval(p_value)})"
    word = "better" if delta > 0 else "worse"
    return f"significantly {word} than the baseline (p={pval(p_value)})"


def _baseline_rows(metrics: dict) -> list[dict]:
    """Every baseline plus the tuned model, the headline baseline marked."""
    baselines = metrics.get("baselines")
    if not isinstance(baselines, dict) and isinstance(metrics.get("baseline"), dict):
        baselines = {metrics.get("baseline_name", "baseline"): metrics["baseline"]}
    rows = [
        {"name": name, "scores": s, "headline": name == metrics.get("baseline_name")}
        for name, s in (baselines or {}).items()
        if isinstance(s, dict)
    ]
    if isinstance(metrics.get("tuned"), dict):
        rows.append({"name": "tuned", "scores": metrics["tuned"], "tuned": True})
    return rows


def _summaries(metrics: dict) -> list[tuple[str, dict]]:
    """Key/value tables for training, parameter counts and validation, when present."""
    titles = {"training": "Training", "parameters": "Parameters", "validation": "Validation"}
    return [(t, metrics[k]) for k, t in titles.items() if isinstance(metrics.get(k), dict)]


def _series(history: list[dict], split: str, key: str) -> tuple[list, list]:
    """(steps, values) for one split/key, skipping records where either is not a number."""
    pairs = [
        (r["step"], r[key])
        for r in history
        if r.get("split") == split and _is_number(r.get("step")) and _is_number(r.get(key))
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _learning_curves(history: list[dict]) -> str | None:
    """Loss (train + validation) and validation metrics against step, side by side."""
    losses = {f"{s} loss": _series(history, s, "loss") for s in ("train", "validation")}
    scores = {f"validation {k}": _series(history, "validation", k) for k in METRIC_COLUMNS[:2]}
    losses = {k: v for k, v in losses.items() if v[0]}
    scores = {k: v for k, v in scores.items() if v[0]}
    if not losses and not scores:
        return None
    panels = [(title, s) for title, s in (("Loss", losses), ("Validation metric", scores)) if s]
    fig = Figure(figsize=(5.2 * len(panels), 3.4))
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, (x, y) in series.items():
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=name)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _confusion_section(matrix: Any, labels: list[str]) -> dict | None:
    """Heat map plus the most confused pairs; None unless the matrix is square and numeric."""
    try:
        cm = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        return None
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        return None
    k = cm.shape[0]
    names = labels if len(labels) == k else [str(i) for i in range(k)]
    ticks = k <= MAX_TICK_CLASSES
    image = _confusion_image(cm, names, ticks)
    return {"image": image, "size": k, "ticks": ticks, "pairs": _top_confused(cm, names)}


def _confusion_image(cm: np.ndarray, names: list[str], ticks: bool) -> str:
    """Row-normalised (each row is recall per class) so small classes are as visible as big."""
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows != 0)
    side = min(12.0, max(4.0, 0.14 * k + 2.5))
    fig = Figure(figsize=(side, side * 0.85))
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
    size = 8 if k <= 10 else 6
    ax.set_xticks(range(k) if ticks else [], names if ticks else [], rotation=90, fontsize=size)
    ax.set_yticks(range(k) if ticks else [], names if ticks else [], fontsize=size)
    return _png(fig)


def _top_confused(cm: np.ndarray, names: list[str]) -> list[dict]:
    """The off-diagonal cells with the most errors: where the model mixes classes up."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:TOP_CONFUSED]  # ties in row order
    pairs = []
    for flat in order:
        i, j = divmod(int(flat), cm.shape[0])
        if off[i, j] <= 0:
            break
        share = off[i, j] / cm[i].sum()
        pairs.append({"true": names[i], "pred": names[j], "count": int(off[i, j]), "share": share})
    return pairs


def _per_class_section(rows: Any, baseline_rows: Any = None) -> dict | None:
    """The sortable per-class table (baseline -> tuned F1 where the run kept the baseline's
    per-class scores) and horizontal F1 bars, worst class first where the eye lands."""
    if not isinstance(rows, list):
        return None
    rows = [r for r in rows if isinstance(r, dict) and _is_number(r.get("f1"))]
    if not rows:
        return None
    base = {
        str(r.get("label")): r
        for r in baseline_rows or []
        if isinstance(r, dict) and _is_number(r.get("f1"))
    }
    ranked = []
    for r in sorted(rows, key=lambda r: r["f1"]):
        b = base.get(str(r.get("label")))
        delta = r["f1"] - b["f1"] if b else None
        ranked.append({**r, "base_f1": b["f1"] if b else None, "delta_f1": delta})
    deltas = [r["delta_f1"] for r in ranked if r["delta_f1"] is not None]
    moved = {
        "better": sum(d > 0 for d in deltas),
        "worse": sum(d < 0 for d in deltas),
        "same": sum(d == 0 for d in deltas),
    }
    worst = min(ranked, key=lambda r: r["delta_f1"]) if deltas else None
    return {"image": _f1_bars(ranked), "rows": ranked, "moved": moved if deltas else None,
            "worst_drop": worst if worst and worst["delta_f1"] < 0 else None}  # fmt: skip


def _f1_bars(ranked: list[dict]) -> str:
    n = len(ranked)
    fig = Figure(figsize=(7, max(2.0, 0.17 * n + 1.0)))
    ax = fig.add_subplot()
    ax.barh(range(n), [r["f1"] for r in ranked], color="#4c78a8")
    ax.set_yticks(range(n), [str(r.get("label", i)) for i, r in enumerate(ranked)])
    ax.tick_params(axis="y", labelsize=8 if n <= 30 else 6)
    ax.set(xlim=(0, 1), ylim=(n - 0.5, -0.5), xlabel="F1", title="Per-class F1 (worst first)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _is_number(value: Any) -> bool:
    """True for finite ints/floats (bools excluded: they are flags, not measurements)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def num(value: Any, digits: int = 4) -> str:
    """Metric value with fixed decimals; anything missing or non-numeric shows as a dash."""
    return f"{value:.{digits}f}" if _is_number(value) else "–"


def signed(value: Any, digits: int = 4) -> str:
    """Delta with an explicit sign, so improvements and regressions read at a glance."""
    return f"{value:+.{digits}f}" if _is_number(value) else "–"


def pval(value: Any) -> str:
    """p-value: three decimals, or scientific notation when tiny."""
    if not _is_number(value):
        return "–"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def plain(value: Any) -> str:
    """Summary-table value: thousands separators for ints, 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if math.isfinite(value) else str(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _environment() -> jinja2.Environment:
    """Autoescaped (labels and messages are user data); lenient Undefined renders as a dash."""
    loader = jinja2.FileSystemLoader(TEMPLATE_DIR)
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, signed=signed, pval=pval, plain=plain)
    return env
