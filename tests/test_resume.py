"""Resume is exact: a `tunewise train` killed at any step and resumed ends bitwise identical.

Each test runs the real CLI in a subprocess on a tiny random BERT, kills it (SIGKILL, or the
polite SIGTERM / SIGINT) once it has trained a chosen number of steps, resumes with `--resume`,
and compares with one uninterrupted run: the final `model/model.safetensors` byte for byte,
`history.jsonl` line for line (less the timing field `samples_per_s`), and `rows.jsonl` (the
training rows of every step), so no row is trained twice or skipped.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

EPOCHS, BATCH = 4, 4  # 54 training rows (60 less a 10% validation split): 14 steps an epoch
TOTAL_STEPS = EPOCHS * 14


def write_config(folder: Path, model_dir: Path, data: tuple[Path, Path], **train) -> Path:
    """A config for a fast run that checkpoints every 3 steps and records its rows."""
    cfg = {
        "task": "classification",
        "name": "run",
        "output_dir": str(folder / "runs"),
        "seed": 5,
        "data": {"train": str(data[0]), "test": str(data[1])},
        "model": {"name": str(model_dir), "max_length": 16},
        "train": {
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "lr": 3e-3,
            "warmup_ratio": 0.1,
            "precision": "fp32",
            "log_every": 2,
            "eval_every": 5,
            "checkpoint_every": 3,
            "keep_checkpoints": 2,
            "record_rows": True,
            "early_stopping": {"metric": "loss", "patience": 20},
            **train,
        },
        "track": {"backends": []},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1"}  # fmt: skip


def train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunewise", "train", str(config), *extra]


def steps_done(run_dir: Path) -> int:
    path = run_dir / "rows.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def interrupt_at(config: Path, run_dir: Path, step: int, sig: int, *extra: str) -> dict:
    """Start training, send `sig` once `step` steps are done; exit code, step, seconds to exit."""
    proc = subprocess.Popen(
        train_cmd(config, *extra), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sent = None
    while proc.poll() is None:
        if steps_done(run_dir) >= step:
            sent = time.perf_counter()
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    assert sent is not None, f"finished before step {step}: {err.decode()[-2000:]}"
    return {"code": proc.returncode, "seconds": time.perf_counter() - sent,
            "step": steps_done(run_dir), "stderr": err.decode()}  # fmt: skip


def finish(config: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(train_cmd(config, *extra), env=_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


def history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "samples_per_s"} for x in lines]


def assert_same_run(run: Path, ref: Path) -> None:
    """Byte-equal weights, equal history and exactly the reference's rows, once each."""
    assert (run / "model" / "model.safetensors").read_bytes() == (
        ref / "model" / "model.safetensors"
    ).read_bytes()
    assert history(run) == history(ref)
    rows = [json.loads(x) for x in (run / "rows.jsonl").read_text().splitlines()]
    assert rows == [json.loads(x) for x in (ref / "rows.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, TOTAL_STEPS + 1))
    for epoch in range(EPOCHS):  # every training row exactly once per epoch
        seen = sorted(i for r in rows if r["epoch"] == epoch for i in r["rows"])
        assert seen == list(range(54))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> tuple[Path, tuple[Path, Path]]:
    """One uninterrupted run; returns its run directory and the data it trained on."""
    from tests.conftest import write_csv

    folder = tmp_path_factory.mktemp("reference")
    words = {"refund": "money back refund", "card": "card lost stolen", "hello": "hello hi"}
    rows = [(f"{t} {i}", lab) for i in range(20) for lab, t in words.items()]
    test = [(f"{t} n{i}", lab) for i in range(5) for lab, t in words.items()]
    data = (write_csv(folder / "train.csv", rows), write_csv(folder / "test.csv", test))
    finish(write_config(folder, tiny_model_dir, data))
    return folder / "runs" / "run", data


def kill_points(n: int) -> list[int]:
    """n random, increasing steps to kill at, far enough from the end to land mid-run."""
    seed = int(os.environ.get("TUNEWISE_RESUME_SEED", time.time_ns() % 10_000))
    picks = sorted(random.Random(seed).sample(range(4, TOTAL_STEPS - 20), n))  # after checkpoint 1
    print(f"kill points {picks} (TUNEWISE_RESUME_SEED={seed})")
    return picks


def _sigkill_and_resume(tmp_path, tiny_model_dir, reference, points: list[int]) -> list[int]:
    ref_dir, data = reference
    config = write_config(tmp_path, tiny_model_dir, data)
    run_dir = tmp_path / "runs" / "run"
    killed = []
    for i, step in enumerate(points):
        extra = ("--resume", "auto") if i else ()  # a resumed run is killed again too
        result = interrupt_at(config, run_dir, step, signal.SIGKILL, *extra)
        assert result["code"] == -signal.SIGKILL
        killed.append(result["step"])
    finish(config, "--resume", str(run_dir))
    assert_same_run(run_dir, ref_dir)
    print(f"SIGKILL landed after steps {killed} of {TOTAL_STEPS}; resumed run byte-identical")
    return killed


def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(
    tmp_path, tiny_model_dir, reference
):
    killed = _sigkill_and_resume(tmp_path, tiny_model_dir, reference, kill_points(2))
    assert len(killed) == 2 and all(0 < k < TOTAL_STEPS for k in killed)


@pytest.mark.slow
def test_sigkill_at_many_random_steps(tmp_path, tiny_model_dir, reference):
    for n, points in enumerate([kill_points(1) for _ in range(4)]):
        _sigkill_and_resume(tmp_path / str(n), tiny_model_dir, reference, points)


def _stop_and_resume(tmp_path, tiny_model_dir, reference, signals: list[int]) -> list[dict]:
    """Stop with each signal in turn (checkpoint, then 128 + signal), resume, finish, compare."""
    ref_dir, data = reference
    config = write_config(tmp_path, tiny_model_dir, data, checkpoint_every=None)
    run_dir = tmp_path / "runs" / "run"
    stops, step = [], 9
    for i, sig in enumerate(signals):
        stop = interrupt_at(config, run_dir, step, sig, *(("--resume", "auto") if i else ()))
        assert stop["code"] == 128 + sig, stop["stderr"][-2000:]
        assert stop["seconds"] < 30 and "--resume" in stop["stderr"]
        newest = max((run_dir / "checkpoints").glob("step-*"))
        assert json.loads((newest / "state.json").read_text())["step"] == stop["step"]
        stops.append(stop)
        step = stop["step"] + 7
    finish(config, "--resume", "auto")
    assert_same_run(run_dir, ref_dir)
    print(", ".join(f"{signal.Signals(s).name} to exit {x['seconds']:.2f} s"
                    for s, x in zip(signals, stops, strict=True)))  # fmt: skip
    return stops


def test_sigterm_checkpoints_then_exits_143_and_resume_is_identical(
    tmp_path, tiny_model_dir, reference
):
    _stop_and_resume(tmp_path, tiny_model_dir, reference, [signal.SIGTERM])


@pytest.mark.slow
def test_sigterm_then_sigint_exit_143_then_130(tmp_path, tiny_model_dir, reference):
    _stop_and_resume(tmp_path, tiny_model_dir, reference, [signal.SIGTERM, signal.SIGINT])


def test_resume_refuses_a_different_config_before_loading_anything(
    tmp_path, tiny_model_dir, reference
):
    from tunewise.core.errors import InputError
    from tunewise.pipeline import train

    run_dir, data = reference
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    changed = write_config(tmp_path, tiny_model_dir, data, lr=1e-3)
    with pytest.raises(InputError, match="different config"):
        train(changed, resume=run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("change", [{"task": "causal_lm"}, {"task": "ranking"}])
def test_resume_is_refused_where_it_is_not_exact(tmp_path, change):
    from tunewise.core.errors import InputError
    from tunewise.pipeline import train

    cfg = {"name": "r", "output_dir": str(tmp_path), "data": {"train": "t.csv"}, **change}
    with pytest.raises(InputError, match="--resume"):
        train(cfg, resume="auto")  # refused before any data or model is read
