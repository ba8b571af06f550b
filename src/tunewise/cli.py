"""The `tunewise` command: a table {command: function}; parsing only, no logic.

Exit codes: 0 success; 1 the work ran and found a blocking problem; 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tunewise.errors import BlockingFinding, InputError


def _run(a: argparse.Namespace) -> None:
    from tunewise.pipeline import run

    run(a.config, a.overrides)


def _train(a: argparse.Namespace) -> None:
    from tunewise.pipeline import train

    print(train(a.config, a.overrides))


def _evaluate(a: argparse.Namespace) -> None:
    from tunewise.pipeline import evaluate

    evaluate(a.run_dir, a.data)


def _report(a: argparse.Namespace) -> None:
    from tunewise.pipeline import report

    print(report(a.run_dir))


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")


COMMANDS: dict[str, tuple[Callable, str, Callable[[argparse.ArgumentParser], object]]] = {
    "run": (
        _run,
        "audit → baseline → train → evaluate → report, into a run directory",
        _config_args,
    ),
    "train": (
        _train,
        "validate data and train; writes model/, history.jsonl, checkpoints/",
        _config_args,
    ),
    "evaluate": (
        _evaluate,
        "score a run's model on its test set (or --data) against the baseline",
        lambda p: (p.add_argument("run_dir"), p.add_argument("--data")),
    ),
    "report": (_report, "write RUN_DIR/report.html", lambda p: p.add_argument("run_dir")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunewise", description="Fine-tune pre-trained language models the careful way."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, add_args) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=func)
    return parser


def _quiet_libraries() -> None:
    """Keep the terminal for tunewise's own progress: no per-load reports or weight bars."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BlockingFinding as exc:
        print(f"blocked: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
