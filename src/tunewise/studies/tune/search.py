"""`tunewise tune`: Optuna search over the config, outside the trainer, then one honest retrain.

    tunewise tune configs/banking77.yaml --trials 30 --sampler tpe --pruner hyperband
    tunewise tune CONFIG --workers 4                       # 4 processes, one journal file
    tunewise tune CONFIG --storage postgresql://u:p@db/optuna --study b77   # then, elsewhere:
    tunewise tune CONFIG --storage postgresql://u:p@db/optuna --study b77 --worker

Why a queue: the process that opens the study enqueues exactly the trials still missing (grid
points themselves for a grid search), and every process, here or on other machines, pops them.
So N processes finish with the requested count, trial numbers continue when a study resumes,
and a grid point is never run twice. Trials found running when a study is opened again were
interrupted: they are marked failed with that reason and their slot is queued anew.

Each process samples with its own seed (same seeds would propose the same points), trains on
train/validation only, exactly as `run` trains (objective.py), and reports every evaluation to
the pruner. The opening process waits for the others and writes RUN_DIR/tune/ once; then
`tunewise.pipeline.tune` retrains the best config with `tunewise run`, the only time the test
set is read.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tunewise.config import RunConfig, TuneConfig, dump_config, load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import InputError, Problem
from tunewise.studies.tune import outputs, space
from tunewise.studies.tune.objective import Objective, TrialData

INTERRUPTED = "interrupted: its process ended before the trial finished"
REMOTE = ("postgresql", "postgres", "mysql")  # storages other machines may be writing to


def search(
    config: str | Path | dict | RunConfig, overrides: Sequence[str] = (), *, worker: bool = False
) -> dict:
    """Search and write RUN_DIR/tune/ (the retrain is `tunewise.pipeline.tune`'s); returns
    tune/summary.json's content.

    With `worker=True` the process only runs queued trials of an existing study and writes nothing.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if isinstance(config, RunConfig):
        config = config.to_dict()
    cfg = load_config(config, overrides)
    _check_task(cfg)
    origin = str(config) if isinstance(config, str | Path) else "config"
    params = space.parse_space(cfg.tune.space or space.default_space(cfg), cfg.to_dict(), origin)
    if not worker:  # workers share tune/ with the process that started them
        rundir.lock(cfg.run_dir())
    tune_dir = cfg.run_dir() / rundir.TUNE
    tune_dir.mkdir(parents=True, exist_ok=True)
    t = cfg.tune
    url = storage_url(t, tune_dir)
    if worker:
        return _work(cfg, params, url, tune_dir)
    study = open_study(cfg, url, params, seed=_seed(cfg))
    queued = plan(study, t, params, _seed(cfg))
    console.log(f"study {study.study_name!r} ({_safe(url) or 'in memory'}): {queued} trials queued")
    deadline = time.monotonic() + t.timeout if t.timeout else None
    data = TrialData.load(cfg, tune_dir / "data")
    workers = start_workers(cfg, url, queued, tune_dir)
    run_trials(
        study,
        Objective(cfg.to_dict(), params, data, t),
        _share(queued, t.workers, 0),
        deadline,
    )
    _join(workers, study, url, deadline, lambda n: _drain(study, cfg, params, data, n, deadline))
    return outputs.write(study, cfg, params, tune_dir, _safe(url))


def _seed(cfg: RunConfig) -> int:
    return cfg.tune.seed if cfg.tune.seed is not None else cfg.seed


def _check_task(cfg: RunConfig) -> None:
    if cfg.task != "classification":
        fix = "tune a config with task: classification"
        raise InputError([Problem("config", None, "task", "tune supports classification", fix)])


def storage_url(t: TuneConfig, tune_dir: Path) -> str | None:
    """The storage to use: as given; a journal file in tune/ when processes must share or a named
    study must outlive this process; else None (in memory)."""
    if t.storage:
        return t.storage
    if t.workers > 1 or t.study:
        return str((tune_dir / "study.journal").resolve())
    return None


def open_storage(url: str | None) -> Any:
    """Optuna storage for a URL: RDB for sqlite/postgresql/mysql URLs, else a journal file."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if re.match(r"^(sqlite|postgres|postgresql|mysql)(\+\w+)?:", url):
        url = re.sub(r"^postgres(ql)?:", "postgresql+psycopg:", url)  # psycopg 3, not psycopg2
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


def open_study(cfg: RunConfig, url: str | None, params: list, seed: int | None) -> optuna.Study:
    """Create the study or load it by name; sampler and pruner are this process's own."""
    t = cfg.tune
    return optuna.create_study(
        storage=open_storage(url),
        study_name=t.study or cfg.name,
        direction="minimize" if t.metric == "loss" else "maximize",
        sampler=build_sampler(t, params, seed),
        pruner=build_pruner(t, cfg, params),
        load_if_exists=True,
    )


def build_sampler(t: TuneConfig, params: list, seed: int | None) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, constant liar for parallel workers), random, or grid."""
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if t.sampler == "grid":
        axes = {p.key: p.grid_values(t.grid_points) for p in params}
        return optuna.samplers.GridSampler(axes, seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=t.startup_trials, multivariate=True, constant_liar=True
    )


def build_pruner(t: TuneConfig, cfg: RunConfig, params: list) -> optuna.pruners.BasePruner:
    """Median (after the first evaluation) or Hyperband/ASHA over evaluation slots."""
    if t.pruner == "none":
        return optuna.pruners.NopPruner()
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=max(t.startup_trials, 2), n_warmup_steps=1
        )
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=_max_slots(t, cfg, params))


def _max_slots(t: TuneConfig, cfg: RunConfig, params: list) -> int | str:
    """Evaluations in the longest trial (one per epoch); 'auto' (Optuna learns it) when steps
    decide: train.max_steps or train.eval_every."""
    keys = {p.key: p for p in params}
    stepped = ("train.max_steps", "train.eval_every")
    if cfg.train.max_steps or cfg.train.eval_every or any(k in keys for k in stepped):
        return "auto"
    p = keys.get("train.epochs")
    epochs = cfg.train.epochs if p is None else max(p.grid or p.choices or (p.high,))
    return max(1, int(epochs))


def plan(study: optuna.Study, t: TuneConfig, params: list, seed: int) -> int:
    """Mark stale running trials interrupted, queue the trials still missing; the queue's size."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    counted = [tr for tr in study.get_trials(deepcopy=False) if not _interrupted(tr)]
    missing = max(0, t.trials - len(counted))
    if t.sampler != "grid":
        for _ in range(missing):
            study.enqueue_trial({})
        return _queued(study)
    points = space.grid_points(params, t.grid_points)
    seen = {_key(tr.system_attrs.get("fixed_params") or tr.params) for tr in counted}
    todo = [p for p in points if _key(p) not in seen]
    random.Random(seed).shuffle(todo)
    if t.trials > len(points):
        console.log(f"the grid has {len(points)} points: tune.trials={t.trials} is capped")
    for point in todo[:missing]:
        study.enqueue_trial(point)
    return _queued(study)


def _queued(study: optuna.Study) -> int:
    """Trials waiting in the queue (this session's and any an earlier one left unrun)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and trial.user_attrs.get("error") == INTERRUPTED


def _key(params: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def run_trials(study: optuna.Study, objective: Objective, n: int, deadline: float | None) -> None:
    """Run up to `n` queued trials in this process; failures are recorded, not raised."""
    if n <= 0 or (deadline is not None and time.monotonic() >= deadline):
        return
    timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
    study.optimize(
        objective,
        n_trials=n,
        timeout=timeout,
        catch=(Exception,),
        gc_after_trial=True,
        callbacks=[_log_trial, _stop_when_queue_empty],
    )


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial: number, outcome, score, time, parameters."""
    shown = ", ".join(
        f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
        for k, v in trial.params.items()
    )
    value = f"{trial.value:.4f}" if trial.value is not None else "–"
    reason = trial.user_attrs.get("error", "")
    console.log(
        f"trial {trial.number} {trial.state.name.lower()}: {value} "
        f"({trial.user_attrs.get('seconds', 0):.0f} s) {shown} {reason}".rstrip()
    )


def _stop_when_queue_empty(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()


def _share(total: int, workers: int, index: int) -> int:
    """Trials process `index` of `workers` runs, so that the shares add up to `total` exactly."""
    return total // workers + (1 if index < total % workers else 0)


def start_workers(cfg: RunConfig, url: str | None, queued: int, tune_dir: Path) -> list:
    """Start tune.workers - 1 more processes on this machine, each with its share of the queue."""
    n = cfg.tune.workers
    if n <= 1 or queued <= 1:
        return []
    if url is None:
        raise InputError(
            [
                Problem(
                    "config",
                    None,
                    "tune.storage",
                    "workers need a shared storage",
                    "leave tune.storage empty for a journal file in tune/",
                )
            ]
        )
    shared = load_config(
        cfg.to_dict(),
        [
            space.override("tune.storage", url),
            space.override("tune.study", cfg.tune.study or cfg.name),
        ],
    )
    dump_config(shared, tune_dir / "worker_config.yaml")
    procs = []
    for index in range(1, n):
        share = _share(queued, n, index)
        if share:
            cmd = [
                sys.executable,
                "-m",
                "tunewise",
                "tune",
                str(tune_dir / "worker_config.yaml"),
                "--worker",
                "--trials",
                str(share),
            ]
            log = open(tune_dir / f"worker-{index}.log", "w", encoding="utf-8")  # noqa: SIM115
            env = {**os.environ, "TUNEWISE_TUNE_WORKER": str(index)}
            procs.append(
                (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            )
    console.log(f"started {len(procs)} worker process(es); logs: {tune_dir}/worker-*.log")
    return procs


def _work(cfg: RunConfig, params: list, url: str | None, tune_dir: Path) -> dict:
    """A worker: open the existing study, run up to tune.trials queued trials, write nothing."""
    if url is None:
        fix = "pass the --storage and --study of the study to join"
        raise InputError([Problem("config", None, "tune.storage", "a worker needs a storage", fix)])
    index = os.environ.get("TUNEWISE_TUNE_WORKER")
    seed = _seed(cfg) + int(index) if index else None  # other machines: a fresh random seed
    study = open_study(cfg, url, params, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = TrialData.load(cfg, Path(tmp))
        deadline = time.monotonic() + cfg.tune.timeout if cfg.tune.timeout else None
        objective = Objective(cfg.to_dict(), params, data, cfg.tune)
        run_trials(study, objective, cfg.tune.trials, deadline)
    return {"study": study.study_name, "worker": index}


def _join(workers: list, study: optuna.Study, url: str | None, deadline, drain) -> None:
    """Wait for local workers, take over what they left queued, then wait for other machines."""
    for proc, log in workers:
        if proc.wait() != 0:
            console.log(f"a worker exited with code {proc.returncode}; see {log.name}")
        log.close()
    remote = url is not None and url.startswith(REMOTE)
    if not remote:  # nothing else can be running these: a trial still running has lost its process
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    if workers:  # a worker that died left its share queued: run it here
        drain(_queued(study))
    while remote and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(5)


def _drain(study, cfg: RunConfig, params, data, n: int, deadline) -> None:
    if n:
        console.log(f"{n} queued trial(s) left by workers: running them here")
        objective = Objective(cfg.to_dict(), params, data, cfg.tune)
        run_trials(study, objective, n, deadline)


def _safe(url: str | None) -> str | None:
    """The storage URL without its password, for logs and summary.json."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url) if url else url


__all__ = ["open_storage", "open_study", "plan", "search", "storage_url"]
