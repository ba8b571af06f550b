"""Resumable training state: tensors as safetensors, everything else as JSON; never pickle.

Written to a temporary folder and renamed into place, so a crash mid-save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file, save_model


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict[str, Any]) -> Path:
    """Write model, optimizer and scheduler state plus `state` (step, epoch, RNG) to `folder`."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    meta = {
        "trainer": state,
        "optimizer": opt_meta,
        "scheduler": _plain(scheduler.state_dict()),
        "rng": rng_state(),
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": _plain(sd["param_groups"]), "scalars": scalars}


def _plain(obj: Any) -> Any:
    """JSON-safe copy: tuples to lists, tensors and callables dropped."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if not callable(v)}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.tolist()
    return obj if isinstance(obj, int | float | str | bool | type(None)) else repr(obj)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as JSON-friendly values."""
    py = random.getstate()
    np_state: Any = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
