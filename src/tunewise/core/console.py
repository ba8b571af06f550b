"""One console for everything tunewise says while it works (stderr), one for results (stdout).

Log lines and progress bars share `console`, so a log line printed during a bar lands above it
instead of on it. Source locations (`pipeline.py:134`) are for developers: `set_verbose(True)`
(the CLI's `--verbose`) adds them. Each long step shows one bar (`step_progress`), which stays
on screen as a finished line when the step is done:

    from tunewise.core.console import console, results, step_progress
    console.log("audit: 300 training rows")
    with step_progress("baseline: embedding", total=3000, unit="rows") as advance:
        for rows in batches:
            ...
            advance(len(rows))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

console = Console(stderr=True, log_path=False)
results = Console()
Advance = Callable[[int], None]


def set_verbose(verbose: bool) -> None:
    """Show (or hide) the source location at the end of each log line."""
    console._log_render.show_path = verbose


def bar_columns(label: str = "{task.description}") -> list[Any]:
    """The columns every tunewise bar has: what, bar, done/total, elapsed, remaining, details."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return [
        TextColumn(" " * 10),  # under a log line's time, so bars and log text line up
        TextColumn(label),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]


def live() -> bool:
    """Whether a bar would show: a terminal and no other bar already on screen."""
    return console.is_terminal and not getattr(console, "_live_stack", None)


@contextmanager
def step_progress(description: str, total: int, unit: str = "rows") -> Iterator[Advance]:
    """A bar for one long step, yielding `advance(n)`. Outside a terminal, or inside another
    step's bar (rich shows one live display at a time), it logs the step once instead."""
    if not live():
        if not console.is_terminal:
            console.log(f"{description} ({total:,} {unit})")
        yield lambda n: None
        return
    from rich.progress import Progress

    progress = Progress(*bar_columns(), console=console)
    task = progress.add_task(description, total=max(total, 1), unit=unit, info="")
    with progress:
        yield lambda n: progress.advance(task, n)
        progress.update(task, completed=max(total, 1))  # an estimate that was high still ends full
