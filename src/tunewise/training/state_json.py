"""A checkpoint's non-tensor state as JSON, never pickle: the optimizer split into tensors (for
safetensors) and plain values, JSON-safe copies of scheduler and scaler state, and RNG states.

    tensors, meta = split_optimizer(optimizer.state_dict())
    optimizer.load_state_dict(join_optimizer(tensors, meta))
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state_dict as safetensors-ready tensors and JSON-safe everything else."""
    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": plain(sd["param_groups"]), "scalars": scalars}


def join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `split_optimizer`: an optimizer state_dict again."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def plain(obj: Any) -> Any:
    """JSON-safe copy: tuples to lists, tensors to lists, callables dropped."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items() if not callable(v)}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.tolist()
    return obj if isinstance(obj, int | float | str | bool | type(None)) else repr(obj)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as JSON-friendly values."""
    py = random.getstate()
    np_state: Any = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def set_rng_state(saved: dict[str, Any]) -> None:
    """Put back what `rng_state` recorded, so dropout and shuffles continue as they would have."""
    version, values, gauss = saved["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    if saved.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in saved["cuda"]])
