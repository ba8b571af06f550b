"""The search space of `tunewise tune`: ranges over config keys, read from `tune.space`.

Why keys are plain dotted config keys: a sampled point becomes `key=value` overrides of the base
config, so anything a user can set by hand can be searched, and the best point is written back
as an ordinary runnable config.

    tune:
      space:
        train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
        train.batch_size: {type: categorical, choices: [16, 32]}
        train.epochs: {type: int, low: 2, high: 6}
        adapt.lora.r: {type: categorical, choices: [4, 8, 16]}
        train.weight_decay: {type: float, low: 0.0, high: 0.1, grid: [0.0, 0.01, 0.1]}

An empty space searches `default_space(cfg)`. Every range is checked against the config before
any trial trains: each end and each choice must load as a value of its key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from tunewise.config import load_config
from tunewise.core.errors import InputError, Problem

KINDS = ("float", "int", "categorical")
SEARCHABLE = ("train.", "model.", "adapt.")  # data, eval and tune keys would change the yardstick
SCALARS = (str, int, float, bool, type(None))
MAX_GRID = 10_000


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (linear or log) or a list of choices."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    grid: tuple = ()  # the values a grid search tries; empty: spread over the range

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this key's value (define-by-run)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self, points: int) -> list:
        """The values a grid search tries: `grid`, the choices, or `points` across the range."""
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return list(self.choices)
        spread = np.geomspace if self.log else np.linspace
        values = spread(self.low, self.high, points)
        if self.kind == "int":
            return sorted({int(round(v)) for v in values})
        return [float(f"{v:.3g}") if 0 < i < points - 1 else float(v) for i, v in enumerate(values)]


def default_space(cfg: Any) -> dict[str, dict]:
    """What to search when the user names nothing: the settings that matter most for fine-tuning.

    Learning rate first (log scale), then batch size, weight decay, warmup and schedule; LoRA
    runs also search the rank.
    """
    space: dict[str, dict] = {
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        "train.weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
        "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.2},
        "train.schedule": {"type": "categorical", "choices": ["linear", "cosine", "constant"]},
    }
    if cfg.adapt.method == "lora":
        space["adapt.lora.r"] = {"type": "categorical", "choices": [4, 8, 16]}
    return space


def parse_space(raw: Any, base: dict, origin: str = "config") -> list[Param]:
    """Checked `Param`s from a `tune.space` mapping; every problem in one InputError (exit 2).

    `base` is the resolved base config as a dict: each range end and choice is loaded into it,
    so a key the config lacks or a value it rejects is reported here, named and with a fix.
    """
    if not isinstance(raw, Mapping):
        fix = "write tune.space as {key: {type: float, low: ..., high: ...}}"
        raise InputError([Problem(origin, None, "tune.space", "not a mapping", fix)])
    params, problems = [], []
    for key, spec in raw.items():
        path = f"tune.space.{key}"
        param, found = _param(str(key), spec, path, origin)
        problems += found or _check_values(param, base, path, origin)
        params.append(param)
    if problems:
        raise InputError(problems)
    return params


def _param(key: str, spec: Any, path: str, origin: str) -> tuple[Param, list[Problem]]:
    """One entry as a Param, or the problems that stop it from being one."""
    bad = Param(key, "categorical")

    def problem(message: str, fix: str) -> tuple[Param, list[Problem]]:
        return bad, [Problem(origin, None, path, message, fix)]

    if not key.startswith(SEARCHABLE):
        return problem("cannot be searched", f"search keys under {', '.join(SEARCHABLE)}")
    if not isinstance(spec, Mapping) or spec.get("type") not in KINDS:
        return problem("needs a type", f"give {{type: {' | '.join(KINDS)}, ...}}")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "grid"}
    if unknown:
        return problem(
            f"unknown field(s) {sorted(unknown)}", "use low, high, log, step, choices, grid"
        )
    grid = spec.get("grid") or ()
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            return problem("categorical needs a non-empty list of choices", "choices: [16, 32]")
        if not all(isinstance(c, SCALARS) for c in choices):
            return problem("choices must be numbers, strings, booleans or null", "")
        return Param(key, "categorical", choices=tuple(choices), grid=tuple(grid)), []
    try:
        low, high = float(spec["low"]), float(spec["high"])
        step = float(spec["step"]) if spec.get("step") is not None else None
    except (KeyError, TypeError, ValueError):
        return problem("needs numeric low and high", "e.g. {type: float, low: 0.0, high: 0.1}")
    log = bool(spec.get("log", False))
    if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0):
        return problem(f"bad range [{low}, {high}]", "low < high, and low > 0 with log: true")
    if not isinstance(grid, list | tuple):
        return problem("grid must be a list of values", "grid: [1.0e-5, 1.0e-4]")
    return Param(key, spec["type"], low, high, log, step, grid=tuple(grid)), []


def _check_values(param: Param, base: dict, path: str, origin: str) -> list[Problem]:
    """Load each end / choice / grid value into the base config; report what it rejects."""
    if param.kind == "categorical":
        values = list(param.choices)
    else:
        values = [param.low, param.high]
        values = [int(v) for v in values] if param.kind == "int" else values
    for value in [*values, *param.grid]:
        try:
            load_config(base, [override(param.key, value)])
        except InputError as exc:
            first = exc.problems[0]
            if isinstance(first, Problem):
                message = f"{value!r} is not usable: {first.field}: {first.message}"
                return [Problem(origin, None, path, message, first.fix)]
            return [Problem(origin, None, path, f"{value!r} is not usable: {first}", "")]
    return []


def override(key: str, value: Any) -> str:
    """`key=value` with the value written as YAML that reads back as the same type.

    YAML 1.1 reads `1e-05` as a string, so values are dumped by PyYAML (`1.0e-05`).
    """
    text = yaml.safe_dump([value], default_flow_style=True).strip()
    return f"{key}={text[1:-1]}"


def overrides(params: Mapping[str, Any]) -> list[str]:
    """Sampled values as config overrides, ready for `load_config(base, overrides)`."""
    return [override(key, value) for key, value in params.items()]


def grid_points(params: Sequence[Param], points: int) -> list[dict[str, Any]]:
    """Every combination of each Param's grid values, in a fixed order."""
    axes = [p.grid_values(points) for p in params]
    size = math.prod(len(a) for a in axes)
    if size > MAX_GRID:
        fix = "give fewer values (grid: [...]) or lower tune.grid_points"
        raise InputError([Problem("config", None, "tune.space", f"grid of {size:,} points", fix)])
    return [
        dict(zip((p.key for p in params), combo, strict=True)) for combo in itertools.product(*axes)
    ]
