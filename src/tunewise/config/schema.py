"""Run configuration: small dataclasses per concern, the loader's rules beside each default.

Sections are plain dataclasses and the loader (`tunewise.config.load`) walks their fields and type
hints, so a new field or section needs no loader change; rules (choices, bounds, required) sit in
field metadata beside the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.core.errors import InputError

TASKS = ("classification", "ranking", "causal_lm")
ADAPT_METHODS = ("full", "head", "freeze", "bitfit", "lora")
CAUSAL_LM_METHODS = ("lora", "full")  # a decoder's head is its vocabulary: no head-only methods
STOP_METRICS = ("accuracy", "macro_f1", "loss")
SCHEDULES = ("constant", "linear", "cosine", "cosine_restarts", "step", "exponential")
PRECISIONS = ("auto", "bf16", "fp32")
BASELINES = ("best", "zero_shot", "linear_probe")
CLASSIFICATION_LOSSES = ("cross_entropy", "weighted_cross_entropy", "focal")
RANKING_LOSS = "pairwise_ranking"  # task ranking: preference pairs, one score per text
LOSSES = (*CLASSIFICATION_LOSSES, RANKING_LOSS)
UNFREEZE_UNITS = ("epoch", "step")
AUGMENT_METHODS = ("eda", "paraphrase", "backtranslate")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "median", "none")
HEAD_INITS = ("random", "linear_probe")
PII_MODES = ("redact", "report", "off")
SELECT_STRATEGIES = ("entropy", "margin")  # `tunewise select`: uncertainty to rank a pool by
SERVE_BACKENDS = ("torch", "onnx")
POOLINGS = ("auto", "cls", "mean")  # what a classification head reads (models/pooling.py)
OOS_METHODS = ("msp", "energy", "mahalanobis", "knn")  # evaluation/oos.py


# What a config gets for the keys it leaves out, by task; the loader fills them in before the
# sections are built. Classification's are the measured recipe (docs/recipe.md), so a config of
# data paths and columns alone trains the way the case study does; a causal LM is tuned with LoRA
# (full fine-tuning of a decoder on a few hundred dialogues forgets the most); a ranking run
# trains with the pairwise loss.
RECIPE = {
    "adapt.method": "freeze",
    "adapt.freeze_layers": 0.5,  # the lower half: 3 of MiniLM-L6's 6 layers
    "adapt.head_init": "linear_probe",
    "train.lr": 5.0e-5,  # 3e-4 undid the probe head in the first epoch (bench/first_epoch.py)
    "train.rdrop": 1.0,
    "train.average_last": 3,
    "train.interpolate_start": True,
    "train.contrastive": {},  # its defaults: only where the median class has ≤ 30 rows
}
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": RECIPE,
    "ranking": {"train.loss": RANKING_LOSS},
    "causal_lm": {"adapt.method": "lora"},
}


class ConfigError(InputError):
    """A config that cannot be used; an InputError so the CLI exits 2 and prints every problem."""


def _f(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rules: Any):
    """A field carrying the loader's checks as metadata: choices, ge/gt/le/lt bounds, required,
    inside (a relative path that stays inside its parent folder)."""
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
    test_fraction: float = _f(0.2, gt=0.0, le=0.5)  # held out of train when data.test is null
    pair_cols: list[str] = _f(factory=lambda: ["query", "preferred", "rejected"])  # ranking rows


@dataclass
class ModelConfig:
    """Which pre-trained model to start from and how to read inputs."""

    name: str = _f("minilm-l6", required=True)  # embedded default, a local folder, or a hub name
    max_length: int = _f(64, ge=8)
    dropout: float | None = _f(None, ge=0.0, lt=1.0)  # hidden dropout (and the head's) when set
    attention_dropout: float | None = _f(None, ge=0.0, lt=1.0)  # on attention probabilities
    classifier_dropout: float | None = _f(None, ge=0.0, lt=1.0)  # before the head
    pooling: str = _f("auto", choices=POOLINGS)  # auto: mean for sentence encoders, else [CLS]
    trust_remote_code: bool = False
    allow_unsafe_weights: bool = False  # accept .bin/.pt (read with weights_only=True)


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
    # freeze: embeddings + first N layers (int), + that share of them (0.5: the lower half),
    # + these layers (list), or names matching a regex
    freeze_layers: int | float | list[int] | str = 0
    lora: LoraConfig = _f(factory=LoraConfig)
    unfreeze_every: int | None = _f(None, ge=1)  # gradual: head first, one more layer every N
    unfreeze_unit: str = _f("epoch", choices=UNFREEZE_UNITS)
    layer_lr_decay: float | None = _f(None, gt=0.0, le=1.0)  # lr x decay^(layers below the top)
    head_init: str = _f("random", choices=HEAD_INITS)  # linear_probe: LP-FT (models/head_init.py)
    freeze_token_embeddings: bool = False  # the token-embedding matrix stays as pre-trained


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
class ContrastiveConfig:
    """The contrastive stage before the head is fitted (training/contrastive.py): SetFit's
    cosine loss on pairs of training rows, for data with few labelled rows a class."""

    max_rows_per_class: float | None = _f(30.0, ge=1.0)  # median class ≤ this; null: always
    pairs_per_row: int = _f(20, ge=1)  # a same-class and an other-class pair per row, N times
    batch_size: int = _f(16, ge=1)  # pairs per step
    lr: float = _f(2.0e-5, gt=0.0)
    max_steps: int | None = _f(1000, ge=1)  # a bound on its time; null: every pair once


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
    packing: bool = False  # short rows share a sequence (block-diagonal mask); slower on CPU here
    loss: str = _f("cross_entropy", choices=LOSSES)
    loss_options: LossConfig = _f(factory=LossConfig)
    rdrop: float = _f(0.0, ge=0.0)  # R-Drop: weight of the KL between two dropout passes
    average_last: int | None = _f(None, ge=2)  # mean weights of the last N evaluations
    interpolate_start: bool = False  # WiSE-FT: best mix of start and trained on validation
    contrastive: ContrastiveConfig | None = None  # SetFit-style stage on few-shot data; null: off
    checkpoint_every: int | None = _f(None, ge=1)  # None: at the end, each new best, SIGTERM
    keep_checkpoints: int = _f(2, ge=1)  # newest checkpoints kept, plus the best
    max_nonfinite_steps: int = _f(3, ge=0)  # NaN/inf loss or gradient: skip N steps, then abort
    record_rows: bool = False  # rows.jsonl: each step's training rows (audits a resume)


@dataclass
class OOSConfig:
    """Out-of-scope detection ("I don't know", evaluation/oos.py): the score a served
    prediction abstains by, and where its threshold comes from (validation rows only)."""

    method: str = _f("knn", choices=OOS_METHODS)  # the one persisted and served
    coverage: float = _f(0.98, gt=0.0, le=1.0)  # in-scope validation share answered (no oos rows)
    label: str = _f("oos", required=True)  # rows with this label are out-of-scope examples
    k: int = _f(10, ge=1)  # knn: distance to the k-th nearest training vector


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
    oos: OOSConfig | None = _f(factory=OOSConfig)  # null: no out-of-scope check or threshold

    def oos_label(self) -> str | None:
        """The label of out-of-scope example rows, None when eval.oos is off."""
        return self.oos.label if self.oos is not None else None


@dataclass
class DoctorConfig:
    """Thresholds of the pitfall doctor's rules (report/doctor.py)."""

    overfit_evals: int = _f(3, ge=1)  # validation loss rising this many evaluations in a row
    overfit_loss_gap: float = _f(1.0, gt=0.0)  # final validation − training loss, in nats
    imbalance_ratio: float = _f(10.0, gt=1.0)  # largest / smallest class
    min_rows_per_class: float = _f(10.0, ge=0.0)
    label_noise_rate: float = _f(0.05, ge=0.0, le=1.0)
    forgetting: float = _f(0.03, ge=0.0)  # general-probe accuracy drop
    slice_gap: float = _f(0.10, ge=0.0)  # worst slice below overall accuracy
    max_ece: float = _f(0.10, ge=0.0)
    spike_factor: float = _f(3.0, gt=1.0)  # loss above this × its recent median
    clip_excess: float = _f(10.0, gt=1.0)  # pre-clip gradient norm above this × the clip ...
    clip_share: float = _f(0.5, gt=0.0, le=1.0)  # ... on this share of logged steps
    start_drop: float = _f(0.02, ge=0.0)  # validation accuracy below the probe head's start
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
    pii: str = _f("report", choices=PII_MODES)
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
    startup_trials: int = _f(5, ge=0)  # TPE: random trials before the model of good regions
    grid_points: int = _f(3, ge=2)  # grid: values per numeric range without its own `grid`
    retrain: bool = True  # retrain the best config with `run` and score it on test, once
    seed: int | None = None  # the sampler's seed; None: the run's seed


@dataclass
class SFTConfig:
    """Chat / instruction fine-tuning of a causal LM (task causal_lm; tunewise/tasks/causal_lm/)."""

    format: str = _f("auto", choices=("auto", "chat", "alpaca"))  # auto: by each line's keys
    messages_key: str | None = None  # None: "messages" or "turns"
    role_map: Any = _f(factory=dict)  # {their role: system|user|assistant}, any case
    overlength: str = _f("truncate", choices=("truncate", "drop", "error"))  # > model.max_length
    packing: bool = True  # pack short rows into full-length rows (else length grouping)
    test_rows: int = _f(100, ge=1)  # held out of train when data.test is null
    eval_rows: int | None = _f(100, ge=1)  # test conversations answered by both models
    eval_turn: str = _f("random", choices=("first", "random", "last"))  # reply to generate
    max_new_tokens: int = _f(64, ge=1)
    canaries: list[int] = _f(factory=lambda: [1, 4, 16])  # repeats per planted secret; [] = off
    canary_candidates: int = _f(256, ge=10)  # random codes the secret's rank is measured among
    forgetting: list[str] = _f(factory=lambda: ["alpaca_libre", "self_instruct"])  # or paths
    forgetting_rows: int = _f(100, ge=5)
    generations_shown: int = _f(10, ge=0)  # side-by-side rows in the report
    quantize: str = _f("none", choices=("none", "4bit"))  # 4bit: QLoRA (CUDA + bitsandbytes)


@dataclass
class RunConfig:
    """One run: the task, where its outputs go, and every section."""

    task: str = _f("classification", choices=TASKS)
    name: str = _f("run", required=True, inside=True)  # a folder inside output_dir
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
    sft: SFTConfig = _f(factory=SFTConfig)

    def run_dir(self) -> Path:
        """The folder this run writes into."""
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict:
        """Plain nested dict, for writing the resolved config.yaml."""
        return dataclasses.asdict(self)
