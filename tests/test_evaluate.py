"""`tunewise evaluate`: column flags and overrides like `run`, one-line label mismatches, the
forgetting probe only when asked, and a file's own metrics and page."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest

from tests.conftest import write_csv
from tests.tiny_run import toy_config
from tunewise.cli import main
from tunewise.core.errors import BlockingFinding
from tunewise.evaluation import analyses
from tunewise.pipeline import run

PROBE = {"tasks": [{"name": "trec", "base_accuracy": 0.8, "tuned_accuracy": 0.79, "delta": -0.01,
                    "ci95": [-0.03, 0.01]}], "mean_delta": -0.01, "skipped": []}  # fmt: skip


@pytest.fixture
def stub_probe(monkeypatch):
    probe_calls: list[str] = []

    def forgetting(cfg, encoder, tokenizer, bf16):
        probe_calls.append(cfg.name)
        return json.loads(json.dumps(PROBE))

    monkeypatch.setattr(analyses, "forgetting", forgetting)
    return probe_calls


@pytest.fixture
def finished(tiny_model_dir, toy_data, tmp_path, stub_probe):
    """A full `run` on a mean-pooled tiny model (so model/ is the portable file)."""
    model = tmp_path / "mean-model"
    shutil.copytree(tiny_model_dir, model)
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    train, test = toy_data
    with contextlib.suppress(BlockingFinding):  # the tiny model learns little: doctor errors
        run(toy_config(tmp_path, model, train, test))
    assert stub_probe == ["toy"]  # `run` measures it
    stub_probe.clear()
    return tmp_path / "runs" / "toy"


def test_evaluate_keeps_the_runs_forgetting_probe_unless_asked(finished, stub_probe, capsys):
    assert json.loads((finished / "model" / "config.json").read_text())["tunewise_pooling"]
    before = (finished / "report.html").stat().st_mtime_ns
    assert main(["evaluate", str(finished)]) == 0
    assert stub_probe == []  # the encoder did not change: the probe is not run again
    forgetting = json.loads((finished / "metrics.json").read_text())["forgetting"]
    assert forgetting["tasks"] == PROBE["tasks"] and "as the run measured it" in forgetting["note"]
    assert (finished / "report.html").stat().st_mtime_ns > before  # rewritten, as it says
    assert f"report: {(finished / 'report.html').resolve()}" in capsys.readouterr().out
    assert main(["evaluate", str(finished), "--forgetting"]) == 0
    assert stub_probe == ["toy"]


def test_another_file_gets_its_own_metrics_and_page_with_its_own_columns(
    finished, tmp_path, capsys
):
    own = (finished / "metrics.json").read_text()
    card = (finished / "model" / "README.md").read_text()
    rows = [("please give me my money back", "refund"), ("hello there friend", "hello")]
    new = write_csv(tmp_path / "new.csv", rows * 3, header=("message", "intent"))
    code = main(["evaluate", str(finished), "--data", str(new), "--text-col", "message",
                 "--label-col", "intent", "eval.bootstrap=10"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    scored = json.loads((finished / "metrics-new.json").read_text())
    assert scored["test_size"] == 6 and scored["test_source"] == str(new)
    assert (finished / "metrics-new.html").read_text().startswith("<!")
    assert f"report: {(finished / 'metrics-new.html').resolve()}" in out
    assert (finished / "metrics.json").read_text() == own  # the run's own result stays
    assert (finished / "model" / "README.md").read_text() == card


def test_label_mismatches_are_one_line_each(finished, tmp_path, capsys):
    other = write_csv(tmp_path / "other.csv", [(f"text {i}", f"x{i % 3}") for i in range(30)])
    assert main(["evaluate", str(finished), "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert (
        "none of your 3 labels are among the model's 3: 'x0' (10), 'x1' (10), 'x2' (10)" in err[0]
    )
    assert "check --label-col" in err[0]
    some = write_csv(tmp_path / "some.csv", [("a b", "card"), ("c d", "new"), ("e f", "newer")])
    assert main(["evaluate", str(finished), "--data", str(some)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 rows have labels the model does not know: 'new' (1)" in err[0]
    assert "(lines 3, 4)" in err[0]


def test_a_missing_column_names_the_option_and_a_bad_override_is_refused(
    finished, tmp_path, capsys
):
    new = write_csv(tmp_path / "n.csv", [("a b", "card")], header=("utterance", "intent"))
    assert main(["evaluate", str(finished), "--data", str(new)]) == 2
    err = capsys.readouterr().err
    assert "pass --text-col utterance" in err and "pass --label-col intent" in err
    assert main(["evaluate", str(finished), "eval.batchsize=3"]) == 2
    assert "did you mean 'eval.batch_size'" in capsys.readouterr().err
