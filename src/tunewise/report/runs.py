"""`tunewise runs`: every run under an output folder with its headline numbers, newest first."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tunewise.core import rundir
from tunewise.core.console import results


def list_runs(output_dir: Path) -> list[dict[str, Any]]:
    """One row per run directory that has a config.yaml."""
    rows = []
    for config in Path(output_dir).glob("*/config.yaml"):
        run = config.parent
        metrics = _read(run / rundir.METRICS)
        doctor = _read(run / rundir.DOCTOR) or []
        rows.append(
            {
                "name": run.name,
                "modified": datetime.fromtimestamp(config.stat().st_mtime).isoformat(
                    timespec="minutes"
                ),
                "task": metrics.get("task", ""),
                "baseline": (metrics.get("baseline") or {}).get("accuracy"),
                "tuned": (metrics.get("tuned") or {}).get("accuracy"),
                "delta": (metrics.get("delta") or {}).get("accuracy"),
                "p_value": (metrics.get("significance") or {}).get("p_value"),
                "findings": {
                    s: sum(f["severity"] == s for f in doctor) for s in ("error", "warning")
                },
            }
        )
    return sorted(rows, key=lambda r: r["modified"], reverse=True)


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else {}


def print_runs(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} run(s)")
    for column in ("name", "modified", "task", "baseline acc", "tuned acc", "delta", "p", "doctor"):
        table.add_column(column)

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, int | float) else "–"

    for r in rows:
        doctor = f"{r['findings']['error']} errors, {r['findings']['warning']} warnings"
        table.add_row(
            r["name"],
            r["modified"],
            r["task"],
            num(r["baseline"], ".4f"),
            num(r["tuned"], ".4f"),
            num(r["delta"], "+.4f"),
            num(r["p_value"], ".2g"),
            doctor,
        )
    results.print(table)
