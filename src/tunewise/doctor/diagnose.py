"""The pitfall doctor: reads a run directory and names what went wrong, with evidence and a remedy.

The rules (doctor/rules.py and friends) are small functions `rule(run: RunFacts, limits) ->
list[Finding]`:

    tunewise doctor runs/banking77     # writes runs/banking77/doctor.json; exit 1 on an error
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunewise.core.findings import Finding
from tunewise.doctor.facts import load_run
from tunewise.doctor.rules import RULES


def diagnose(run_dir: Path, limits: Any) -> list[Finding]:
    """Run every rule on the run directory; `limits` is a DoctorConfig."""
    run = load_run(Path(run_dir))
    return [finding for rule in RULES for finding in rule(run, limits)]
