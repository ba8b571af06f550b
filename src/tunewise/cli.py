"""The `tunewise` command: a table {command: function}; parsing only, no logic.

Exit codes: 0 success; 1 the work ran and found a blocking problem; 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from tunewise.errors import BlockingFinding, InputError
from tunewise.training.faults import TrainingInterrupted


def _run(a: argparse.Namespace) -> None:
    from tunewise.pipeline import run

    run(a.config, a.overrides)


def _train(a: argparse.Namespace) -> None:
    from tunewise.pipeline import train
    from tunewise.training import distributed

    if a.nproc > 1 and not distributed.launched():  # start N data-parallel copies of this command
        resume = ["--resume", a.resume] if a.resume else []
        code = distributed.relaunch(["train", a.config, *a.overrides, *resume], a.nproc)
        if code:
            raise SystemExit(code)
        return
    run_dir = train(a.config, a.overrides, resume=a.resume)
    if distributed.is_main():
        print(run_dir)
    distributed.finish()


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--nproc",
        type=int,
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


def _tune(a: argparse.Namespace) -> None:
    from tunewise.tuning.search import tune

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
    tune(a.config, [*a.overrides, *given], worker=a.worker)


def _tune_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--trials", type=int, help="trials the study should hold (tune.trials)")
    p.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    p.add_argument("--sampler", choices=("tpe", "random", "grid"), help="tune.sampler")
    p.add_argument("--pruner", choices=("hyperband", "median", "none"), help="tune.pruner")
    p.add_argument("--storage", help="journal file, sqlite:///FILE or postgresql://... URL")
    p.add_argument("--workers", type=int, help="processes on this machine sharing the study")
    p.add_argument("--study", help="study name; an existing study resumes")
    p.add_argument(
        "--worker",
        action="store_true",
        help="join the study as a worker: run queued trials, write no outputs",
    )


def _evaluate(a: argparse.Namespace) -> None:
    from tunewise.pipeline import evaluate

    evaluate(a.run_dir, a.data)


def _report(a: argparse.Namespace) -> None:
    from tunewise.pipeline import report

    print(report(a.run_dir))


def _doctor(a: argparse.Namespace) -> None:
    from tunewise.findings import has_errors
    from tunewise.pipeline import doctor

    if has_errors(doctor(a.run_dir)):
        raise BlockingFinding(f"the doctor found errors in {a.run_dir}")


def _runs(a: argparse.Namespace) -> None:
    from tunewise.report.runs import list_runs, print_runs

    print_runs(list_runs(a.output_dir))


def _audit(a: argparse.Namespace) -> None:
    from tunewise.curation import audit
    from tunewise.findings import has_errors

    if has_errors(audit(a.data, a.test, a.text_col, a.label_col, a.out, a.config)):
        raise BlockingFinding(f"the audit found errors; see {a.out}/audit.json")


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="labelled file to audit (CSV, JSONL, Parquet, datasets folder)")
    p.add_argument("--test", help="test file, checked for leakage from DATA")
    p.add_argument("--text-col", help="text column (default: data.text_col, 'text')")
    p.add_argument("--label-col", help="label column (default: data.label_col, 'label')")
    p.add_argument("--out", default="audit", help="folder for audit.json and audit.html")
    p.add_argument("--config", help="YAML config whose audit:, model:, data: sections apply")


def _prepare(a: argparse.Namespace) -> None:
    from tunewise.curation import prepare

    prepare(a.data, a.out, a.config, a.pii, a.text_col, a.label_col, a.augment)


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="labelled file to clean")
    p.add_argument("--out", required=True, help="cleaned file (.csv or .jsonl)")
    p.add_argument("--config", help="YAML config whose prepare: section sets the steps")
    p.add_argument("--pii", choices=("redact", "report", "off"), help="override prepare.pii")
    p.add_argument("--text-col", help="text column (default: data.text_col, 'text')")
    p.add_argument("--label-col", help="label column (default: data.label_col, 'label')")
    p.add_argument(
        "--augment",
        action="store_true",
        help="DATA is training data: add the rows prepare.augment makes",
    )


def _compare(a: argparse.Namespace) -> None:
    from tunewise.comparison import compare_methods

    compare_methods(a.config, [m.strip() for m in a.methods.split(",") if m.strip()], a.overrides)


def _compare_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--methods",
        default="full,head,freeze,bitfit,lora",
        help="comma-separated adapt methods; METHOD:key=value overrides one method",
    )


def _select(a: argparse.Namespace) -> None:
    from tunewise.feedback.select import select

    select(a.run_dir, a.pool, a.n, a.out, a.strategy, a.text_col, a.similarity)


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--pool", required=True, help="unlabelled texts (CSV, JSONL, Parquet)")
    p.add_argument("--n", type=int, required=True, help="how many texts to pick")
    p.add_argument("--out", help="CSV for the experts (default: RUN_DIR/select.csv)")
    p.add_argument(
        "--strategy",
        choices=("entropy", "margin"),
        default="entropy",
        help="uncertainty score to rank by",
    )
    p.add_argument("--text-col", help="text column of the pool (default: data.text_col)")
    p.add_argument(
        "--similarity",
        type=float,
        default=0.7,
        help="skip a text this similar (character 3-gram Jaccard) to one already picked",
    )


def _refine(a: argparse.Namespace) -> None:
    from tunewise.feedback.refine import refine

    decision = refine(a.run_dir, a.feedback_db, a.data, a.tolerance)["decision"]
    if not decision["promoted"]:
        raise BlockingFinding("not promoted: " + "; ".join(decision["reasons"]))


def _refine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
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


def _export(a: argparse.Namespace) -> None:
    from tunewise.serving.export import export

    export(a.run_dir, a.format, a.quantize)


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    p.add_argument("--quantize", help="int8: dynamic quantisation of the weights")


def _serve(a: argparse.Namespace) -> None:
    from tunewise.serving.app import Limits
    from tunewise.serving.server import serve

    limits = Limits(
        max_text_chars=a.max_text_chars, max_batch=a.max_batch, max_wait_ms=a.max_wait_ms
    )
    serve(a.run_dir, a.host, a.port, a.feedback_db, a.backend, a.api_token, limits, a.threads)


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address; anything but loopback needs an API token"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--feedback-db", help="SQLAlchemy URL (default: sqlite RUN_DIR/feedback.db)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: ONNX Runtime on RUN_DIR/onnx/ (tunewise export first)",
    )
    p.add_argument("--api-token", help="required bearer token (default: $TUNEWISE_API_TOKEN)")
    p.add_argument("--max-text-chars", type=int, default=2000, help="longer texts get a 413")
    p.add_argument("--max-batch", type=int, default=32, help="most texts per forward pass")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="wait this long for more requests before a forward pass",
    )
    p.add_argument("--threads", type=int, help="intra-op threads for the model (default: all)")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5")


COMMANDS: dict[str, tuple[Callable, str, Callable[[argparse.ArgumentParser], object]]] = {
    "run": (
        _run,
        "audit → baseline → train → evaluate → report, into a run directory",
        _config_args,
    ),
    "audit": (
        _audit,
        "find what is wrong with a data set; writes audit.json and audit.html",
        _audit_args,
    ),
    "prepare": (
        _prepare,
        "clean, redact and dedup a data set; dropped rows go to "
        "FILE's .dropped.jsonl with their reason",
        _prepare_args,
    ),
    "train": (
        _train,
        "validate data and train; writes model/, history.jsonl, checkpoints/",
        _train_args,
    ),
    "tune": (
        _tune,
        "search hyperparameters with Optuna on validation; writes RUN_DIR/tune/ "
        "(best_config.yaml, trials.csv, plots), then retrains the best config",
        _tune_args,
    ),
    "evaluate": (
        _evaluate,
        "score a run's model on its test set (or --data) against the baseline",
        lambda p: (p.add_argument("run_dir"), p.add_argument("--data")),
    ),
    "doctor": (
        _doctor,
        "name the pitfalls of a finished run; writes RUN_DIR/doctor.json",
        lambda p: p.add_argument("run_dir"),
    ),
    "runs": (
        _runs,
        "list the runs in an output folder with their key metrics",
        lambda p: p.add_argument("output_dir", nargs="?", default="runs"),
    ),
    "report": (_report, "write RUN_DIR/report.html", lambda p: p.add_argument("run_dir")),
    "compare": (
        _compare,
        "train each adapt method on the same split and seed; writes compare.json and compare.html",
        _compare_args,
    ),
    "select": (
        _select,
        "active learning: rank unlabelled texts by uncertainty, without "
        "near-duplicates; writes a CSV for experts to label",
        _select_args,
    ),
    "refine": (
        _refine,
        "audit feedback and new labels, retrain, promote only without "
        "regression (exit 1 with reasons); writes lineage.json",
        _refine_args,
    ),
    "export": (
        _export,
        "export the model to ONNX (optionally int8), checked against PyTorch; writes RUN_DIR/onnx/",
        _export_args,
    ),
    "serve": (
        _serve,
        "serve the model (POST /predict, /generate, /feedback; GET /health, "
        "/metrics, /docs) with a tester page at /",
        _serve_args,
    ),
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
    args, extra = parser.parse_known_args(argv)
    takes_overrides = isinstance(getattr(args, "overrides", None), list)
    if extra and takes_overrides and all("=" in x for x in extra):
        args.overrides += extra  # key=value overrides may also follow an option (--methods ...)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
