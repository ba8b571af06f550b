"""Run configuration: typed sections loaded from YAML, a dict or defaults, checked in one pass.

Sections are plain dataclasses and the loader walks their fields and type hints, so a new field or
section needs no loader change; rules (choices, bounds, required) sit in field metadata beside the
default. Every problem is collected into one `InputError` naming file, line and key, so a user
fixes a config in one go.
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

from tunewise.data import sources
from tunewise.errors import InputError, Problem

TASKS = ("classification", "causal_lm")
ADAPT_METHODS = ("full", "head", "freeze", "bitfit", "lora")
STOP_METRICS = ("accuracy", "macro_f1", "loss")
SCHEDULES = ("constant", "linear", "cosine", "cosine_restarts", "step", "exponential")
PRECISIONS = ("auto", "bf16", "fp32")
BASELINES = ("best", "zero_shot", "linear_probe")
LOSSES = ("cross_entropy", "weighted_cross_entropy", "focal", "pairwise_ranking")
UNFREEZE_UNITS = ("epoch", "step")
AUGMENT_METHODS = ("eda", "paraphrase", "backtranslate")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "median", "none")


class ConfigError(InputError):
    """A config that cannot be used; an InputError so the CLI exits 2 and prints every problem."""


def _f(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rules: Any):
    """A field carrying the loader's checks as metadata: choices, ge/gt/le/lt bounds, required."""
    return field(default=default, default_factory=factory, metadata=rules)


@dataclass
class DataConfig:
    """Where the examples come from and which columns hold text and label."""

    train: str = _f("", required=True)
    validation: str | None = None  # None: seeded stratified split of train
    test: str | None = None
    text_col: str = "text"
    label_col: str = "label"
    max_rows: int | None = _f(None, ge=1)  # N rows of each split: a seeded stratified sample
    val_fraction: float = _f(0.1, gt=0.0, le=0.5)
    pair_cols: list[str] = _f(factory=lambda: ["query", "preferred", "rejected"])  # ranking rows


@dataclass
class ModelConfig:
    """Which pre-trained model to start from and how to read inputs."""

    name: str = _f("minilm-l6", required=True)  # embedded default, a local folder, or a hub name
    max_length: int = _f(64, ge=8)
    dropout: float | None = _f(None, ge=0.0, lt=1.0)  # hidden dropout (and the head's) when set
    attention_dropout: float | None = _f(None, ge=0.0, lt=1.0)  # on attention probabilities
    classifier_dropout: float | None = _f(None, ge=0.0, lt=1.0)  # before the head
    trust_remote_code: bool = False


@dataclass
class LoraConfig:
    """LoRA's shape: rank r, scale alpha / r, dropout on the adapter input, which Linear layers."""

    r: int = _f(8, ge=1)
    alpha: float = _f(16.0, gt=0.0)
    dropout: float = _f(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None  # None: PEFT's default for the architecture


@dataclass
class AdaptConfig:
    """Which parameters fine-tuning may change."""

    method: str = _f("full", choices=ADAPT_METHODS)
    # freeze: embeddings + first N layers (int), + these layers (list), or names matching a regex
    freeze_layers: int | list[int] | str = 0
    lora: LoraConfig = _f(factory=LoraConfig)
    unfreeze_every: int | None = _f(None, ge=1)  # gradual: head first, one more layer every N
    unfreeze_unit: str = _f("epoch", choices=UNFREEZE_UNITS)
    layer_lr_decay: float | None = _f(None, gt=0.0, le=1.0)  # lr x decay^(layers below the top)


@dataclass
class EarlyStoppingConfig:
    """When to stop because the validation metric stopped improving."""

    metric: str = _f("macro_f1", choices=STOP_METRICS)
    patience: int = _f(3, ge=0)
    min_delta: float = _f(0.0, ge=0.0)


@dataclass
class LossConfig:
    """Options of `train.loss`; each applies to the losses named beside it."""

    label_smoothing: float = _f(0.0, ge=0.0, lt=1.0)  # any loss
    gamma: float = _f(2.0, ge=0.0)  # focal
    alpha: float | list[float] | None = None  # focal: one factor, or one per class
    class_weights: list[float] | None = None  # weighted_cross_entropy; None: 1 / train frequency
    margin: float | None = _f(None, gt=0.0)  # pairwise_ranking: hinge margin; None: logistic


@dataclass
class TrainConfig:
    """Optimisation settings for the training loop."""

    epochs: int = _f(7, ge=1)
    max_steps: int | None = _f(None, ge=1)
    batch_size: int = _f(32, ge=1)
    grad_accum: int = _f(1, ge=1)  # an optimizer step every N batches of batch_size rows
    lr: float = _f(3.0e-4, gt=0.0)
    weight_decay: float = _f(0.01, ge=0.0)
    schedule: str = _f("linear", choices=SCHEDULES)
    warmup_ratio: float = _f(0.06, ge=0.0, lt=1.0)
    clip_grad_norm: float | None = _f(1.0, gt=0.0)
    precision: str = _f("auto", choices=PRECISIONS)
    early_stopping: EarlyStoppingConfig | None = _f(factory=EarlyStoppingConfig)  # null disables
    eval_every: int | None = _f(None, ge=1)  # steps between evaluations; None = once per epoch
    log_every: int = _f(20, ge=1)
    group_by_length: bool = True
    loss: str = _f("cross_entropy", choices=LOSSES)
    loss_options: LossConfig = _f(factory=LossConfig)


@dataclass
class EvalConfig:
    """How the fine-tuned model is compared and how sure the comparison is."""

    baseline: str = _f("best", choices=BASELINES)
    bootstrap: int = _f(1000, ge=0)
    batch_size: int = _f(128, ge=1)
    slice_cols: list[str] = _f(factory=list)  # test-file columns to slice metrics by
    min_slice_size: int = _f(20, ge=1)  # smaller slices are listed as skipped, not ranked
    temperature_scaling: bool = True  # fit T on validation logits; report ECE after it
    forgetting: list[str] = _f(factory=lambda: ["trec", "sst2"])  # general tasks, or file paths
    forgetting_rows: int = _f(2000, ge=10)  # probe-train rows per general task (seeded sample)
    forgetting_test_rows: int = _f(500, ge=10)  # probe-test rows per general task


@dataclass
class DoctorConfig:
    """Thresholds of the pitfall doctor's rules (report/doctor.py)."""

    overfit_evals: int = _f(3, ge=1)  # validation loss rising this many evaluations in a row
    imbalance_ratio: float = _f(10.0, gt=1.0)  # largest / smallest class
    min_rows_per_class: float = _f(10.0, ge=0.0)
    label_noise_rate: float = _f(0.05, ge=0.0, le=1.0)
    forgetting: float = _f(0.03, ge=0.0)  # general-probe accuracy drop
    slice_gap: float = _f(0.10, ge=0.0)  # worst slice below overall accuracy
    max_ece: float = _f(0.10, ge=0.0)
    spike_factor: float = _f(3.0, gt=1.0)  # loss above this × its recent median
    alpha: float = _f(0.05, gt=0.0, lt=1.0)  # significance level for no-improvement


@dataclass
class AuditConfig:
    """What the data audit checks and when its findings stop a run (data/audit.py)."""

    fail_on: str = _f("error", choices=("error", "never"))  # never: report, do not stop `run`
    near_dup_threshold: float = _f(0.85, gt=0.0, le=1.0)  # Jaccard of character 3-grams
    error_share: float = _f(0.01, ge=0.0, le=1.0)  # leakage/conflicts above this share: error
    min_class_count: int = _f(10, ge=1)
    imbalance_ratio: float = _f(10.0, gt=1.0)  # largest / smallest class
    label_noise: bool = True  # out-of-fold logistic regression on frozen embeddings + cleanlab
    noise_folds: int = _f(3, ge=2)
    embedding_model: str = "minilm-l6"  # encoder for the label-noise check
    length_iqr: float = _f(3.0, gt=0.0)  # length outliers lie above Q3 + k·IQR tokens
    truncation_warn: float = _f(0.01, ge=0.0, le=1.0)  # share of rows cut by model.max_length
    pii: bool = True
    language: bool = True  # flag rows in another script or language than the data set's
    max_examples: int = _f(10, ge=1)  # example rows quoted per finding


@dataclass
class RegexRule:
    """One format-standardising rule of `prepare`: re.sub(pattern, replacement, text)."""

    pattern: str = _f("", required=True)
    replacement: str = ""


@dataclass
class AugmentConfig:
    """Extra training rows; made from the training split only, never validation or test."""

    method: str = _f("eda", choices=AUGMENT_METHODS)
    per_example: int = _f(1, ge=1)  # new rows per training row
    alpha: float = _f(0.1, gt=0.0, le=0.5)  # EDA: share of words changed per operation
    synonyms: str | None = None  # EDA: JSON {word: [synonyms]}; None = embedding neighbours
    model: str | None = None  # paraphrase: instruct LLM (smollm2); backtranslate: en→xx model
    back_model: str | None = None  # backtranslate: xx→en model
    seed: int = 13


@dataclass
class PrepareConfig:
    """Cleaning steps of `tunewise prepare` and `run`, in this order; each reports rows changed."""

    unicode: bool = True  # NFKC, invisible characters removed, whitespace collapsed
    strip_html: bool = True
    rules: list[RegexRule] = _f(factory=list)  # [{pattern, replacement}], applied in order
    replace_urls: bool = False  # -> [URL]
    replace_emails: bool = False  # -> [EMAIL]
    replace_numbers: bool = False  # -> [NUMBER]
    lowercase: bool = False
    pii: str = _f("report", choices=("redact", "report", "off"))
    dedup: str = _f("keep-first", choices=("keep-first", "drop-conflicting", "off"))
    stem: bool = False  # classic options for TF-IDF baselines, not transformer input
    lemmatize: bool = False
    stopwords: bool = False
    augment: AugmentConfig | None = None


@dataclass
class TrackConfig:
    """Where finished runs are logged (report/track.py); an uninstalled backend is skipped."""

    backends: list[str] = _f(factory=lambda: ["mlflow"])  # mlflow, wandb, comet_ml; [] = off
    uri: str | None = None  # MLflow tracking URI; None: sqlite:///<output_dir>/mlflow.db
    experiment: str = "tunewise"


@dataclass
class TuneConfig:
    """`tunewise tune`: the search (tuning/search.py); `space` maps config keys to ranges."""

    trials: int = _f(20, ge=1)  # trials the study holds when done (a resumed study counts its own)
    timeout: float | None = _f(None, gt=0.0)  # seconds; no new trial starts after it
    sampler: str = _f("tpe", choices=SAMPLERS)
    pruner: str = _f("hyperband", choices=PRUNERS)
    storage: str | None = None  # None: in memory (a journal file in tune/ with workers or study)
    study: str | None = None  # None: the run's name
    workers: int = _f(1, ge=1)  # processes on this machine
    metric: str = _f("accuracy", choices=STOP_METRICS)  # on validation; loss is minimised
    space: Any = _f(factory=dict)  # {key: {type: float|int|categorical, ...}}; {} = defaults
    evals_per_epoch: int = _f(2, ge=1)  # validation scores per epoch the pruner sees
    startup_trials: int = _f(5, ge=0)  # TPE: random trials before the model of good regions
    grid_points: int = _f(3, ge=2)  # grid: values per numeric range without its own `grid`
    retrain: bool = True  # retrain the best config with `run` and score it on test, once
    seed: int | None = None  # the sampler's seed; None: the run's seed


@dataclass
class RunConfig:
    """One run: the task, where its outputs go, and every section."""

    task: str = _f("classification", choices=TASKS)
    name: str = _f("run", required=True)
    output_dir: str = _f("runs", required=True)
    seed: int = 13
    data: DataConfig = _f(factory=DataConfig)
    model: ModelConfig = _f(factory=ModelConfig)
    adapt: AdaptConfig = _f(factory=AdaptConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    eval: EvalConfig = _f(factory=EvalConfig)
    doctor: DoctorConfig = _f(factory=DoctorConfig)
    track: TrackConfig = _f(factory=TrackConfig)
    audit: AuditConfig = _f(factory=AuditConfig)
    prepare: PrepareConfig = _f(factory=PrepareConfig)
    tune: TuneConfig = _f(factory=TuneConfig)

    def run_dir(self) -> Path:
        """The folder this run writes into."""
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict:
        """Plain nested dict, for writing the resolved config.yaml."""
        return dataclasses.asdict(self)


# --- loading -------------------------------------------------------------------------------------

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
    cfg = _build(RunConfig, _expand(raw, "", ctx), "", ctx)
    problems = sorted(ctx.problems, key=lambda p: (p.file != origin, p.line or 0))
    if problems:  # file problems in line order, then overrides
        raise ConfigError(problems)
    return cfg


def dump_config(cfg: RunConfig, path: Path) -> None:
    """Write `cfg` as YAML that `load_config` reads back to an equal RunConfig."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


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
    bounds = [(op, sym, rules[key]) for key, (op, sym) in _BOUNDS.items() if key in rules]
    if any(not op(value, limit) for op, _, limit in bounds):
        allowed = " and ".join(f"{sym} {limit}" for _, sym, limit in bounds)
        ctx.add(path, f"must be {allowed}, got {value}", f"use a value {allowed}, e.g. {f.default}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
