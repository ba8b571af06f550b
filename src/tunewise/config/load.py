"""Load a RunConfig from YAML, a dict or defaults plus `key=value` overrides, checked in one pass.

Every problem is collected into one `ConfigError` naming file, line and key, so a user fixes a
config in one go: `load_config("configs/banking77.yaml", ["train.lr=1e-4"])`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import operator
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunewise.config.schema import (
    CAUSAL_LM_METHODS,
    RANKING_LOSS,
    TASK_DEFAULTS,
    ConfigError,
    RunConfig,
)
from tunewise.core.errors import Problem
from tunewise.data import sources

_BAD = object()  # a value that failed its type check (already reported)
_UNIONS = (typing.Union, types.UnionType)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")
_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"),
           "le": (operator.le, "<="), "lt": (operator.lt, "<")}  # fmt: skip
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
          type(None): "null", list: "a list"}  # fmt: skip


@dataclass
class _Context:
    """Where each dotted key came from (file, line) and the problems found so far."""

    origin: str
    check_required: bool = True
    lines: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: str, message: str, fix: str = "") -> None:
        """Record a problem at the nearest known place, so a missing key points at its section."""
        where = path
        while where and where not in self.lines:
            where = where.rpartition(".")[0]
        file, line = self.lines.get(where, (self.origin, None))
        self.problems.append(Problem(file, line, path, message, fix))


def load_config(
    source: str | Path | dict | None = None, overrides: Sequence[str] = ()
) -> RunConfig:
    """Build a checked RunConfig from a YAML path, a dict or defaults, plus `key=value` overrides.

    With no source and no overrides the defaults come back without the required-field check
    (data.train is empty then), so callers can inspect or dump a template.
    """
    origin = "<dict>" if isinstance(source, dict) else str(source or "<defaults>")
    ctx = _Context(origin, check_required=source is not None or bool(overrides))
    raw = _read_source(source, ctx)
    for text in overrides:
        _apply_override(raw, text, ctx)
    _task_defaults(raw)
    cfg = _build(RunConfig, _expand(raw, "", ctx), "", ctx)
    _check_task(cfg, ctx)
    problems = sorted(ctx.problems, key=lambda p: (p.file != origin, p.line or 0))
    if problems:  # file problems in line order, then overrides
        raise ConfigError(problems)
    return cfg


def _task_defaults(raw: dict) -> None:
    """Defaults that depend on the task (schema.TASK_DEFAULTS), filled in where the config leaves
    them out, so the resolved config.yaml records them."""
    task = raw.get("task") or RunConfig.task
    for key, value in TASK_DEFAULTS.get(str(task), {}).items():
        section, _, name = key.partition(".")
        given = raw.get(section)
        if given is None or isinstance(given, dict):  # else the loader reports the bad section
            raw[section] = {name: value, **(given or {})}


def _check_task(cfg: RunConfig, ctx: _Context) -> None:
    """Settings that contradict the task, reported like any other config problem."""

    def refuse(key: str, message: str, fix: str) -> None:
        file, line = ctx.lines.get(key, (ctx.origin, None))
        ctx.problems.append(Problem(file, line, key, message, fix))

    loss = cfg.train.loss
    if cfg.task != "ranking" and loss == RANKING_LOSS:
        refuse("train.loss", f"{RANKING_LOSS} trains a reranker from preference pairs",
               "set task: ranking (files with query, preferred and rejected columns)")  # fmt: skip
    if cfg.task == "ranking" and loss != RANKING_LOSS:
        refuse("train.loss", f"a ranking run learns from pairs, not with {loss}",
               f"remove train.loss (ranking trains with {RANKING_LOSS})")  # fmt: skip
    if cfg.train.rdrop and cfg.task != "classification":
        refuse("train.rdrop", f"R-Drop compares class distributions; task {cfg.task} has none",
               "set train.rdrop: 0")  # fmt: skip
    if cfg.task == "causal_lm" and cfg.adapt.method not in CAUSAL_LM_METHODS:
        refuse("adapt.method", f"'{cfg.adapt.method}' is not available for causal_lm",
               "set adapt.method: lora (the default recipe for causal_lm) or full")  # fmt: skip
    share = cfg.adapt.freeze_layers
    if isinstance(share, float) and not 0 <= share < 1:
        refuse("adapt.freeze_layers", f"{share!r} is not a share of the layers",
               "give a share from 0 to 1 (0.5: the lower half) or a whole layer count")  # fmt: skip


def _fail(ctx: _Context, line: int | None, message: str, fix: str) -> ConfigError:
    """A problem that stops loading at once: nothing else can be checked without the mapping."""
    return ConfigError([Problem(ctx.origin, line, "config", message, fix)])


def _read_source(source: str | Path | dict | None, ctx: _Context) -> dict:
    """The raw mapping to build from, with each key's line recorded when it comes from a file."""
    if not isinstance(source, str | Path):
        return copy.deepcopy(source or {})
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _fail(ctx, None, f"cannot read: {reason}", "check the path") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        fix = "check indentation, colons and quoting on this line or the one before"
        raise _fail(ctx, mark.line + 1 if mark else None, reason, fix) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise _fail(ctx, 1, "not a mapping", "write sections such as data:, train: at top level")
    _record_lines(node, "", ctx)
    return data


def _record_lines(node: yaml.Node | None, prefix: str, ctx: _Context) -> None:
    """Map each dotted key path to its 1-based line in the file (yaml marks are 0-based)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = _join(prefix, str(key_node.value))
            ctx.lines[path] = (ctx.origin, key_node.start_mark.line + 1)
            _record_lines(value_node, path, ctx)


def _apply_override(raw: dict, text: str, ctx: _Context) -> None:
    """Set one dotted `key=value` (value parsed as YAML) in the raw mapping before building."""
    key, sep, value_text = (part.strip() for part in text.partition("="))
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        sep = ""
    if not sep or not key:
        fix = "write key=value, e.g. train.lr=3e-5; quote odd values"
        ctx.problems.append(Problem("override", None, key or text, f"cannot read {text!r}", fix))
        return
    parts, node = key.split("."), raw
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: depth + 1])
        if node.get(part) is None:  # absent or null section: the override creates it
            node[part] = {}
            ctx.lines[prefix] = ("override", None)
        node = node[part]
        if not isinstance(node, dict):
            fix = f"set {prefix} itself"
            ctx.problems.append(Problem("override", None, key, f"{prefix} is not a section", fix))
            return
    node[parts[-1]] = value
    for stale in [p for p in ctx.lines if p.startswith(key + ".")]:
        del ctx.lines[stale]
    ctx.lines[key] = ("override", None)


def _expand(value: Any, path: str, ctx: _Context) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string, so configs stay machine-independent."""
    if isinstance(value, dict):
        return {k: _expand(v, _join(path, str(k)), ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
    if isinstance(value, str):
        before = len(ctx.problems)
        text = _VAR.sub(lambda match: _lookup(match, path, ctx), value)
        return text if len(ctx.problems) == before else _BAD  # reported once, not again as a type
    return value


def _lookup(match: re.Match, path: str, ctx: _Context) -> str:
    """One variable's value; TUNEWISE_DATA_DIR falls back to the folder data_dir() picks."""
    name, default = match.group(1), match.group(3)
    value = os.environ.get(name)
    if value:
        return value
    if default is not None:
        return default
    if name == sources.ENV_VAR:
        return str(sources.data_dir())
    if value is None:
        ctx.add(path, f"environment variable {name} is not set",
                f"export {name}=..., or write ${{{name}:-default}}")  # fmt: skip
    return value or ""


def _build(cls: type, raw: dict, path: str, ctx: _Context) -> Any:
    """An instance of dataclass `cls` from `raw`; bad values are reported and left at default."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in [k for k in raw if k not in fields]:
        _unknown_key(str(key), list(fields), path, ctx)
    hints = typing.get_type_hints(cls)
    given = {
        name: _coerce(raw[name], hints[name], _join(path, name), ctx)
        for name in fields
        if name in raw
    }
    obj = cls(**{name: value for name, value in given.items() if value is not _BAD})
    for name, f in fields.items():
        value = getattr(obj, name)
        if name not in raw and dataclasses.is_dataclass(value):  # a default section is checked too
            _build(type(value), {}, _join(path, name), ctx)
        if given.get(name) is not _BAD:
            _check_rules(f, value, _join(path, name), ctx)
    return obj


def _unknown_key(key: str, valid: list[str], path: str, ctx: _Context) -> None:
    """Report a key the section lacks with the closest valid one, since most are typos."""
    close = difflib.get_close_matches(key, valid, n=1)
    fix = f"did you mean {_join(path, close[0])!r}?" if close else f"use one of: {', '.join(valid)}"
    ctx.add(_join(path, key), "unknown key", fix)


def _coerce(value: Any, hint: Any, path: str, ctx: _Context, shown: Any = None) -> Any:
    """`value` converted to `hint` (scalar, X | None, list[X], dataclass), or _BAD if reported."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is _BAD:
        return _BAD
    if origin in _UNIONS:
        rest = [a for a in args if a is not type(None)]
        if value is None and len(rest) < len(args):
            return None
        if len(rest) == 1:
            return _coerce(value, rest[0], path, ctx, shown=hint)
        return _first_fit(value, rest, path, ctx, hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value, path, ctx)  # type: ignore[arg-type]
    if origin is list and isinstance(value, list):
        items = [
            _coerce(v, args[0] if args else Any, f"{path}[{i}]", ctx) for i, v in enumerate(value)
        ]
        return _BAD if any(item is _BAD for item in items) else items
    if hint not in _NAMES and origin is None and not dataclasses.is_dataclass(hint):
        return value  # a hint this loader does not know (Any, Path, ...): taken as given
    result = _scalar(value, hint) if hint in _NAMES else _BAD
    if result is _BAD:
        got = "null" if value is None else f"{value!r} ({type(value).__name__})"
        quote = f'quote it: "{value}"' if hint is str and isinstance(value, int | float) else ""
        expected = " or ".join(_describe(a) for a in typing.get_args(shown) or (shown or hint,))
        ctx.add(path, f"expected {expected}, got {got}", quote)
    return result


def _first_fit(value: Any, options: list, path: str, ctx: _Context, hint: Any) -> Any:
    """`value` as the first union member it fits (`int | list[int] | str`: 2, [0, 1], "regex")."""
    for option in options:
        trial = _Context(ctx.origin, ctx.check_required, ctx.lines)
        result = _coerce(value, option, path, trial)
        if not trial.problems:
            return result
    return _coerce(value, options[-1], path, ctx, shown=hint)  # reports "expected A or B or C"


def _describe(hint: Any) -> str:
    """How a type reads in an error message; sections (dataclasses) read as mappings."""
    return _NAMES.get(typing.get_origin(hint) or hint, "a mapping of keys")


def _scalar(value: Any, hint: type) -> Any:
    """`value` as an int, float, str or bool, or _BAD; bools are never numbers.

    Numeric strings count as numbers: YAML 1.1 reads `3e-4` (no dot) as a string, and `${VAR}`
    expansion always yields strings. Ints accept whole floats (7.0), not fractions.
    """
    if hint is bool or isinstance(value, bool):
        return value if hint is bool and isinstance(value, bool) else _BAD
    if hint is str:
        return os.fspath(value) if isinstance(value, str | os.PathLike) else _BAD
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return _BAD
    if hint is int:
        return int(value) if float(value).is_integer() else _BAD
    return float(value) if hint is float else _BAD


def _check_rules(f: dataclasses.Field, value: Any, path: str, ctx: _Context) -> None:
    """Apply the field's metadata rules: required (non-empty), choices, numeric bounds."""
    rules = f.metadata
    if value is None:
        return
    if rules.get("required") and ctx.check_required and not str(value).strip():
        ctx.add(path, "required but empty", f"set {path} in the config, or pass {path}=VALUE")
    choices = rules.get("choices", ())
    if choices and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        ctx.add(
            path, f"{value!r} is not a valid choice", f"use one of: {', '.join(choices)}{guess}"
        )
    if rules.get("inside") and str(value).strip() and not _stays_inside(str(value)):
        fix = "use a plain folder name such as banking77 (no '..', '.' or leading '/')"
        ctx.add(path, f"{value!r} would put the run outside output_dir", fix)
    bounds = [(op, sym, rules[key]) for key, (op, sym) in _BOUNDS.items() if key in rules]
    if any(not op(value, limit) for op, _, limit in bounds):
        allowed = " and ".join(f"{sym} {limit}" for _, sym, limit in bounds)
        ctx.add(path, f"must be {allowed}, got {value}", f"use a value {allowed}, e.g. {f.default}")


def _stays_inside(name: str) -> bool:
    """Whether folder `name`, joined to any parent, is a folder strictly below it."""
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts and bool(parts)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
