"""Run directories: one writer at a time, an earlier finished run is kept aside (never wiped),
and `name` cannot leave `output_dir`. `--resume` on its own run is covered by test_resume.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from tunewise.cli import main
from tunewise.config import ConfigError, load_config
from tunewise.core import rundir
from tunewise.core.errors import InputError


def _cfg(tmp_path, name="x", **raw):
    doc = {"name": name, "output_dir": str(tmp_path / "runs"), "data": {"train": "t.csv"}, **raw}
    return load_config(doc)


def _config_file(tmp_path, **raw):
    doc = {"name": "x", "output_dir": str(tmp_path / "runs"), "data": {"train": "t.csv"}, **raw}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _finished(run_dir, text="old"):
    """What a finished run leaves: a model folder, metrics, a feedback store."""
    (run_dir / rundir.MODEL).mkdir(parents=True)
    (run_dir / rundir.MODEL / "model.safetensors").write_text(text)
    (run_dir / rundir.METRICS).write_text('{"tuned": {"accuracy": 0.9}}')
    (run_dir / rundir.FEEDBACK_DB).write_text("feedback")


def _hold(run_dir):
    """Another process that holds `run_dir`'s lock until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tunewise.core import rundir
        rundir.lock(Path({str(run_dir)!r}))
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def holder(tmp_path):
    """Another process that holds runs/x's lock until the test ends."""
    proc = _hold(tmp_path / "runs" / "x")
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_fix(tmp_path, holder):
    with pytest.raises(InputError) as err:
        rundir.start_run(_cfg(tmp_path))
    text = str(err.value)
    assert f"PID {holder.pid}" in text and "fix:" in text and "name=" in text
    assert not (tmp_path / "runs" / "x" / rundir.CONFIG).exists()  # nothing written


def test_the_lock_goes_with_its_process_even_when_killed(tmp_path, holder):
    holder.kill()
    holder.wait()
    time.sleep(0.05)
    assert rundir.start_run(_cfg(tmp_path)) == tmp_path / "runs" / "x"


def test_the_cli_refuses_a_second_writer_with_exit_2_before_any_model_loads(
    tmp_path, holder, capsys
):
    from tests.conftest import write_csv

    rows = [(f"text {i}", f"l{i % 2}") for i in range(20)]
    train = write_csv(tmp_path / "train.csv", rows)
    config = _config_file(tmp_path, data={"train": str(train)}, model={"name": "/not/a/model"})
    assert main(["train", str(config)]) == 2  # a model load would have failed differently
    assert f"PID {holder.pid}" in capsys.readouterr().err


def test_the_same_process_may_start_its_run_again(tmp_path):
    cfg = _cfg(tmp_path)
    assert rundir.start_run(cfg) == rundir.start_run(cfg)  # tune, then run of its best config


def test_a_finished_run_is_kept_aside_not_wiped(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    _finished(run_dir, "first")
    assert rundir.start_run(_cfg(tmp_path, seed=1)) == run_dir
    kept = tmp_path / "runs" / "x.1"
    assert (kept / rundir.MODEL / "model.safetensors").read_text() == "first"
    assert (kept / rundir.METRICS).exists() and (kept / rundir.FEEDBACK_DB).exists()
    assert sorted(p.name for p in run_dir.iterdir() if p.name != rundir.LOCK) == [rundir.CONFIG]
    assert load_config(run_dir / rundir.CONFIG).seed == 1

    _finished(run_dir, "second")  # `make demo` twice more: each earlier run gets its own place
    rundir.start_run(_cfg(tmp_path, seed=2))
    assert (tmp_path / "runs" / "x.2" / rundir.MODEL / "model.safetensors").read_text() == "second"
    assert (kept / rundir.MODEL / "model.safetensors").read_text() == "first"


def test_an_unfinished_run_is_reused_in_place(tmp_path):
    """A run the audit stopped, or one killed before its model: nothing worth keeping aside."""
    run_dir = tmp_path / "runs" / "x"
    (run_dir / rundir.CHECKPOINTS / ".tmp-step-00000002").mkdir(parents=True)
    (run_dir / rundir.AUDIT).write_text("[]")
    (run_dir / rundir.HISTORY).write_text('{"step": 1}\n')
    rundir.start_run(_cfg(tmp_path))
    assert not (tmp_path / "runs" / "x.1").exists()
    assert not (run_dir / rundir.HISTORY).exists() and not (run_dir / rundir.CHECKPOINTS).exists()


def test_the_search_state_stays_with_the_name(tmp_path):
    """tune/ holds the study a later `tune --study NAME` continues; it is not moved aside."""
    run_dir = tmp_path / "runs" / "x"
    _finished(run_dir)
    (run_dir / rundir.TUNE).mkdir()
    (run_dir / rundir.TUNE / "study.journal").write_text("trials")
    rundir.start_run(_cfg(tmp_path))
    assert (run_dir / rundir.TUNE / "study.journal").read_text() == "trials"
    assert (tmp_path / "runs" / "x.1" / rundir.METRICS).exists()


@pytest.mark.parametrize("name", ["../escaped", "a/../../escaped", "/tmp/elsewhere", "", ".", ".."])
def test_a_name_that_leaves_output_dir_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"name: .*(fix: )") as err:
        _cfg(tmp_path, name=name)
    assert "name" in str(err.value)


def test_the_cli_refuses_an_escaping_name_with_exit_2(tmp_path, capsys):
    assert main(["train", str(_config_file(tmp_path, name="../escaped"))]) == 2
    assert "name: " in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("name", ["banking77", "b77-lora.v2", "sub/run"])
def test_names_inside_output_dir_are_fine(tmp_path, name):
    assert _cfg(tmp_path, name=name).run_dir() == tmp_path / "runs" / name


def test_evaluate_and_refine_wait_for_no_one_but_refuse_while_another_writes(
    tmp_path, tiny_model_dir, capsys
):
    from tests.conftest import write_csv
    from tests.tiny_run import trained_run

    rows = [(f"{w} {i}", w) for i in range(8) for w in ("card", "loan")]
    train, test = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", rows)
    run = trained_run(tmp_path, tiny_model_dir, train, test)
    rundir.unlock(run)  # as if another process had trained it
    proc = _hold(run)
    try:
        assert main(["evaluate", str(run)]) == 2
        assert f"PID {proc.pid}" in capsys.readouterr().err
        assert main(["refine", str(run), "--data", str(train)]) == 2
        assert f"PID {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    assert main(["evaluate", str(run)]) == 0  # the holder gone, the run is this process's
