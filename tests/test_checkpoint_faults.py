"""A checkpoint that cannot be written never ends a run: whatever the writer raises (a full disk,
a permission, a safetensors serialisation error, any other Exception), the save warns, removes
its `.tmp-` folder, keeps the previous checkpoint byte for byte, and training goes on."""

from __future__ import annotations

import errno

import pytest
from safetensors import SafetensorError

from tests.test_faults import _fit
from tests.test_training import _train_cfg
from tunewise.core.console import console
from tunewise.training import checkpoint

ERRORS = {
    "disk-full": OSError(errno.ENOSPC, "No space left on device"),
    "permission": PermissionError(errno.EACCES, "Permission denied"),
    "safetensors": SafetensorError("Error while serializing: IoError(No space left on device)"),
    "serialisation": ValueError("You are trying to save a non contiguous tensor"),
    "anything": RuntimeError("the writer broke in a way nobody foresaw"),
}


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_a_failed_save_of_any_kind_warns_cleans_up_and_training_goes_on(
    tmp_path, monkeypatch, capsys, kind
):
    real, seen = checkpoint.save_model, {}
    root = tmp_path / "checkpoints"

    def broken_writer(model, path, *a, **kw):
        step = int(path.split(checkpoint.PREFIX)[-1].split("/")[0])
        if step == 4:  # the second checkpoint: write part of the file, then fail
            seen["before"] = _snapshot(root / "step-00000002")
            with open(path, "wb") as f:
                f.write(b"half a file")
            raise ERRORS[kind]
        return real(model, path, *a, **kw)

    monkeypatch.setattr(checkpoint, "save_model", broken_writer)
    monkeypatch.setattr(console, "_width", 200)  # one unwrapped line per message
    state = _fit(_train_cfg(max_steps=6, checkpoint_every=2, keep_checkpoints=3), out_dir=tmp_path)

    assert state.step == 6  # training went on past the failed save
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000006"]
    assert _snapshot(root / "step-00000002") == seen["before"]  # the previous one, untouched
    assert all(checkpoint.verify(p) is None for p in root.iterdir())
    said = capsys.readouterr().err
    assert "checkpoint at step 4 failed" in said and str(ERRORS[kind]) in said


def test_a_failed_final_save_still_returns_the_trained_state(tmp_path, monkeypatch):
    def full_disk(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_model", full_disk)
    state = _fit(_train_cfg(max_steps=3), out_dir=tmp_path)
    assert state.step == 3
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no .tmp- folder left behind


def test_an_interrupt_during_a_save_is_not_swallowed(tmp_path, monkeypatch):
    """Ctrl-C mid-save is the user's wish to stop, not a failed save to shrug off."""

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fit(_train_cfg(max_steps=2, checkpoint_every=1), out_dir=tmp_path)
    assert list((tmp_path / "checkpoints").iterdir()) == []
