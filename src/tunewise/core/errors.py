"""Errors a user can act on: each names the file, line, field and a fix.

`InputError` means bad input or usage (exit code 2). It carries every problem found, so a
user fixes a file once instead of re-running after each message.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, printed as `file:line: field: message (fix: ...)`."""

    file: str
    line: int | None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.field}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class InputError(Exception):
    """Bad input or usage; the CLI prints the problems and exits with code 2."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem | str]):
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:MAX_SHOWN]]
        hidden = len(self.problems) - len(shown)
        if hidden:
            shown.append(f"... and {hidden} more ({len(self.problems)} problems in total)")
        super().__init__("\n".join(shown))


class BlockingFinding(Exception):
    """The work ran and found a blocking problem (audit/doctor error, regression); exit 1."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training after a checkpoint; the exit code is 128 + signal."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        where = f"; checkpoint {checkpoint}, continue with --resume" if checkpoint else ""
        super().__init__(f"stopped by {signal.Signals(signum).name} after a full step{where}")
