"""The commands that run the stages, in the same order and with the same exit codes for every
task (DESIGN.md): validate → audit → prepare → baseline → train → evaluate → doctor → report →
track. What a stage does for a task lives in `tunewise.tasks`; this module only sequences them.

    import tunewise
    metrics = tunewise.run("configs/banking77.yaml", ["data.max_rows=300"])

Exit codes (through the CLI): 0 done; 1 the work ran and found a blocking problem (an audit or
doctor error); 2 bad input, before any model loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunewise.config import RunConfig, load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import BlockingFinding, InputError, Problem
from tunewise.core.findings import Finding, has_errors, print_findings, write_findings
from tunewise.data import curate
from tunewise.doctor.diagnose import diagnose
from tunewise.report.audit_html import write_audit
from tunewise.report.track import track
from tunewise.studies.tune import outputs
from tunewise.studies.tune.search import search
from tunewise.tasks import TASKS
from tunewise.training import checkpoint, distributed

Config = str | Path | dict | RunConfig | None


def run(config: Config = None, overrides: Sequence[str] = ()) -> dict:
    """Validate, audit, prepare, score the baseline, train, evaluate, diagnose, report, track."""
    cfg = configure(config, overrides)
    task = TASKS[cfg.task]
    data = task.load_data(cfg)
    run_dir = rundir.start_run(cfg)
    stop_on_audit(cfg, task.audit(cfg, data, run_dir), run_dir)
    cfg, data = task.prepare(cfg, data, run_dir)
    task.baseline(cfg, data, run_dir)
    task.train(cfg, data, run_dir)
    metrics = task.evaluate(run_dir)
    findings = doctor(run_dir)
    report(run_dir)
    logged = track(run_dir, cfg.track.backends, cfg.track.uri, cfg.track.experiment)
    if logged:
        console.log("tracked: " + ", ".join(f"{k} run {v}" for k, v in logged.items()))
    if has_errors(findings):
        raise BlockingFinding(f"the doctor found errors; see {run_dir / rundir.DOCTOR}")
    return metrics


def train(config: Config = None, overrides: Sequence[str] = (), resume: str | Path | None = None):
    """Validate, prepare and train: model/, history.jsonl, checkpoints/, training.json.

    `resume` (a run directory, or "auto" for this config's) continues from its newest valid
    checkpoint, exactly as if training had never stopped.
    """
    cfg = configure(config, overrides)
    task = TASKS[cfg.task]
    if resume is not None and not task.RESUMABLE:
        fix = "start the run again without --resume (exact resume covers classification so far)"
        raise InputError([Problem("command line", None, "--resume", "not supported here", fix)])
    writer = distributed.is_main()  # under DDP one process writes; all prepare the same rows
    cfg, resume_from = checkpoint.resume_point(cfg, resume, writer)
    data = task.load_data(cfg)
    run_dir = rundir.start_run(cfg) if writer and resume_from is None else cfg.run_dir()
    cfg, data = task.prepare(cfg, data, run_dir if writer else None)
    if resume_from is not None:
        checkpoint.check_resumable(resume_from, cfg)
    task.train(cfg, data, run_dir, resume_from)
    return run_dir


def tune(config: Config, overrides: Sequence[str] = (), *, worker: bool = False) -> dict:
    """Search on validation (studies/tune/), then `run` the best config: the one time the test
    set is read. A doctor's error in that run still ends with exit code 1."""
    cfg = configure(config, overrides)
    summary = search(config if config is not None else cfg, overrides, worker=worker)
    if worker or not cfg.tune.retrain:
        return summary
    tune_dir = cfg.run_dir() / rundir.TUNE
    best = tune_dir / "best_config.yaml"
    console.log(f"retraining the best config, then scoring it on test once: {best}")
    blocked = None
    try:
        run(best)
    except BlockingFinding as exc:  # the run directory is complete; the doctor found errors
        blocked = exc
    summary["retrained"] = outputs.retrained(load_config(best).run_dir())
    outputs.write_summary(tune_dir, summary)
    if blocked is not None:
        raise blocked
    return summary


def configure(config: Config, overrides: Sequence[str] = ()) -> RunConfig:
    """A checked RunConfig from a path, a dict, a RunConfig or defaults, plus overrides."""
    if isinstance(config, RunConfig):
        return load_config(config.to_dict(), overrides) if overrides else config
    return load_config(config, overrides)


def stop_on_audit(cfg: RunConfig, findings: list[Finding], run_dir: Path) -> None:
    """An error finding in the data stops the run (exit 1) unless audit.fail_on: never."""
    if has_errors(findings) and cfg.audit.fail_on == "error":
        raise BlockingFinding(
            f"the data audit found errors; see {run_dir / rundir.AUDIT} "
            f"(set audit.fail_on=never to train anyway)"
        )


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    forgetting: bool = False,
    columns: tuple[str | None, str | None] = (None, None),
) -> dict:
    """Score the tuned model on the run's test set (or `data`, read with `columns`) against the
    baseline; `overrides` apply to this evaluation only. The forgetting probe runs again only
    with `forgetting` (the encoder has not changed since `run` measured it). The run's own
    test set rewrites report.html; `data` writes metrics-<stem>.json and .html."""
    task = TASKS[_config_of(run_dir).task]
    rundir.lock(Path(run_dir))  # it rewrites metrics, oos.json and the report: one writer
    metrics = task.evaluate(run_dir, data, overrides, forgetting, columns)
    if data is None:
        report(run_dir)
    return metrics


def doctor(run_dir: str | Path) -> list[Finding]:
    """Diagnose a finished run: write doctor.json and print the findings."""
    run_dir = Path(run_dir)
    findings = diagnose(run_dir, _config_of(run_dir).doctor)
    write_findings(run_dir / rundir.DOCTOR, findings)
    print_findings(findings, f"doctor: {run_dir}")
    return findings


def report(run_dir: str | Path) -> Path:
    """Write the run's self-contained report.html."""
    path = TASKS[_config_of(run_dir).task].write_report(run_dir)
    console.log(f"report written: {path}")
    return path


def audit(
    data: str | Path,
    test: str | Path | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    out: str | Path = "audit",
    config: str | Path | None = None,
) -> list[Finding]:
    """`tunewise audit`: the run's data audit on a file (and its test file), into OUT/."""
    cfg = curate.command_config(config, data)
    text_col, label_col = text_col or cfg.data.text_col, label_col or cfg.data.label_col
    train_ex, test_ex = curate.read_files([(data, "DATA"), (test, "--test")], text_col, label_col)
    assert train_ex is not None
    findings, summary = curate.run_audit(cfg, train_ex, test_ex)
    write_audit(Path(out), findings, summary)
    return findings


def _config_of(run_dir: str | Path) -> RunConfig:
    return load_config(Path(run_dir) / rundir.CONFIG)
