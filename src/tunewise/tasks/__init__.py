"""The tasks tunewise fine-tunes for, by the name `task:` gives them in a config.

Every task is a module with the same functions, which `tunewise.pipeline` runs in the same
order for all of them (validate → audit → prepare → baseline → train → evaluate → doctor →
report → track):

    task = TASKS[cfg.task]
    data = task.load_data(cfg)                     # every file checked; exit 2 before a model
    findings = task.audit(cfg, data, run_dir)      # audit.json
    cfg, data = task.prepare(cfg, data, run_dir)   # cleaned, redacted, held-out split written
    task.baseline(cfg, data, run_dir)              # baseline.json: the untuned model
    task.train(cfg, data, run_dir, resume_from)    # model/, training.json
    metrics = task.evaluate(run_dir)               # metrics.json, the model card
    task.write_report(run_dir)                     # report.html
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tunewise.config.schema import TASKS as TASK_NAMES
from tunewise.core.findings import Finding
from tunewise.tasks import classification
from tunewise.tasks.causal_lm import task as causal_lm
from tunewise.tasks.ranking import task as ranking


class Task(Protocol):
    NAME: str
    RESUMABLE: bool

    def load_data(self, cfg: Any) -> Any: ...

    def audit(self, cfg: Any, data: Any, run_dir: Path) -> list[Finding]: ...

    def prepare(self, cfg: Any, data: Any, run_dir: Path | None) -> tuple[Any, Any]: ...

    def baseline(self, cfg: Any, data: Any, run_dir: Path) -> Any: ...

    def train(
        self, cfg: Any, data: Any, run_dir: Path, resume_from: Path | None = None
    ) -> dict: ...

    def evaluate(
        self,
        run_dir: str | Path,
        data: str | Path | None = None,
        overrides: Sequence[str] = (),
        forgetting: bool = True,
        columns: tuple[str | None, str | None] = (None, None),
    ) -> dict: ...

    def write_report(self, run_dir: str | Path) -> Path: ...


TASKS: dict[str, Task] = {m.NAME: m for m in (classification, ranking, causal_lm)}  # type: ignore[misc]
assert tuple(TASKS) == TASK_NAMES, "the config's task choices and the modules must agree"
