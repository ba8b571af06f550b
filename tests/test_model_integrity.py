"""model/ carries a manifest (sha256 per file) written at save; evaluate and serve (one loader,
`load_trained_classifier`) refuse a truncated, altered, non-finite or remote-code model folder
with exit 2 and `file: field: message (fix: ...)`; an old run without a manifest still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.tiny_run import trained_run
from tunewise.cli import main
from tunewise.core.console import console
from tunewise.core.errors import InputError
from tunewise.models import integrity
from tunewise.models.load import load_trained_classifier
from tunewise.serving.predictor import load_predictor

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model_dir) -> Path:
    from tests.conftest import write_csv

    folder = tmp_path_factory.mktemp("integrity")
    words = {"refund": "money back refund", "card": "card lost stolen", "hello": "hello hi"}
    rows = [(f"{t} {i}", lab) for i in range(10) for lab, t in words.items()]
    test = [(f"{t} n{i}", lab) for i in range(3) for lab, t in words.items()]
    train_csv = write_csv(folder / "train.csv", rows)
    return trained_run(folder, tiny_model_dir, train_csv, write_csv(folder / "test.csv", test))


@pytest.fixture
def run_dir(saved, tmp_path) -> Path:
    """A private copy of the trained run, to damage."""
    copy = tmp_path / "runs" / "toy"
    shutil.copytree(saved, copy)
    return copy


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setattr(console, "_width", 300)  # one unwrapped line per message


def _evaluate(run_dir, capsys) -> tuple[int, str]:
    code = main(["evaluate", str(run_dir)])
    return code, capsys.readouterr().err


def _serve_error(run_dir) -> str:
    with pytest.raises(InputError) as err:
        load_predictor(run_dir)
    return str(err.value)


def test_save_writes_a_manifest_of_every_file_but_the_card(run_dir):
    model = run_dir / "model"
    manifest = json.loads((model / integrity.MANIFEST).read_text())
    assert {WEIGHTS, "config.json", "tokenizer.json"} <= set(manifest)
    assert "README.md" not in manifest and integrity.MANIFEST not in manifest
    assert manifest[WEIGHTS]["bytes"] == (model / WEIGHTS).stat().st_size
    integrity.verify_manifest(model)  # the folder as saved passes
    assert load_trained_classifier(model).config.num_labels == 3


def test_a_truncated_weights_file_is_refused_by_evaluate_and_serve(run_dir, capsys):
    weights = run_dir / "model" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    code, err = _evaluate(run_dir, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{weights}: bytes: 1,000 bytes, the manifest says" in err and "(fix: " in err
    assert f"{weights}: bytes:" in _serve_error(run_dir)


def test_nan_bytes_of_the_same_size_fail_the_checksum(run_dir, capsys):
    weights = run_dir / "model" / WEIGHTS
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)
    state[name][0] = float("nan")  # as a bad copy or a bad disk would: same size, other bytes
    save_file(state, str(weights), metadata={"format": "pt"})
    code, err = _evaluate(run_dir, capsys)
    assert code == 2 and f"{weights}: sha256: content differs" in err
    assert "sha256" in _serve_error(run_dir)


def test_non_finite_weights_are_refused_even_without_a_manifest(run_dir, capsys):
    model = run_dir / "model"
    (model / integrity.MANIFEST).unlink()  # an older run, or a manifest rewritten to match
    state = load_file(str(model / WEIGHTS))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)
    state[name].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    save_file(state, str(model / WEIGHTS), metadata={"format": "pt"})
    code, err = _evaluate(run_dir, capsys)
    assert code == 2 and "3 NaN or infinite values" in err and str(model / WEIGHTS) in err
    assert "NaN or infinite" in _serve_error(run_dir)


def test_a_truncated_file_without_a_manifest_is_exit_2_not_a_traceback(run_dir, capsys):
    model = run_dir / "model"
    (model / integrity.MANIFEST).unlink()
    (model / WEIGHTS).write_bytes((model / WEIGHTS).read_bytes()[:1000])
    code, err = _evaluate(run_dir, capsys)
    assert code == 2 and f"{model}: model: does not load" in err and "Traceback" not in err


def test_a_model_folder_that_needs_remote_code_is_refused(run_dir, capsys):
    config = run_dir / "model" / "config.json"
    doc = json.loads(config.read_text())
    doc["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    config.write_text(json.dumps(doc))
    integrity.write_manifest(run_dir / "model")  # the manifest matches: the code is the problem
    code, err = _evaluate(run_dir, capsys)
    assert code == 2 and f"{config}: auto_map: needs code from the model folder" in err
    assert "model.trust_remote_code: true" in err
    assert "auto_map" in _serve_error(run_dir)


def test_an_old_run_without_a_manifest_loads_and_warns_once(run_dir, capsys):
    model = run_dir / "model"
    (model / integrity.MANIFEST).unlink()
    load_trained_classifier(model)
    load_trained_classifier(model)
    err = capsys.readouterr().err
    assert err.count(f"has no {integrity.MANIFEST}") == 1


def test_the_model_card_may_change_after_save(run_dir):
    (run_dir / "model" / "README.md").write_text("a rewritten card")
    integrity.verify_manifest(run_dir / "model")


def test_a_chat_model_gets_the_same_checks_as_a_classifier(tmp_path):
    from tests.serve_helpers import llama_run

    run = llama_run(tmp_path / "chat")
    model = run / "model"
    integrity.write_manifest(model)
    assert load_predictor(run).model.training is False  # intact: loads, in eval mode
    state = load_file(str(model / WEIGHTS))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(model / WEIGHTS), metadata={"format": "pt"})
    with pytest.raises(InputError, match="sha256: content differs"):
        load_predictor(run)
    (model / integrity.MANIFEST).unlink()
    with pytest.raises(InputError, match="NaN or infinite"):
        load_predictor(run)
