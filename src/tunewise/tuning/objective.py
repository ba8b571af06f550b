"""One trial of `tunewise tune`: the base config plus sampled overrides, trained on the training
rows and scored on the validation rows, with every evaluation reported to the pruner.

Why the test set is not even loaded here: a search that can see test scores selects on them,
and the final number stops being an estimate of anything. The test file is read once, by the
retrain of the best config (`tunewise run`). Trials keep no model on disk either, only their
small `history.jsonl`, so a 100-trial study does not leave 100 checkpoints behind.

    objective = Objective(base, params, TrialData.load(cfg, tune_dir / "data"), cfg.tune, trials)
    study.optimize(objective, n_trials=20)
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from tunewise.config import RunConfig, load_config
from tunewise.curation import prepare_splits
from tunewise.data.encode import Encoded, encode
from tunewise.data.validate import Splits, load_splits
from tunewise.evaluation.metrics import classification_metrics
from tunewise.evaluation.predict import predict_logits
from tunewise.models import load as models
from tunewise.training import recipe
from tunewise.training.callbacks import History
from tunewise.training.loop import TrainState, fit, resolve_precision
from tunewise.tuning import space

LOWER_IS_BETTER = {"loss"}


@dataclasses.dataclass
class TrialData:
    """Training and validation rows, cleaned as `run` cleans them, tokenised once per tokenizer."""

    splits: Splits
    _cache: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, cfg: RunConfig, out_dir: Path) -> TrialData:
        """Read train and validation only (`data.test` is dropped before any file is opened)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        splits = load_splits(dataclasses.replace(cfg.data, test=None), cfg.seed)
        return cls(prepare_splits(cfg, splits, out_dir))

    def encoded(self, cfg: RunConfig) -> tuple[Encoded, Encoded]:
        """(train, validation) for this trial's model and max_length, encoded on first use."""
        key = (cfg.model.name, cfg.model.max_length)
        if key not in self._cache:
            tok = models.load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
            s = self.splits
            self._cache[key] = tuple(
                encode(tok, ex.texts, s.ids(ex), cfg.model.max_length)
                for ex in (s.train, s.validation)
            )
        return self._cache[key]


class Pruning:
    """Loop callback: report each validation score to the trial; stop when the pruner says so.

    The pruner's step is the evaluation slot, round(epoch x evals_per_epoch), so trials with
    different batch sizes are compared at the same share of training.
    """

    def __init__(self, trial: Any, metric: str, evals_per_epoch: int, n_train: int):
        self.trial, self.metric = trial, metric
        self.evals_per_epoch, self.n_train = evals_per_epoch, n_train
        self.scores: dict[int, float] = {}  # loop step -> validation metric
        self.slot = 0
        self.step = self.samples = 0

    def on_log(self, record: dict[str, Any]) -> None:
        if record.get("split") != "validation":
            return
        value = float(record[self.metric])
        self.step, self.samples = record["step"], round(record["epoch"] * self.n_train)
        self.scores[self.step] = value
        self.slot = max(round(record["epoch"] * self.evals_per_epoch), self.slot + 1)
        self.trial.report(value, self.slot)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {value:.4f} at evaluation {self.slot}")

    def value(self, best_step: int) -> float:
        """The score of the weights training ends with: the early-stopping best, else the last."""
        if best_step in self.scores:
            return self.scores[best_step]
        return self.scores[max(self.scores)]


class Objective:
    """Callable for `study.optimize`: sample, train, score on validation; never the test set."""

    def __init__(self, base: dict, params: list, data: TrialData, tune: Any, trials_dir: Path):
        self.base, self.params, self.data = base, params, data
        self.tune, self.trials_dir = tune, trials_dir

    def __call__(self, trial: Any) -> float:
        sampled = {p.key: p.suggest(trial) for p in self.params}
        n_train = len(self.data.splits.train)
        pruning = Pruning(trial, self.tune.metric, self.tune.evals_per_epoch, n_train)
        start = time.perf_counter()
        try:
            cfg = load_config(self.base, space.overrides(sampled))
            history = History(self._history_path(trial.number))
            state = train_trial(cfg, self.data, [pruning, history], self.tune.evals_per_epoch)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded on the trial; the study goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("steps", pruning.step)
            trial.set_user_attr("samples", pruning.samples)
        trial.set_user_attr("steps", state.step)
        trial.set_user_attr("samples", state.samples)
        return pruning.value(state.best_step)

    def _history_path(self, number: int) -> Path:
        folder = self.trials_dir / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "history.jsonl").unlink(missing_ok=True)
        return folder / "history.jsonl"


def eval_every(n_rows: int, train: Any, evals_per_epoch: int) -> int:
    """Steps between evaluations so that each epoch is scored `evals_per_epoch` times."""
    steps_per_epoch = math.ceil(n_rows / (train.batch_size * train.grad_accum))
    return max(1, math.ceil(steps_per_epoch / evals_per_epoch))


def train_trial(cfg: RunConfig, data: TrialData, callbacks: list, evals_per_epoch: int):
    """Train one trial's model in memory (as `pipeline.train_stage`, minus every file)."""
    train_data, val_data = data.encoded(cfg)
    torch.manual_seed(cfg.seed)  # the head's initial weights: a trial is reproducible
    model = recipe.build_model(cfg, data.splits.labels)
    recipe.init_head(cfg, model, train_data)  # LP-FT when adapt.head_init asks, as in `run`
    train_cfg = dataclasses.replace(
        cfg.train, eval_every=eval_every(len(train_data), cfg.train, evals_per_epoch)
    )
    bf16 = resolve_precision(cfg.train.precision, next(model.parameters()).device) == "bf16"
    y_val, n_labels = np.array(val_data.labels), len(data.splits.labels)

    def evaluate_validation(m) -> dict[str, float]:
        logits, loss = predict_logits(m, val_data, cfg.eval.batch_size, bf16)
        scores = classification_metrics(y_val, logits.argmax(1), n_labels)
        return {"loss": loss, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    counts = np.bincount(train_data.labels, minlength=n_labels).tolist()
    state: TrainState = fit(
        model,
        train_data,
        evaluate_validation,
        train_cfg,
        seed=cfg.seed,
        callbacks=[*callbacks, *recipe.extra_callbacks(cfg)],
        loss_fn=recipe.build_training_loss(cfg, counts),
        layer_lr_decay=cfg.adapt.layer_lr_decay,
    )
    return state
