"""Findings: what the audit and the doctor report, one shape for both (DESIGN.md contract).

A finding names a known pitfall by its code, says how bad it is, shows the evidence (numbers,
steps, rows) and gives a concrete remedy. `write_findings` stores them as a JSON list.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from tunewise.core.console import console

SEVERITIES = ("error", "warning", "info")
CODES = (
    "duplicate",
    "near-duplicate",
    "leakage",
    "conflicting-labels",
    "label-noise",
    "class-imbalance",
    "length-outlier",
    "truncation",
    "empty-or-garbage",
    "pii",
    "no-eval-set",
    "test-used-for-selection",
    "untuned-defaults",
    "overfitting",
    "no-regularization",
    "small-dataset",
    "forgetting",
    "slice-gap",
    "poor-calibration",
    "unstable-training",
    "no-improvement",
    "no-oos-check",
    "classic-preprocessing",  # beyond the DESIGN list: stemming etc. on a transformer's input
)


@dataclass(frozen=True)
class Finding:
    """One detected pitfall: `code` from CODES, `severity` from SEVERITIES."""

    code: str
    severity: str
    message: str
    remedy: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES or self.severity not in SEVERITIES:
            raise ValueError(f"unknown finding code/severity: {self.code}/{self.severity}")


def write_findings(path: Path, findings: list[Finding]) -> Path:
    """Write findings, errors first, as a JSON list."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    ranked = sorted(findings, key=lambda f: order[f.severity])
    path.write_text(json.dumps([asdict(f) for f in ranked], indent=1, default=str))
    return path


def read_findings(path: Path) -> list[Finding]:
    """Findings from a JSON list written by `write_findings` (empty when the file is absent)."""
    if not path.exists():
        return []
    return [Finding(**item) for item in json.loads(path.read_text())]


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def print_findings(findings: list[Finding], title: str) -> None:
    """A table of findings on stderr, most severe first; one line when there are none."""
    if not findings:
        console.log(f"{title}: no findings")
        return
    colours = {"error": "bold red", "warning": "yellow", "info": "cyan"}
    table = Table(title=f"{title}: {len(findings)} finding(s)", show_lines=True)
    for column in ("severity", "code", "message", "remedy"):
        table.add_column(column, overflow="fold")
    for f in sorted(findings, key=lambda f: SEVERITIES.index(f.severity)):
        table.add_row(f"[{colours[f.severity]}]{f.severity}[/]", f.code, f.message, f.remedy)
    console.print(table)
