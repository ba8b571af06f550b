"""Loading a file never runs code: planted pickles in a model folder or a checkpoint do nothing,
and a static scan keeps `torch.load` weights-only and pickle/joblib loads out of `src/`."""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_training import _toy_encoded, _train_cfg
from tunewise.core.errors import InputError
from tunewise.models.load import load_classifier, load_encoder
from tunewise.training import checkpoint
from tunewise.training.loop import fit

SRC = Path(__file__).resolve().parents[1] / "src"


class Payload:
    """Unpickling this runs `touch MARKER`: what a malicious weights file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_bytes(marker: Path, tmp: Path) -> bytes:
    """A torch.save file (zip pickle) holding a tensor and the payload."""
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2), "x": Payload(marker)},
               tmp / "evil.pt")  # fmt: skip
    return (tmp / "evil.pt").read_bytes()


def test_the_payload_is_live_when_unpickled(tmp_path):
    """Control: plain pickle runs it, so the tests below would see the marker if we did."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.fixture
def evil_model_dir(tmp_path, tiny_model_dir, monkeypatch) -> tuple[Path, Path]:
    """A model folder whose only weights are a malicious pytorch_model.bin; and the marker."""
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    folder, marker = tmp_path / "evil-model", tmp_path / "PWNED"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(evil_bytes(marker, tmp_path))
    return folder, marker


def test_a_pickle_model_file_is_refused_and_runs_nothing(evil_model_dir):
    folder, marker = evil_model_dir
    with pytest.raises(InputError, match="only pickle weights.*allow_unsafe_weights"):
        load_classifier(str(folder), ["a", "b"])
    assert not marker.exists()


def test_allowed_unsafe_weights_are_read_weights_only_and_still_run_nothing(evil_model_dir):
    folder, marker = evil_model_dir
    with pytest.raises(InputError, match="refused: not plain tensors"):
        load_encoder(str(folder), allow_unsafe_weights=True)
    assert not marker.exists()


def test_tunewise_train_on_a_pickle_model_exits_before_training(evil_model_dir, toy_data):
    from tunewise.pipeline import train

    folder, marker = evil_model_dir
    cfg = {"name": "evil", "output_dir": str(folder.parent / "runs"),
           "data": {"train": str(toy_data[0])}, "model": {"name": str(folder)},
           "track": {"backends": []}}  # fmt: skip
    with pytest.raises(InputError, match="only pickle weights"):
        train(cfg)
    assert not marker.exists() and not (folder.parent / "runs" / "evil" / "model").exists()


def test_allowed_plain_pickle_weights_load_through_a_safetensors_copy(
    tmp_path, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "bin-model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(InputError):
        load_encoder(str(folder))  # still refused by default
    model = load_encoder(str(folder), allow_unsafe_weights=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert list((tmp_path / "cache" / "safetensors").glob("*/model.safetensors"))


def test_a_planted_pickle_in_a_checkpoint_is_skipped_and_runs_nothing(tmp_path):
    from tests.conftest import tiny_bert

    cfg = _train_cfg(max_steps=4, checkpoint_every=2, keep_checkpoints=3)
    fit(tiny_bert(), _toy_encoded(), lambda m: {}, cfg, seed=0, out_dir=tmp_path)
    root, marker = tmp_path / "checkpoints", tmp_path / "PWNED"
    newest, older = root / "step-00000004", root / "step-00000002"
    # a careful attacker swaps the weights for a pickle and rewrites the manifest to match
    (newest / "model.safetensors").write_bytes(evil_bytes(marker, tmp_path))
    files = [f for f in newest.iterdir() if f.name != "manifest.json"]
    manifest = {f.name: checkpoint._digest(f) for f in files}
    (newest / "manifest.json").write_text(json.dumps(manifest))
    for name in ("optimizer.pt", "rng.pkl", "scheduler.bin"):  # files tunewise never opens
        (older / name).write_bytes(evil_bytes(marker, tmp_path))
    said = []
    assert checkpoint.latest_valid(root, said.append) == older
    assert "model.safetensors is not a safetensors file" in said[0]
    state = fit(tiny_bert(), _toy_encoded(), lambda m: {}, cfg, seed=0, out_dir=tmp_path,
                resume_from=older)  # fmt: skip
    assert state.step == 4 and not marker.exists()


PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
PICKLE_READERS = ("load", "loads", "Unpickler", "open")


def unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, why) for each torch.load without weights_only=True and each pickle-family load."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append((node.lineno, f"from {node.module} import ..."))
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        owner, _, attr = name.rpartition(".")
        kw = {k.arg: k.value for k in node.keywords}
        if name == "torch.load" or (owner.endswith("serialization") and attr == "load"):
            flag = kw.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append((node.lineno, f"{name} without weights_only=True"))
        elif owner.split(".")[0] in PICKLE_MODULES and attr in PICKLE_READERS:
            found.append((node.lineno, name))
        elif attr == "read_pickle" or (attr == "load" and "allow_pickle" in kw):
            found.append((node.lineno, f"{name} reads pickle"))
        elif getattr(kw.get("trust_remote_code"), "value", None) is True:
            found.append((node.lineno, f"{name} with trust_remote_code=True hard-coded"))
    return found


def test_the_scanner_catches_what_it_must():
    bad = ast.parse(
        "import torch, pickle, joblib\nfrom pickle import loads\ntorch.load(f)\n"
        "torch.load(f, weights_only=False)\npickle.loads(b)\njoblib.load(p)\n"
        "np.load(p, allow_pickle=True)\npd.read_pickle(p)\n"
        "M.from_pretrained(x, trust_remote_code=True)\n"
    )  # fmt: skip
    assert [line for line, _ in unsafe_loads(bad)] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert unsafe_loads(ast.parse("torch.load(f, map_location='cpu', weights_only=True)")) == []


def test_src_has_no_unsafe_load():
    problems = [
        f"{path.relative_to(SRC)}:{line}: {why}"
        for path in sorted(SRC.rglob("*.py"))
        for line, why in unsafe_loads(ast.parse(path.read_text(), str(path)))
    ]
    assert not problems, "\n".join(problems)
