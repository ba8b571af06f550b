"""What the doctor's rules read: a run directory's files as plain data.

The doctor reads only files (config.yaml, history.jsonl, metrics.json, training.json,
audit.json), so it works on any finished run, whichever command wrote it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunewise.core import rundir
from tunewise.core.findings import Finding, read_findings


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
        config=yaml.safe_load(read(rundir.CONFIG)) or {},
        history=[json.loads(line) for line in read(rundir.HISTORY).splitlines() if line.strip()],
        metrics=json.loads(read(rundir.METRICS) or "{}"),
        training=json.loads(read(rundir.TRAINING) or "{}"),
        audit=read_findings(run_dir / rundir.AUDIT),
    )
