"""One console for everything tunewise says while it works (stderr), one for results (stdout).

Log lines and progress bars share `console`, so a log line printed during a bar lands above it
instead of on it. Source locations (`pipeline.py:134`) are for developers: `set_verbose(True)`
(the CLI's `--verbose`) adds them.

    from tunewise.core.console import console, results
    console.log("audit: 300 training rows")
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, log_path=False)
results = Console()


def set_verbose(verbose: bool) -> None:
    """Show (or hide) the source location at the end of each log line."""
    console._log_render.show_path = verbose
