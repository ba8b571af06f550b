"""Tracking a finished run in MLflow's local store (real), W&B (a stand-in module), and `runs`."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from tests.test_doctor import make_run
from tunewise.cli import main
from tunewise.report.track import data_hash, flat, track


def test_flat_joins_keys_with_dots():
    assert flat({"train": {"lr": 0.1, "es": {"patience": 3}}, "tags": [1, 2]}) == {
        "train.lr": 0.1,
        "train.es.patience": 3,
        "tags": "[1, 2]",
    }


def test_mlflow_gets_params_step_metrics_final_metrics_tags_and_artifacts(tmp_path):
    import mlflow

    run = make_run(tmp_path)
    (run / "report.html").write_text("<html></html>")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = track(run, ["mlflow"], uri, "tests")["mlflow"]
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    logged = client.get_run(run_id)
    assert logged.data.params["train.lr"] == "0.0003"
    assert logged.data.metrics["tuned.accuracy"] == 0.93
    assert logged.data.tags["tunewise.data_hash"] == data_hash({"data": {}})
    steps = client.get_metric_history(run_id, "train.loss")
    assert [m.step for m in steps] == list(range(10, 210, 10))
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "metrics.json", "config.yaml"} <= artifacts


def test_mlflow_artifacts_go_beside_the_store_not_into_the_working_directory(tmp_path, monkeypatch):
    import mlflow

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "runs"
    out.mkdir()
    run = make_run(out)
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    run_id = track(run, ["mlflow"], None, "tests")["mlflow"]  # no URI: the output folder's store
    assert list(cwd.iterdir()) == []  # no ./mlruns, no ./mlartifacts
    assert (out / "mlflow.db").is_file()
    stored = {p.name for p in (out / "mlartifacts").rglob("*") if p.is_file()}
    assert {"metrics.json", "config.yaml", "config.json"} <= stored
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    assert "model" in {a.path for a in client.list_artifacts(run_id)}
    again = track(run, ["mlflow"], None, "tests")["mlflow"]  # the experiment exists: reused
    assert again != run_id and list(cwd.iterdir()) == []


def test_wandb_is_used_only_when_installed_and_configured(tmp_path, monkeypatch):
    logged = []
    fake_run = SimpleNamespace(
        id="w1", summary={}, log=lambda d, step: logged.append(step), finish=lambda: None
    )
    monkeypatch.setitem(
        sys.modules,
        "wandb",
        SimpleNamespace(init=lambda **kw: fake_run, __spec__=SimpleNamespace()),
    )
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    run = make_run(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert track(run, ["wandb"], None, "p") == {}
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert track(run, ["wandb"], None, "p") == {"wandb": "w1"}
    assert logged[:2] == [10, 20] and fake_run.summary["tuned.accuracy"] == 0.93


def test_runs_lists_each_run_with_its_numbers(tmp_path, capsys):
    make_run(tmp_path)
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "run" in out and "0.9300" in out and "+0.0500" in out


def test_comet_is_used_only_when_installed_and_configured(tmp_path, monkeypatch):
    calls = {}

    class Experiment:
        def __init__(self, project_name):
            calls["project"] = project_name

        def set_name(self, name):
            calls["name"] = name

        def log_parameters(self, params):
            calls["params"] = params

        def log_metrics(self, values, step=None):
            calls.setdefault("steps", []).append(step)
            calls["last"] = values

        def end(self):
            calls["ended"] = True

        def get_key(self):
            return "c1"

    monkeypatch.setitem(sys.modules, "comet_ml", SimpleNamespace(Experiment=Experiment))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    run = make_run(tmp_path)
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    assert track(run, ["comet_ml"], None, "p") == {}
    monkeypatch.setenv("COMET_API_KEY", "k")
    assert track(run, ["comet_ml"], None, "p") == {"comet_ml": "c1"}
    assert calls["params"]["train.lr"] == 3e-4 and calls["ended"]
    assert calls["steps"][:2] == [10, 20] and calls["last"]["tuned.accuracy"] == 0.93
