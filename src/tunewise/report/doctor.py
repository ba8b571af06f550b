"""The pitfall doctor: reads a run directory and names what went wrong, with evidence and a remedy.

The rules (report/rules.py) are small functions `rule(run: RunFacts, limits) -> list[Finding]`.
The doctor reads only files (config.yaml, history.jsonl, metrics.json, training.json, audit.json),
so it works on any finished run:

    tunewise doctor runs/banking77     # writes runs/banking77/doctor.json; exit 1 on an error
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunewise.findings import Finding, read_findings


@dataclass
class RunFacts:
    """Everything the rules read from a run directory; missing files give empty values."""

    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    training: dict[str, Any]
    audit: list[Finding] = field(default_factory=list)

    def section(self, name: str) -> dict[str, Any]:
        return self.config.get(name) or {}

    def records(self, split: str) -> list[dict[str, Any]]:
        return [r for r in self.history if r.get("split") == split]


def load_run(run_dir: Path) -> RunFacts:
    """Read a run directory's files into RunFacts."""

    def read(name: str) -> str:
        path = run_dir / name
        return path.read_text() if path.exists() else ""

    return RunFacts(
        path=run_dir,
        config=yaml.safe_load(read("config.yaml")) or {},
        history=[json.loads(line) for line in read("history.jsonl").splitlines() if line.strip()],
        metrics=json.loads(read("metrics.json") or "{}"),
        training=json.loads(read("training.json") or "{}"),
        audit=read_findings(run_dir / "audit.json"),
    )


def diagnose(run_dir: Path, limits: Any) -> list[Finding]:
    """Run every rule on the run directory; `limits` is a DoctorConfig."""
    from tunewise.report.rules import RULES

    run = load_run(Path(run_dir))
    return [finding for rule in RULES for finding in rule(run, limits)]
