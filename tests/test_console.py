"""The terminal: one bar per long step (none outside a terminal), log lines without source
locations unless --verbose, and training that stops early says so and why."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
import yaml
from rich.progress import Progress

from tests.tiny_run import toy_config
from tunewise.cli import main
from tunewise.core import console as tw_console
from tunewise.core.console import console, set_verbose, step_progress
from tunewise.data.curate import print_prepare
from tunewise.training.callbacks import ProgressBar

LOCATION = re.compile(r"\b\w+\.py:\d+\b")
ANSI_OR_REDRAW = re.compile(r"\x1b\[|\r")


@pytest.fixture
def captured(monkeypatch):
    """The shared console writing into a buffer, as a terminal (`tty=True`) or not."""

    def use(tty: bool) -> io.StringIO:
        buf = io.StringIO()
        monkeypatch.setattr(console, "_file", buf)  # not "file": undo would pin a stale stderr
        monkeypatch.setattr(console, "_force_terminal", tty)
        monkeypatch.setattr(console, "_width", 150)  # no wrapping inside what is asserted
        return buf

    yield use
    set_verbose(False)


def test_outside_a_terminal_a_step_logs_one_plain_line_and_no_bar(captured):
    buf = captured(tty=False)
    with step_progress("baseline: embedding", total=1200) as advance:
        for _ in range(12):
            advance(100)
    out = buf.getvalue()
    assert out.count("\n") == 1 and "baseline: embedding (1,200 rows)" in out
    assert not ANSI_OR_REDRAW.search(out) and "━" not in out


def test_in_a_terminal_the_bar_ends_full_even_when_the_estimate_was_high(captured):
    buf = captured(tty=True)
    with step_progress("forgetting probe", total=400) as advance:
        advance(150)  # an upper bound of 400 rows; only 150 came
    last = buf.getvalue().rsplit("\r", 1)[-1]
    assert "forgetting probe" in last and "400/400" in last


def test_a_step_inside_another_bar_prints_nothing_and_does_not_fail(captured):
    buf = captured(tty=True)
    with Progress(console=console) as outer:  # rich refuses two live displays at once
        outer.add_task("train", total=1)
        with step_progress("inner step", total=10) as advance:
            advance(10)
    assert "inner step" not in buf.getvalue()
    assert tw_console.live()  # the outer bar is gone: the next step may show its own


def test_source_locations_only_under_verbose(captured):
    buf = captured(tty=False)
    console.log("audit: 30 training rows")
    set_verbose(True)
    console.log("audit: 30 training rows")
    plain, verbose = buf.getvalue().splitlines()
    assert not LOCATION.search(plain) and LOCATION.search(verbose)


def _early_stopping_config(tmp_path, tiny_model_dir, toy_data):
    train, test = toy_data
    # min_delta 1.0: macro F1 can never improve by more, so the run stops after `patience`
    stop = {"metric": "macro_f1", "patience": 2, "min_delta": 1.0}
    cfg = toy_config(tmp_path, tiny_model_dir, train, test, epochs=6, early_stopping=stop)
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("verbose", [False, True])
def test_a_captured_training_log_says_why_it_stopped_and_shows_locations_only_if_asked(
    tmp_path, tiny_model_dir, toy_data, capsys, verbose
):
    config = _early_stopping_config(tmp_path, tiny_model_dir, toy_data)
    assert main(["train", str(config), *(["--verbose"] if verbose else [])]) == 0
    err = capsys.readouterr().err
    set_verbose(False)
    # rich wraps a captured log at 80 columns, with --verbose beside a column of locations
    words = " ".join(LOCATION.sub("", err).split())
    said = re.search(
        r"stopped early at epoch 3/6: validation macro_f1 did not improve by more than 1 for 2 "
        r"evaluations; kept the weights of step 4 \(macro_f1 0\.\d{4}\)",
        words,
    )
    assert said, err
    assert bool(LOCATION.search(err)) == verbose, err
    assert not ANSI_OR_REDRAW.search(err) and "━" not in err  # captured: no bar drawn


def test_the_training_bar_ends_saying_it_stopped_early_and_why(captured):
    buf = captured(tty=True)
    bar = ProgressBar(10)
    bar.on_log({"split": "train", "step": 4, "loss": 0.5, "lr": 1e-4, "samples_per_s": 30.0})
    reason = "stopped early at epoch 2/5: validation accuracy did not improve for 1 evaluation"
    bar.on_end(SimpleNamespace(stopped_early=True, step=4, total_steps=10, stop_reason=reason))
    frames = buf.getvalue().split("\r")
    assert "4/4" in frames[-1] and "stopped early (10 steps planned)" in frames[-1]
    assert "-:--:--" not in frames[-1] and reason in buf.getvalue()


def test_prepare_prints_one_line_not_an_empty_table_and_still_reports_personal_data(
    captured, capsys
):
    buf = captured(tty=False)
    steps = [{"step": "clean", "changed": 0}, {"step": "dedup", "dropped": 0}]
    print_prepare({"rows_in": 28, "rows_out": 28, "steps": steps, "pii": {"email": 2}})
    assert "prepare: 28 rows in, 28 out, none changed" in buf.getvalue()
    out = capsys.readouterr().out
    assert "personal data found: email 2" in out and "┏" not in out
    print_prepare({"rows_in": 28, "rows_out": 27, "steps": [*steps, {"step": "x", "dropped": 1}],
                   "pii": {}})  # fmt: skip
    assert "rows dropped" in capsys.readouterr().out
