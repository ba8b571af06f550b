"""One trial of `tunewise tune`: the base config plus sampled overrides, trained exactly as
`tunewise run` trains it (`train_classifier`, the same recipe steps) on the training rows,
and scored on the validation rows, every evaluation reported to the pruner.

Why the test set is never read here: a search that can see test scores selects on them, and
the final number stops being an estimate of anything. The test rows are held apart as `run`
holds them apart (so trials train on exactly the rows the retrain does) and scored once, by the
retrain of the best config. Trials write no files: a 100-trial study leaves no checkpoints.

    objective = Objective(base, params, TrialData.load(cfg, tune_dir / "data"), cfg.tune)
    study.optimize(objective, n_trials=20)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import optuna

from tunewise.config import RunConfig, load_config
from tunewise.data import curate
from tunewise.data.validate import Splits, load_splits
from tunewise.models import load as models
from tunewise.studies.tune import space
from tunewise.training.classifier import train_classifier


@dataclasses.dataclass
class TrialData:
    """Training and validation rows, loaded and cleaned as `run` loads and cleans them."""

    splits: Splits
    _tokenizers: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, cfg: RunConfig, out_dir: Path) -> TrialData:
        """The run's training and validation rows, prepared once. A test file is never opened;
        without one, the share `run` holds out as test is held out here too, and dropped."""
        out_dir.mkdir(parents=True, exist_ok=True)
        given = dataclasses.replace(cfg.data, test=None)
        held_out = not cfg.data.test
        splits = load_splits(given, cfg.seed, held_out, oos_label=cfg.eval.oos_label())
        splits = curate.prepare_splits(cfg, dataclasses.replace(splits, test=None), out_dir)
        return cls(splits)

    def tokenizer(self, cfg: RunConfig) -> Any:
        """The trial model's tokenizer, loaded once per model name."""
        name = cfg.model.name
        if name not in self._tokenizers:
            self._tokenizers[name] = models.load_tokenizer(name, cfg.model.trust_remote_code)
        return self._tokenizers[name]


class Pruning:
    """Loop callback: report each validation score to the trial; stop when the pruner says so.

    The pruner's step is the evaluation's number (1, 2, ...): the run's own evaluations, once
    per epoch or every `train.eval_every` steps, exactly as the retrain will evaluate.
    """

    def __init__(self, trial: Any, metric: str, n_train: int):
        self.trial, self.metric, self.n_train = trial, metric, n_train
        self.slot = self.step = self.samples = 0

    def on_log(self, record: dict[str, Any]) -> None:
        if record.get("split") != "validation":
            return
        value = float(record[self.metric])
        self.step, self.samples = record["step"], round(record["epoch"] * self.n_train)
        self.slot += 1
        self.trial.report(value, self.slot)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.metric} {value:.4f} at evaluation {self.slot}")


class Objective:
    """Callable for `study.optimize`: sample, train, score on validation; never the test set."""

    def __init__(self, base: dict, params: list, data: TrialData, tune: Any):
        self.base, self.params, self.data, self.tune = base, params, data, tune

    def __call__(self, trial: Any) -> float:
        sampled = {p.key: p.suggest(trial) for p in self.params}
        pruning = Pruning(trial, self.tune.metric, len(self.data.splits.train))
        start = time.perf_counter()
        try:
            cfg = load_config(self.base, space.overrides(sampled))
            trained = train_trial(cfg, self.data, [pruning])
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded on the trial; the study goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("steps", pruning.step)
            trial.set_user_attr("samples", pruning.samples)
        trial.set_user_attr("steps", trained.state.step)
        trial.set_user_attr("samples", trained.state.samples)
        return trained.validation[self.tune.metric]


def train_trial(cfg: RunConfig, data: TrialData, callbacks: list):
    """A trial's training: `train_classifier` with no run directory (no file is written)."""
    return train_classifier(cfg, data.splits, tokenizer=data.tokenizer(cfg), callbacks=callbacks)
