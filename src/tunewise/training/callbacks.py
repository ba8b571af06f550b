"""Plain callbacks for the training loop: early stopping, history file, progress bar.

A callback is any object with some of `on_log(record)`, `on_step_begin(state, model)`,
`on_step_end(state, rows)` and `on_end(state)`; the loop calls what exists (duck typing, no base
class).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.core.console import bar_columns, console

LOWER_IS_BETTER = {"loss"}


@dataclass
class EarlyStopping:
    """Stop when `metric` has not improved by `min_delta` for `patience` evaluations."""

    metric: str = "macro_f1"
    patience: int = 3
    min_delta: float = 0.0
    best_: float | None = None
    best_step_: int = -1
    bad_evals_: int = 0

    def improved(self, value: float) -> bool:
        if self.best_ is None:
            return True
        sign = -1.0 if self.metric in LOWER_IS_BETTER else 1.0
        return sign * (value - self.best_) > self.min_delta

    def update(self, step: int, metrics: dict[str, float]) -> tuple[bool, bool]:
        """Record an evaluation; return (is_new_best, should_stop)."""
        value = metrics[self.metric]
        if self.improved(value):
            self.best_, self.best_step_, self.bad_evals_ = value, step, 0
            return True, False
        self.bad_evals_ += 1
        return False, self.bad_evals_ >= self.patience

    def reason(self) -> str:
        """Why training stopped, in words: "validation accuracy did not improve for 3
        evaluations; kept the weights of step 40 (accuracy 0.9120)"."""
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (
            f"validation {self.metric} did not improve{by} for {self.bad_evals_} "
            f"evaluation{'s' if self.bad_evals_ != 1 else ''}; "
            f"kept the weights of step {self.best_step_} ({self.metric} {self.best_:.4f})"
        )


class History:
    """Appends one JSON line per logged step or evaluation to `history.jsonl`."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, record: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        clean.update(
            {
                f"{k}_nonfinite": str(v)
                for k, v in record.items()
                if isinstance(v, float) and not math.isfinite(v)
            }
        )
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")


class RowRecorder:
    """Appends each step's training rows to `rows.jsonl` (`train.record_rows`).

    One line per optimizer step, `{"step": 7, "epoch": 0, "rows": [12, 40, ...]}` (row numbers
    of the training split), so a resumed run can be checked to train on exactly the rows the
    uninterrupted run would have: none twice, none skipped.
    """

    def __init__(self, path: Path):
        self.path = path

    def on_step_end(self, state: Any, rows: list[int]) -> None:
        line = {"step": state.step, "epoch": state.epoch, "rows": [int(r) for r in rows]}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


class ProgressBar:
    """The training bar: steps done, loss, learning rate and samples/s; validation lines print
    above it. When early stopping ends training, the bar says so and a line says why (also
    without a terminal, where the bar is off), instead of silently standing at 4/10."""

    def __init__(self, total_steps: int, enabled: bool = True):
        from rich.progress import Progress

        self.progress = Progress(*bar_columns(), console=console, disable=not enabled)
        self.task = self.progress.add_task("train", total=total_steps, unit="steps", info="")
        self.progress.start()

    def on_log(self, record: dict[str, Any]) -> None:
        if record.get("split") == "train":
            info = (
                f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                f"{record['samples_per_s']:.0f} samples/s"
            )
            self.progress.update(self.task, completed=record["step"], info=info)
        elif record.get("split") == "validation":
            scores = "  ".join(
                f"{k} {v:.4f}" for k, v in record.items() if k in ("loss", "accuracy", "macro_f1")
            )
            self.progress.console.log(f"validation at step {record['step']}  {scores}")

    def on_end(self, state: Any) -> None:
        if state.stopped_early:  # a full bar, no time left to guess, and the plan it cut short
            planned = f"[bold]stopped early[/] ({state.total_steps} steps planned)"
            self.progress.update(self.task, total=state.step, completed=state.step, info=planned)
        else:
            self.progress.update(self.task, completed=state.step)
        self.progress.stop()
        if state.stopped_early:
            console.log(state.stop_reason)
