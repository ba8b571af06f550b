"""One path for every task and every study (issue "One path"):

- every task runs the pipeline's same stages: doctor.json, report.html, a tracking call, and an
  error finding ends the run with exit code 1;
- a `tune` trial trains exactly what `tunewise train` trains: the same validation score, bit for
  bit (CPU, fp32), and a recipe step left out of the trial path shows up as a different score.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from tests.test_llm import sft_setup, tok  # noqa: F401  (fixtures: a tiny Llama and its data)
from tests.test_ranking import _pairs, _write_jsonl
from tunewise import pipeline
from tunewise.cli import main
from tunewise.config import load_config
from tunewise.core.findings import Finding
from tunewise.studies.tune import objective, space
from tunewise.training import recipe


def classification_config(tmp_path, tiny_model_dir, toy_data) -> dict:
    train, test = toy_data
    return {
        "name": "clf",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(train), "test": str(test)},
        "model": {"name": str(tiny_model_dir), "max_length": 16},
        "train": {"max_steps": 4, "batch_size": 16, "precision": "fp32", "log_every": 2},
        "eval": {"bootstrap": 20, "forgetting": []},
        "audit": {"label_noise": False},
    }


def ranking_config(tmp_path, tiny_model_dir) -> dict:
    return {
        "task": "ranking",
        "name": "rank",
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "train": str(_write_jsonl(tmp_path / "train.jsonl", _pairs(40, 0))),
            "test": str(_write_jsonl(tmp_path / "test.jsonl", _pairs(12, 1))),
        },
        "model": {"name": str(tiny_model_dir), "max_length": 32},
        "train": {"max_steps": 3, "batch_size": 8, "precision": "fp32", "log_every": 1},
        "eval": {"bootstrap": 20},
    }


@pytest.fixture(params=["classification", "ranking", "causal_lm"])
def task_config(request, tmp_path, tiny_model_dir, toy_data) -> dict:
    if request.param == "classification":
        return classification_config(tmp_path, tiny_model_dir, toy_data)
    if request.param == "ranking":
        return ranking_config(tmp_path, tiny_model_dir)
    return request.getfixturevalue("sft_setup")


def _write(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config, "track": {"backends": ["mlflow"]}}))
    return str(path)


def test_every_task_runs_every_stage(task_config, tmp_path, monkeypatch):
    tracked: list[Path] = []
    monkeypatch.setattr(pipeline, "track", lambda run_dir, *a: tracked.append(run_dir) or {})
    # 0, or 1 when a tiny model trained for a few steps does not beat its baseline
    assert main(["run", _write(tmp_path, task_config)]) in (0, 1)
    run_dir = Path(task_config["output_dir"]) / task_config["name"]
    for name in ("config.yaml", "audit.json", "baseline.json", "training.json", "metrics.json",
                 "doctor.json", "report.html", "model/config.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert tracked == [run_dir]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == load_config(run_dir / "config.yaml").task
    assert {"baseline", "delta", "ci95", "significance"} <= metrics.keys()


def test_an_error_finding_exits_1_for_every_task(task_config, tmp_path, monkeypatch):
    error = Finding("no-improvement", "error", "injected", "none", {})
    monkeypatch.setattr(pipeline, "diagnose", lambda run_dir, limits: [error])
    monkeypatch.setattr(pipeline, "track", lambda *a: {})
    assert main(["run", _write(tmp_path, task_config)]) == 1
    run_dir = Path(task_config["output_dir"]) / task_config["name"]
    assert json.loads((run_dir / "doctor.json").read_text())[0]["message"] == "injected"
    assert (run_dir / "report.html").is_file()  # the run is complete: the user can read why


# --- a trial trains what `train` trains -----------------------------------------------------

PARAMS = {"train.lr": 1e-2, "train.weight_decay": 0.05}  # averaging is kept at this lr
SPACE = {
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    "train.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
}


def recipe_config(tmp_path, tiny_model_dir, toy_data, contrastive: bool = False) -> dict:
    """Every recipe step switched on: freezing, LP-FT head, R-Drop, averaging, WiSE-FT, and
    with `contrastive` the contrastive stage (its 20 rows a class count as few-shot)."""
    cfg = classification_config(tmp_path, tiny_model_dir, toy_data)
    cfg["adapt"] = {"method": "freeze", "freeze_layers": 1, "head_init": "linear_probe"}
    cfg["train"] = {
        "epochs": 3,
        "batch_size": 8,
        "precision": "fp32",
        "rdrop": 0.5,
        "average_last": 3,
        "interpolate_start": True,
        "early_stopping": {"metric": "loss", "patience": 5},
        "contrastive": {"pairs_per_row": 2} if contrastive else None,
    }
    cfg["model"]["dropout"] = 0.1
    cfg["tune"] = {"space": SPACE, "metric": "loss", "pruner": "none", "retrain": False}
    return cfg


def trial_loss(config: dict) -> float:
    """The validation loss one trial with PARAMS reports to Optuna."""
    cfg = load_config(config)
    params = space.parse_space(SPACE, cfg.to_dict())
    data = objective.TrialData.load(cfg, Path(config["output_dir"]) / "trial-data")
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial(PARAMS)
    study.optimize(objective.Objective(cfg.to_dict(), params, data, cfg.tune), n_trials=1)
    return study.best_value


def train_loss(config: dict) -> float:
    """The validation loss of the model `tunewise train` saves with the same parameters."""
    run_dir = pipeline.train(config, space.overrides(PARAMS))
    return json.loads((run_dir / "training.json").read_text())["validation"]["final"]["loss"]


@pytest.mark.parametrize("contrastive", [False, True])
def test_a_tune_trial_scores_exactly_what_train_trains(
    tmp_path, tiny_model_dir, toy_data, contrastive
):
    config = recipe_config(tmp_path, tiny_model_dir, toy_data, contrastive)
    assert trial_loss(config) == train_loss(config)  # bit-equal: one function, one recipe
    done = json.loads((Path(config["output_dir"]) / "clf" / "training.json").read_text())
    # every step changed the model here, so leaving one out is visible (the test below)
    assert done["head_init"]["method"] == "linear_probe"
    if contrastive:
        assert done["contrastive"]["kept"] and done["contrastive"]["steps"] > 0
    else:
        assert done["contrastive"] is None and done["averaging"]["kept"]
        assert done["interpolation"]["alpha"] < 1.0


@pytest.mark.parametrize(
    "step, skipped, contrastive",
    [
        ("finish_average", lambda *a: None, False),
        ("finish_interpolation", lambda *a: None, False),
        ("starting_point", lambda *a: (None, None), False),
        ("contrastive_stage", lambda *a, **k: None, True),
    ],
)
def test_a_recipe_step_missing_from_one_path_changes_the_score(
    step, skipped, contrastive, tmp_path, tiny_model_dir, toy_data, monkeypatch
):
    config = recipe_config(tmp_path, tiny_model_dir, toy_data, contrastive)
    full = train_loss(config)
    monkeypatch.setattr(recipe, step, skipped)  # the trial path loses one step
    assert trial_loss(config) != full


def test_a_run_without_a_test_file_holds_out_a_seeded_stratified_share(
    tmp_path, tiny_model_dir, toy_data, capsys
):
    config = classification_config(tmp_path, tiny_model_dir, toy_data)
    config["data"]["test"] = None
    assert main(["run", _write(tmp_path, {**config, "track": {"backends": []}})]) in (0, 1)
    run_dir = Path(config["output_dir"]) / "clf"
    resolved = load_config(run_dir / "config.yaml")
    assert resolved.data.test == str(run_dir / "data" / "test.csv")
    assert resolved.data.train == str(run_dir / "data" / "train.csv")
    test_rows = (run_dir / "data" / "test.csv").read_text().splitlines()[1:]
    train_rows = (run_dir / "data" / "train.csv").read_text().splitlines()[1:]
    assert len(test_rows) == 12 and len(train_rows) == 48  # 20% of 60, 4 per class
    assert not set(test_rows) & set(train_rows)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_size"] == 12 and "baseline" in metrics  # scored on the same rows
    assert "held out a seeded stratified 20%" in " ".join(capsys.readouterr().err.split())
    # the resolved config re-runs on exactly this split
    again = pipeline.TASKS["classification"].load_data(resolved)
    assert again.test.texts == pipeline.TASKS["classification"].load_data(load_config(
        {**config, "output_dir": str(tmp_path / "runs")})).test.texts  # fmt: skip
