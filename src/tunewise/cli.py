"""The `tunewise` command: a table {command: function}; parsing only, no logic.

Each command calls the same function a Python user can (`tunewise.run`, `tunewise.pipeline.
evaluate`, ...). Those modules import torch and transformers, so they load only when a command
runs: `tunewise --help` and a mistyped command answer at once.

Exit codes: 0 success; 1 the work ran and found a blocking problem; 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise import __version__
from tunewise.config.schema import (
    ADAPT_METHODS,
    PII_MODES,
    PRUNERS,
    SAMPLERS,
    SELECT_STRATEGIES,
    SERVE_BACKENDS,
)
from tunewise.core.errors import BlockingFinding, InputError, TrainingInterrupted


def api(path: str) -> Callable[..., Any]:
    """The function at "module:name", imported now: the first use of torch happens here."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# --- what each command calls ----------------------------------------------------------------


def _init(a: argparse.Namespace) -> None:
    api("tunewise.config.starter:init")(a.data, a.test, a.out, a.text_col, a.label_col, a.force)


def _run(a: argparse.Namespace) -> None:
    api("tunewise.pipeline:run")(a.config, a.overrides)


def _train(a: argparse.Namespace) -> None:
    distributed = importlib.import_module("tunewise.training.distributed")
    if a.nproc > 1 and not distributed.launched():  # start N data-parallel copies of this command
        resume = ["--resume", a.resume] if a.resume else []
        code = distributed.relaunch(["train", a.config, *a.overrides, *resume], a.nproc)
        if code:
            raise SystemExit(code)
        return
    run_dir = api("tunewise.pipeline:train")(a.config, a.overrides, resume=a.resume)
    if distributed.is_main():
        print(run_dir)
    distributed.finish()


def _tune(a: argparse.Namespace) -> None:
    options = {
        "trials": a.trials,
        "timeout": a.timeout,
        "sampler": a.sampler,
        "pruner": a.pruner,
        "storage": a.storage,
        "workers": a.workers,
        "study": a.study,
    }
    given = [f"tune.{k}={json.dumps(v)}" for k, v in options.items() if v is not None]
    api("tunewise.pipeline:tune")(a.config, [*a.overrides, *given], worker=a.worker)


def _evaluate(a: argparse.Namespace) -> None:
    columns = (a.text_col, a.label_col)
    api("tunewise.pipeline:evaluate")(a.run_dir, a.data, a.overrides, a.forgetting, columns)


def _report(a: argparse.Namespace) -> None:
    print(api("tunewise.pipeline:report")(a.run_dir))


def _doctor(a: argparse.Namespace) -> None:
    findings = api("tunewise.pipeline:doctor")(a.run_dir)
    if any(f.severity == "error" for f in findings):
        raise BlockingFinding(f"the doctor found errors in {a.run_dir}")


def _runs(a: argparse.Namespace) -> None:
    runs = importlib.import_module("tunewise.report.runs")
    runs.print_runs(runs.list_runs(a.output_dir))


def _audit(a: argparse.Namespace) -> None:
    findings = api("tunewise.pipeline:audit")(
        a.data, a.test, a.text_col, a.label_col, a.out, a.config
    )
    if any(f.severity == "error" for f in findings):
        raise BlockingFinding(f"the audit found errors; see {a.out}/audit.json")


def _prepare(a: argparse.Namespace) -> None:
    api("tunewise.data.curate:prepare")(
        a.data, a.out, a.config, a.pii, a.text_col, a.label_col, a.augment
    )


def _compare(a: argparse.Namespace) -> None:
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    api("tunewise.studies.compare:compare_methods")(a.config, methods, a.overrides)


def _select(a: argparse.Namespace) -> None:
    api("tunewise.feedback.select:select")(
        a.run_dir, a.pool, a.n, a.out, a.strategy, a.text_col, a.similarity
    )


def _refine(a: argparse.Namespace) -> None:
    record = api("tunewise.feedback.refine:refine")(a.run_dir, a.feedback_db, a.data, a.tolerance)
    if not record["decision"]["promoted"]:
        raise BlockingFinding("not promoted: " + "; ".join(record["decision"]["reasons"]))


def _export(a: argparse.Namespace) -> None:
    api("tunewise.serving.export:export")(a.run_dir, a.format, a.quantize)


def _serve(a: argparse.Namespace) -> None:
    limits = api("tunewise.serving.app:Limits")(
        max_text_chars=a.max_text_chars, max_batch=a.max_batch, max_wait_ms=a.max_wait_ms
    )
    api("tunewise.serving.server:serve")(
        a.run_dir,
        a.host,
        a.port,
        a.feedback_db,
        a.backend,
        a.api_token,
        limits,
        a.threads,
        a.oos_threshold,
    )


# --- arguments ------------------------------------------------------------------------------


def _at_least(kind: Callable[[str], Any], least: float) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, refused below `least` (or NaN) at start-up, before
    any model loads: `--max-batch 0` is a usage error, not a server that never answers."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= least:
            bound = f"{least:g} or more" if least > float("-inf") else "a number"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")


def _run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory, e.g. runs/banking77")


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--nproc",
        type=_at_least(int, 1),
        default=1,
        help="data-parallel processes on this machine (DDP through Accelerate: gloo "
        "on CPU, NCCL on GPU); the global batch stays train.batch_size",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue from the run's newest valid checkpoint, exactly as if never "
        "stopped; auto: this config's run directory (a fresh start if it has none)",
    )


def _tune_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--trials", type=_at_least(int, 1), help="trials the study should hold (tune.trials)"
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    p.add_argument("--sampler", choices=SAMPLERS, help="tune.sampler (config default: tpe)")
    p.add_argument("--pruner", choices=PRUNERS, help="tune.pruner (config default: hyperband)")
    p.add_argument("--storage", help="journal file, sqlite:///FILE or postgresql://... URL")
    p.add_argument(
        "--workers", type=_at_least(int, 1), help="processes on this machine sharing the study"
    )
    p.add_argument("--study", help="study name; an existing study resumes")
    p.add_argument(
        "--worker",
        action="store_true",
        help="join the study as a worker: run queued trials, write no outputs",
    )


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.batch_size=64")
    p.add_argument(
        "--data",
        help="another labelled file to score: writes RUN_DIR/metrics-<name>.json and .html "
        "(default: the run's test set, into metrics.json and report.html)",
    )
    p.add_argument("--text-col", help="the text column of --data (default: the run's)")
    p.add_argument("--label-col", help="the label column of --data (default: the run's)")
    p.add_argument(
        "--forgetting",
        action="store_true",
        help="measure the forgetting probe again (minutes; default: keep what run measured, "
        "since the encoder has not changed)",
    )


def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="your labelled file (CSV, TSV, JSONL, Parquet, datasets folder)")
    p.add_argument("--test", help="a test file with the same columns (default: run holds out 20%%)")
    p.add_argument("--out", help="config to write (default: DATA's name with .yaml, here)")
    p.add_argument("--text-col", help="the text column, if the guess is wrong")
    p.add_argument("--label-col", help="the label column, if the guess is wrong")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="labelled file to audit (CSV, JSONL, Parquet, datasets folder)")
    p.add_argument("--test", help="test file, checked for leakage from DATA")
    p.add_argument("--text-col", help="text column (default: data.text_col of --config, 'text')")
    p.add_argument("--label-col", help="label column (default: data.label_col, 'label')")
    p.add_argument("--out", default="audit", help="folder for audit.json and audit.html")
    p.add_argument("--config", help="YAML config whose audit:, model:, data: sections apply")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="labelled file to clean")
    p.add_argument("--out", required=True, help="cleaned file (.csv or .jsonl)")
    p.add_argument("--config", help="YAML config whose prepare: section sets the steps")
    p.add_argument("--pii", choices=PII_MODES, help="override prepare.pii (config default: report)")
    p.add_argument("--text-col", help="text column (default: data.text_col, 'text')")
    p.add_argument("--label-col", help="label column (default: data.label_col, 'label')")
    p.add_argument(
        "--augment",
        action="store_true",
        help="DATA is training data: add the rows prepare.augment makes",
    )


def _compare_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--methods",
        default=",".join(ADAPT_METHODS),
        help="comma-separated adapt methods; METHOD:key=value overrides one method",
    )


def _select_args(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("--pool", required=True, help="unlabelled texts (CSV, JSONL, Parquet)")
    p.add_argument("--n", type=_at_least(int, 1), required=True, help="how many texts to pick")
    p.add_argument("--out", help="CSV for the experts (default: RUN_DIR/select.csv)")
    p.add_argument(
        "--strategy", choices=SELECT_STRATEGIES, default="entropy", help="uncertainty to rank by"
    )
    p.add_argument("--text-col", help="text column of the pool (default: data.text_col)")
    p.add_argument(
        "--similarity",
        type=float,
        default=0.7,
        help="skip a text this similar (character 3-gram Jaccard) to one already picked",
    )


def _refine_args(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("--feedback-db", help="SQLAlchemy URL or file (default: RUN_DIR/feedback.db)")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        help="newly labelled rows (e.g. the filled-in select.csv); repeatable",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="largest accuracy drop (test set, feedback set) that still promotes",
    )


def _export_args(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format")
    p.add_argument("--quantize", choices=("int8",), help="dynamic quantisation of the weights")


def _serve_args(p: argparse.ArgumentParser) -> None:
    _run_dir(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address; anything but loopback needs a token"
    )
    p.add_argument("--port", type=_at_least(int, 0), default=8000, help="port to listen on")
    p.add_argument("--feedback-db", help="SQLAlchemy URL or file (default: RUN_DIR/feedback.db)")
    p.add_argument(
        "--backend",
        choices=SERVE_BACKENDS,
        default="torch",
        help="onnx: ONNX Runtime on RUN_DIR/onnx/ (tunewise export first)",
    )
    p.add_argument("--api-token", help="required bearer token (default: $TUNEWISE_API_TOKEN)")
    p.add_argument(
        "--max-text-chars", type=_at_least(int, 1), default=2000, help="longer texts get a 413"
    )
    p.add_argument(
        "--max-batch", type=_at_least(int, 1), default=32, help="most texts per forward pass"
    )
    p.add_argument(
        "--max-wait-ms",
        type=_at_least(float, 0),
        default=0.0,
        help="wait this long for more requests before a forward pass",
    )
    p.add_argument(
        "--threads", type=_at_least(int, 1), help="intra-op threads for the model (default: all)"
    )
    p.add_argument(
        "--oos-threshold",
        type=_at_least(float, float("-inf")),  # any number but NaN
        help="abstain above this out-of-scope score (default: the run's oos.json; inf: never)",
    )


@dataclass(frozen=True)
class Command:
    call: Callable[[argparse.Namespace], None]
    help: str
    args: Callable[[argparse.ArgumentParser], object]
    examples: tuple[str, ...] = field(default=())


COMMANDS: dict[str, Command] = {
    "init": Command(
        _init,
        "start here: guess the text and label columns of your file and write a starter config",
        _init_args,
        ("tunewise init my.csv", "tunewise init train.csv --test test.csv --out intents.yaml"),
    ),
    "run": Command(
        _run,
        "audit → baseline → train → evaluate → doctor → report, into a run directory",
        _config_args,
        ("tunewise run configs/banking77.yaml", "tunewise run my.yaml train.epochs=3 seed=14"),
    ),
    "audit": Command(
        _audit,
        "find what is wrong with a data set; writes audit.json and audit.html",
        _audit_args,
        ("tunewise audit train.csv --test test.csv --label-col category",),
    ),
    "prepare": Command(
        _prepare,
        "clean, redact and dedup a data set; dropped rows go to FILE's .dropped.jsonl with why",
        _prepare_args,
        ("tunewise prepare raw.csv --out clean.csv --pii redact",),
    ),
    "train": Command(
        _train,
        "validate, prepare and train; writes model/, history.jsonl, checkpoints/",
        _train_args,
        ("tunewise train configs/banking77.yaml --nproc 2", "tunewise train my.yaml --resume auto"),
    ),
    "tune": Command(
        _tune,
        "search hyperparameters with Optuna on validation; writes RUN_DIR/tune/ "
        "(best_config.yaml, trials.csv, plots), then retrains the best config",
        _tune_args,
        ("tunewise tune configs/banking77.yaml --trials 20", "tunewise tune my.yaml --workers 2"),
    ),
    "evaluate": Command(
        _evaluate,
        "score a run's model on its test set (or --data) against the baseline",
        _evaluate_args,
        (
            "tunewise evaluate runs/banking77",
            "tunewise evaluate runs/my --data new.csv --text-col message --label-col intent",
            "tunewise evaluate runs/banking77 eval.batch_size=64 --forgetting",
        ),
    ),
    "doctor": Command(
        _doctor,
        "name the pitfalls of a finished run; writes RUN_DIR/doctor.json",
        _run_dir,
        ("tunewise doctor runs/banking77",),
    ),
    "runs": Command(
        _runs,
        "list the runs in an output folder with their key metrics",
        lambda p: [p.add_argument("output_dir", nargs="?", default="runs", help="output folder")],
        ("tunewise runs", "tunewise runs my_runs"),
    ),
    "report": Command(
        _report, "write RUN_DIR/report.html", _run_dir, ("tunewise report runs/banking77",)
    ),
    "compare": Command(
        _compare,
        "train each adapt method on the same split and seed; writes compare.json and compare.html",
        _compare_args,
        ("tunewise compare configs/banking77.yaml --methods full,lora lora:train.lr=1e-3",),
    ),
    "select": Command(
        _select,
        "active learning: rank unlabelled texts by uncertainty, without near-duplicates; "
        "writes a CSV for experts to label",
        _select_args,
        ("tunewise select runs/banking77 --pool unlabelled.csv --n 50",),
    ),
    "refine": Command(
        _refine,
        "audit feedback and new labels, retrain, promote only without regression "
        "(exit 1 with reasons); writes lineage.json",
        _refine_args,
        ("tunewise refine runs/banking77 --data labelled.csv",),
    ),
    "export": Command(
        _export,
        "export the model to ONNX (optionally int8), checked against PyTorch; writes RUN_DIR/onnx/",
        _export_args,
        ("tunewise export runs/banking77 --format onnx --quantize int8",),
    ),
    "serve": Command(
        _serve,
        "serve the model (POST /predict, /generate, /feedback; GET /health, /metrics, /docs) "
        "with a tester page at /",
        _serve_args,
        ("tunewise serve runs/banking77", "tunewise serve runs/banking77 --port 8080"),
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped option, in the usage of its own command."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{_suggestion(self, message)}\n")


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    words = [w.strip("'\",:") for w in message.split()]
    options = [o for a in parser._actions for o in a.option_strings]
    for word in words:
        if word.startswith("-") and word not in options:
            close = difflib.get_close_matches(word.split("=")[0], options, n=1)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tunewise",
        description="Fine-tune pre-trained language models the careful way, and prove the result.",
        epilog="Start with your own CSV: tunewise init my.csv, tunewise run my.yaml, then "
        "tunewise serve runs/my. "
        "'tunewise COMMAND --help' shows a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"tunewise {__version__}")
    verbose = "show the source location of each log line"
    parser.add_argument("--verbose", action="store_true", help=verbose)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        examples = "\n".join(f"  {e}" for e in command.examples)
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=_Help,
        )
        command.args(p)
        # after the command too (tunewise run x.yaml --verbose); unset, the top level's stands
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
        p.set_defaults(func=command.call)
    return parser


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown beside each option (not an empty one: the help says what happens then);
    examples kept on their own lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _unknown_command(argv: Sequence[str]) -> str | None:
    """A "did you mean" for the first word when it is not a command (argparse lists them all)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first in COMMANDS:
        return None
    close = difflib.get_close_matches(first, list(COMMANDS), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"tunewise: error: unknown command '{first}'; {hint}see tunewise --help"


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    takes_overrides = isinstance(getattr(args, "overrides", None), list)
    if extra and takes_overrides and all("=" in x for x in extra):
        args.overrides += extra  # key=value overrides may also follow an option (--methods ...)
    elif extra:
        sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr,index]
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _quiet_libraries() -> None:
    """Keep the terminal for tunewise's own progress: no per-load reports or weight bars."""
    transformers = importlib.import_module("transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = _unknown_command(argv)
    if unknown:
        print(unknown, file=sys.stderr)
        return 2
    try:
        args = _parse(build_parser(), argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2), already printed
        return int(exc.code or 0)
    importlib.import_module("tunewise.core.console").set_verbose(args.verbose)
    _quiet_libraries()
    try:
        args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BlockingFinding as exc:
        print(f"blocked: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingInterrupted as exc:  # SIGTERM/SIGINT after a checkpoint: 143 / 130
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
