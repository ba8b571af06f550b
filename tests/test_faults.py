"""Faults by injection: NaN/inf steps are skipped and logged, then abort; a corrupt, truncated or
failed checkpoint never replaces a good one; a disk too small is refused before training."""

from __future__ import annotations

import json
import os
import shutil
import signal
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import tiny_bert
from tests.test_training import _toy_encoded, _train_cfg
from tunewise.core.errors import InputError, TrainingInterrupted
from tunewise.training import checkpoint
from tunewise.training.callbacks import History
from tunewise.training.faults import NonFiniteAbort, Watch
from tunewise.training.loop import fit


def nan_on_steps(steps: set[int]):
    """A cross-entropy loss that returns NaN on the chosen (1-based) optimizer steps."""
    calls = {"n": 0}

    def loss_fn(logits, labels):
        calls["n"] += 1
        loss = F.cross_entropy(logits, labels)
        return loss * float("nan") if calls["n"] in steps else loss

    return loss_fn


class Recorder:
    """Keeps every log record, each step's rows and a fingerprint of the weights after it."""

    def __init__(self):
        self.records, self.rows, self.weights, self.model = [], {}, {}, None

    def on_log(self, record):
        self.records.append(record)

    def on_step_begin(self, state, model):
        self.model = model

    def on_step_end(self, state, rows):
        self.rows[state.step] = list(rows)
        self.weights[state.step] = [p.detach().clone() for p in self.model.parameters()]

    def same_weights(self, a: int, b: int) -> bool:
        return all(torch.equal(x, y) for x, y in zip(self.weights[a], self.weights[b], strict=True))


def _fit(cfg, rec=None, **kw):
    return fit(tiny_bert(), _toy_encoded(), lambda m: {}, cfg, seed=0,
               callbacks=[rec] if rec else [], **kw)  # fmt: skip


def test_nan_loss_steps_are_skipped_logged_and_kept_out_of_the_average():
    rec = Recorder()
    state = _fit(_train_cfg(max_steps=8, max_nonfinite_steps=3), rec,
                 loss_fn=nan_on_steps({3, 5}))  # fmt: skip
    assert state.step == 8 and state.nonfinite_steps == 2
    faults = [r for r in rec.records if r["split"] == "fault"]
    assert [r["step"] for r in faults] == [3, 5] and all(r["loss"] != r["loss"] for r in faults)
    assert faults[0]["rows"] == rec.rows[3]
    train = {r["step"]: r for r in rec.records if r["split"] == "train"}
    assert all(train[s]["loss"] == train[s]["loss"] for s in (1, 2, 4, 6, 7, 8))
    assert rec.same_weights(3, 2) and rec.same_weights(5, 4)  # a skipped step updates nothing
    assert not rec.same_weights(4, 3)


def test_a_nan_gradient_with_a_finite_loss_is_skipped_too():
    model, rec, calls = tiny_bert(), Recorder(), {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 2 else grad

    model.classifier.weight.register_hook(poison)
    state = fit(model, _toy_encoded(), lambda m: {}, _train_cfg(max_steps=4), seed=0,
                callbacks=[rec])  # fmt: skip
    fault = [r for r in rec.records if r["split"] == "fault"]
    assert state.nonfinite_steps == 1 and fault[0]["step"] == 2
    assert fault[0]["loss"] == fault[0]["loss"] and fault[0]["grad_norm"] != fault[0]["grad_norm"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_window_of_only_skipped_steps_logs_nan_not_a_number_that_hides_it(tmp_path):
    cfg = _train_cfg(max_steps=4, log_every=2, max_nonfinite_steps=5)
    fit(tiny_bert(), _toy_encoded(), lambda m: {}, cfg, seed=0, loss_fn=nan_on_steps({3, 4}),
        callbacks=[History(tmp_path / "history.jsonl")])  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    window = [r for r in lines if r["split"] == "train" and r["step"] == 4][0]
    assert window["loss"] is None and window["loss_nonfinite"] == "nan"


def test_too_many_nonfinite_steps_abort_with_the_step_and_rows_in_a_file(tmp_path):
    rec = Recorder()
    with pytest.raises(NonFiniteAbort, match="nonfinite.json") as err:
        _fit(_train_cfg(max_steps=20, max_nonfinite_steps=2), rec,
             loss_fn=nan_on_steps(set(range(2, 30))), out_dir=tmp_path)  # fmt: skip
    assert err.value.exit_code == 1
    report = json.loads((tmp_path / "nonfinite.json").read_text())
    assert report["step"] == 4 and report["rows"] == rec.rows[4]
    assert [s["step"] for s in report["skipped"]] == [2, 3, 4] and report["limit"] == 2


def _checkpointed_run(tmp_path, **kw):
    cfg = _train_cfg(**{"max_steps": 6, "checkpoint_every": 2, "keep_checkpoints": 3, **kw})
    _fit(cfg, out_dir=tmp_path)
    return tmp_path / "checkpoints"


def test_checkpoints_have_a_manifest_and_keep_only_the_newest(tmp_path):
    root = _checkpointed_run(tmp_path, keep_checkpoints=2)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000004", "step-00000006"]
    manifest = json.loads((root / "step-00000006" / "manifest.json").read_text())
    assert set(manifest) == {"model.safetensors", "optimizer.safetensors", "state.json"}
    assert checkpoint.verify(root / "step-00000006") is None


def test_corrupt_and_truncated_checkpoints_fall_back_to_the_previous_valid_one(tmp_path):
    root = _checkpointed_run(tmp_path)
    model_file = root / "step-00000006" / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern, same size
    model_file.write_bytes(bytes(data))
    opt_file = root / "step-00000004" / "optimizer.safetensors"
    opt_file.write_bytes(opt_file.read_bytes()[:100])  # truncated mid-write
    (root / ".tmp-step-00000008").mkdir()  # a crash mid-save leaves this
    said = []
    assert checkpoint.latest_valid(root, said.append) == root / "step-00000002"
    text = "\n".join(said)
    assert "step-00000006: model.safetensors fails its sha256 checksum" in text
    assert "step-00000004: optimizer.safetensors has 100 bytes" in text
    assert "unfinished" in text and not (root / ".tmp-step-00000008").exists()


def test_disk_too_small_is_refused_before_training_with_the_bytes_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(free=10_000))
    rec = Recorder()
    with pytest.raises(InputError, match=r"checkpoints need about [\d,]+ bytes") as err:
        _fit(_train_cfg(max_steps=2), rec, out_dir=tmp_path)
    assert "10,000 bytes free" in str(err.value) and not rec.rows  # no step was trained


def test_a_failed_save_keeps_the_previous_checkpoint_valid(tmp_path, monkeypatch):
    real, calls = checkpoint.save_file, {"n": 0}

    def full_disk(tensors, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the optimizer file of the second checkpoint
            real(tensors, path, *a, **kw)
            raise OSError(28, "No space left on device")
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    root = _checkpointed_run(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000006"]
    assert all(checkpoint.verify(p) is None for p in root.iterdir())


class SignalAt:
    """Sends this process `sig` as step `step` ends, as `kill` or Ctrl-C would."""

    def __init__(self, step: int, sig: int):
        self.step, self.sig = step, sig

    def on_step_end(self, state, rows):
        if state.step == self.step:
            os.kill(os.getpid(), self.sig)


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    original = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as `nohup`, `&` or a supervisor
    try:
        watch = Watch.start(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        watch.stop()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_step_checkpoints_and_resumes_to_the_same_weights(
    tmp_path, sig, code
):
    cfg = _train_cfg(max_steps=10, early_stopping=None)
    whole = tiny_bert()
    fit(whole, _toy_encoded(), lambda m: {}, cfg, seed=0)
    handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    original = signal.signal(sig, handler)  # a background job starts with SIGINT ignored
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            fit(tiny_bert(), _toy_encoded(), lambda m: {}, cfg, seed=0, out_dir=tmp_path,
                callbacks=[SignalAt(4, sig)])  # fmt: skip
        assert signal.getsignal(sig) is handler  # put back
    finally:
        signal.signal(sig, original)
    assert stop.value.exit_code == code and stop.value.checkpoint.name == "step-00000004"
    resumed = tiny_bert()
    state = fit(resumed, _toy_encoded(), lambda m: {}, cfg, seed=0, out_dir=tmp_path,
                resume_from=stop.value.checkpoint)  # fmt: skip
    assert state.step == 10
    pairs = zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
