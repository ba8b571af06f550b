"""`tunewise tune` on real engines: Optuna studies on in-memory, journal, SQLite and PostgreSQL
storages with worker processes, pruning, resume; and 2-process DDP training (gloo) against one
process with the same global batch.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from tests.postgres import postgres_server
from tunewise.cli import main
from tunewise.config import load_config
from tunewise.core.errors import InputError
from tunewise.pipeline import tune
from tunewise.studies.tune import objective, space
from tunewise.studies.tune.search import INTERRUPTED, open_storage
from tunewise.training.distributed import shard

LR_BATCH = {
    "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [8, 16]},
}


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_server() as url:
        yield url


@pytest.fixture
def toy_config(tmp_path, tiny_model_dir, toy_data) -> dict:
    """A config whose trials take about a second each (tiny BERT, 54 training rows, 1 epoch)."""
    train, test = toy_data
    return {
        "name": "toy",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(train), "test": str(test)},
        "model": {"name": str(tiny_model_dir), "max_length": 16},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "lr": 1e-2,
            "precision": "fp32",
            "early_stopping": None,
            "log_every": 2,
        },
        "eval": {"bootstrap": 50, "forgetting": []},
        "audit": {"label_noise": False},
        "track": {"backends": []},
        "tune": {"space": LR_BATCH, "trials": 4, "sampler": "random", "retrain": False},
    }


def read_trials(run_dir: Path) -> list[dict]:
    with open(run_dir / "tune" / "trials.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_no_duplicates(rows: list[dict], count: int) -> None:
    assert sorted(int(r["number"]) for r in rows) == list(range(count))
    assert len({r["params"] for r in rows}) == count  # no point evaluated twice


# --- the search space --------------------------------------------------------------------------


def test_space_checks_every_key_and_range_against_the_config(toy_config):
    bad = {
        "train.lrr": {"type": "float", "low": 1e-5, "high": 1e-3},
        "data.max_rows": {"type": "int", "low": 10, "high": 20},
        "train.batch_size": {"type": "categorical", "choices": [16, 0]},
        "train.weight_decay": {"type": "float", "low": 0.1, "high": 0.0},
        "train.schedule": {"type": "categorical", "choices": ["linear", "cosinus"]},
    }
    with pytest.raises(InputError) as info:
        space.parse_space(bad, load_config(toy_config).to_dict(), "toy.yaml")
    text = str(info.value)
    assert "tune.space.train.lrr" in text and "did you mean 'train.lr'" in text
    assert "tune.space.data.max_rows: cannot be searched" in text
    assert "tune.space.train.batch_size: 0 is not usable" in text
    assert "tune.space.train.weight_decay: bad range" in text
    assert "'cosinus' is not usable" in text and "did you mean 'cosine'" in text


def test_default_space_and_grid(toy_config):
    cfg = load_config(toy_config)
    params = space.parse_space(space.default_space(cfg), cfg.to_dict())
    assert {p.key for p in params} >= {"train.lr", "train.batch_size", "train.weight_decay"}
    lr = next(p for p in params if p.key == "train.lr")
    assert lr.log and lr.grid_values(3) == [1e-5, 1e-4, 1e-3]
    grid = space.grid_points(space.parse_space(LR_BATCH, cfg.to_dict()), 2)
    assert len(grid) == 4 and {g["train.batch_size"] for g in grid} == {8, 16}
    # a sampled float survives the trip through a key=value override as a float
    assert load_config(toy_config, [space.override("train.lr", 1e-5)]).train.lr == 1e-5


def test_pruning_callback_reports_each_evaluation_and_stops_a_bad_trial():
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    good = study.ask()
    for slot in (1, 2):
        good.report(0.9, slot)
    study.tell(good, 0.9)
    trial = study.ask()
    pruning = objective.Pruning(trial, "accuracy", n_train=100)
    with pytest.raises(optuna.TrialPruned):
        pruning.on_log({"step": 5, "epoch": 0.5, "split": "validation", "accuracy": 0.2})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 0.2}
    assert pruning.samples == 50 and pruning.step == 5


# --- studies -------------------------------------------------------------------------------------


def test_plan_queues_only_what_is_missing_and_keeps_earlier_queued_trials(toy_config):
    from tunewise.studies.tune.search import plan

    cfg = load_config(toy_config, ["tune.trials=5"])
    params = space.parse_space(LR_BATCH, cfg.to_dict())
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), 0.5)  # trial 0: done
    stale = study.ask()  # trial 1: its process died
    study.enqueue_trial({})  # trial 2: queued by a session that timed out
    assert plan(study, cfg.tune, params, seed=13) == 4  # trial 2 plus three new ones
    assert study.trials[stale.number].user_attrs["error"] == INTERRUPTED
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]
    assert plan(study, cfg.tune, params, seed=13) == 4  # planning again adds nothing


def test_search_records_failures_and_never_reads_the_test_set(toy_config, monkeypatch):
    toy_config["data"]["test"] = str(Path(toy_config["output_dir"]) / "no-such-test.csv")
    toy_config["tune"].update(sampler="grid", grid_points=2, pruner="median")
    real = objective.train_trial

    def flaky(cfg, *args):
        if cfg.train.batch_size == 8:
            raise RuntimeError("out of memory (simulated)")
        return real(cfg, *args)

    monkeypatch.setattr(objective, "train_trial", flaky)
    summary = tune(toy_config)
    run_dir = Path(toy_config["output_dir"]) / "toy"
    rows = read_trials(run_dir)
    assert_no_duplicates(rows, 4)  # the whole 2 x 2 grid, each point once
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 2 and all("out of memory" in r["error"] for r in failed)
    assert summary["states"] == {"FAIL": 2, "COMPLETE": 2}
    best = load_config(run_dir / "tune" / "best_config.yaml")  # runnable: a plain config
    assert best.train.batch_size == 16 and best.train.lr == summary["best"]["params"]["train.lr"]
    for name in ("history.png", "parallel.png", "curves.png", "summary.json"):
        assert (run_dir / "tune" / name).is_file(), name
    assert not list(run_dir.rglob("*.safetensors"))  # trials keep no weights on disk


def test_two_workers_share_a_journal_file(toy_config):
    summary = tune(toy_config, ["tune.workers=2", "tune.trials=4"])
    run_dir = Path(toy_config["output_dir"]) / "toy"
    rows = read_trials(run_dir)
    assert_no_duplicates(rows, 4)
    assert summary["states"] == {"COMPLETE": 4}
    assert summary["storage"].endswith("study.journal")
    log = (run_dir / "tune" / "worker-1.log").read_text()
    assert "complete" in log  # the second process ran trials of its own


def test_resume_on_sqlite_continues_numbering_and_requeues_interrupted(toy_config, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune(toy_config, [f"tune.storage={url}", "tune.study=resume", "tune.trials=2"])
    assert first["states"] == {"COMPLETE": 2}
    study = optuna.load_study(study_name="resume", storage=open_storage(url))
    study.ask()  # a trial whose process died: it stays RUNNING in the storage
    second = tune(toy_config, [f"tune.storage={url}", "tune.study=resume", "tune.trials=4"])
    rows = read_trials(Path(toy_config["output_dir"]) / "toy")
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    assert rows[2]["state"] == "FAIL" and rows[2]["error"] == INTERRUPTED
    assert second["states"] == {"COMPLETE": 4, "FAIL": 1}


def test_two_workers_on_a_real_postgresql_server(toy_config, postgres_url):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    summary = tune(
        toy_config,
        [f"tune.storage={postgres_url}", f"tune.study={name}", "tune.workers=2", "tune.trials=4"],
    )
    assert summary["states"] == {"COMPLETE": 4} and summary["storage"].startswith("postgresql")
    assert_no_duplicates(read_trials(Path(toy_config["output_dir"]) / "toy"), 4)
    study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
    assert len(study.trials) == 4


def test_cli_tune_retrains_the_best_config_into_the_report(toy_config, tmp_path):
    toy_config["tune"]["retrain"] = True
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_config), encoding="utf-8")
    code = main(["tune", str(path), "--trials", "2", "--sampler", "tpe", "--pruner", "hyperband"])
    assert code in (0, 1)  # 1: the doctor's verdict on a model this tiny; the run is complete
    run_dir = Path(toy_config["output_dir"]) / "toy"
    summary = json.loads((run_dir / "tune" / "summary.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["retrained"]["tuned"] == metrics["tuned"]
    assert summary["pruner"] == "hyperband" and len(read_trials(run_dir)) == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["lr"] == pytest.approx(
        summary["best"]["params"]["train.lr"]
    )
    html = (run_dir / "report.html").read_text()
    assert 'id="tune"' in html and "Optimisation history" in html


def test_cli_rejects_a_bad_sampler(toy_config, tmp_path, capsys):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_config), encoding="utf-8")
    assert main(["tune", str(path), "tune.sampler=cmaes"]) == 2
    assert "tune.sampler" in capsys.readouterr().err


# --- data-parallel training ----------------------------------------------------------------------


def test_shard_splits_every_micro_batch_exactly():
    part = list(range(7))
    pieces = [shard(part, i, 3) for i in range(3)]
    assert sorted(r for rows, _ in pieces for r in rows) == part
    # what DDP averages (each process's weighted mean loss) is the mean over the micro-batch
    loss = [float(i * i) for i in part]
    local = [sum(loss[r] for r in rows) / len(rows) * w for rows, w in pieces]
    assert sum(local) / 3 == pytest.approx(sum(loss) / len(loss))
    assert shard([5], 1, 2) == ([5], 0.0)  # a process without rows still joins the all-reduce


@pytest.mark.parametrize(
    "recipe",
    [
        {"adapt": {"method": "full", "head_init": "random"}},
        {"adapt": {"method": "freeze", "freeze_layers": 1, "head_init": "random"}, "rdrop": 1.0},
    ],
    ids=["plain", "frozen-layer-rdrop"],  # R-Drop doubles the batch inside the wrapped model
)
def test_two_process_ddp_matches_one_process(tmp_path, tiny_model_dir, toy_data, recipe):
    from safetensors.torch import load_file

    train, test = toy_data
    config = {
        "name": "one",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(train), "test": str(test)},
        "model": {
            "name": str(tiny_model_dir),
            "max_length": 16,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "classifier_dropout": 0.0,
        },
        "train": {
            "epochs": 2,
            "batch_size": 7,
            "lr": 2e-2,
            "precision": "fp32",
            "early_stopping": None,
            "eval_every": 4,
            "log_every": 2,
            "rdrop": recipe.get("rdrop", 0.0),
            "average_last": None,
            "interpolate_start": False,
            "contrastive": None,  # fit under DDP is the subject here
        },
        "adapt": recipe["adapt"],
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", str(path)]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "tunewise", "train", str(path), "name=two", "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {n: tmp_path / "runs" / n for n in ("one", "two")}
    history = {
        n: [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
        for n, d in runs.items()
    }
    val = {n: [r for r in h if r["split"] == "validation"] for n, h in history.items()}
    assert len(val["two"]) == len(val["one"]) == 4  # written once, by the main process only
    for a, b in zip(val["one"], val["two"], strict=True):
        assert a["step"] == b["step"] and a["accuracy"] == b["accuracy"]
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
    train_losses = {round(r["loss"], 6) for r in history["one"] if r["split"] == "train"}
    assert len(train_losses) > 1  # it trained
    w1, w2 = (load_file(str(d / "model" / "model.safetensors")) for d in runs.values())
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-3
