"""Out-of-scope detection: how unlike every trained intent a message is, and when to say
"I don't know".

A classifier answers every message with one of its intents, and its softmax confidence is close
to 1 for many messages that fit none ("what is the weather in paris" → card_delivery_estimate,
0.99). Each method here gives a score per text, higher = more out of scope:

- `msp`: 1 − the top softmax probability after the run's temperature (Hendrycks & Gimpel 2017);
- `energy`: −T·logsumexp(logits / T) (Liu et al. 2020);
- `mahalanobis`: the smallest Mahalanobis distance of the head's input vector to a class mean,
  with one shared covariance (Lee et al. 2018), fitted on training rows;
- `knn`: 1 − the cosine similarity to the k-th nearest training vector (Sun et al. 2022).

The threshold is set on validation rows, never test rows: with no out-of-scope examples, so that
a share `coverage` of in-scope rows is kept; with some, where in-scope recall and out-of-scope
recall together are best (Youden's J).

    scorer = KNNScorer(k=10).fit(train_features, train_labels)
    threshold = coverage_threshold(scorer.score(val_features), coverage=0.98)
    report = oos_report(in_scores, oos_scores, threshold, correct)

or, for a model's outputs on each split, every method at once and the fitted detectors:

    reports, detectors = compare_methods(train, train_y, validation, validation_oos, test,
                                         test_y, test_oos, coverage=0.98, k=10, temperature=1.3)
    save_detector(detectors["knn"], run_dir, label="oos"); load_detector(run_dir)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp, softmax

from tunewise.core import rundir

LOGIT_METHODS = ("msp", "energy")
FEATURE_METHODS = ("mahalanobis", "knn")
METHODS = (*LOGIT_METHODS, *FEATURE_METHODS)
HISTOGRAM_BINS = 30


def msp_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """1 − max softmax probability of logits / T."""
    return 1.0 - softmax(np.asarray(logits, np.float64) / temperature, axis=-1).max(-1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """−T·logsumexp(logits / T): low free energy means the model knows the input."""
    return -temperature * logsumexp(np.asarray(logits, np.float64) / temperature, axis=-1)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class KNNScorer:
    """Distance to the k-th nearest training vector, on L2-normalised head inputs.

    A served query at batch 1 reads the whole bank from memory, after the forward pass has
    pushed it out of the cache, and that read is most of the detector's cost. So a few rows at
    a time find their nearest `CANDIDATES` rows in a float16 copy (half the bytes) and score
    those exactly in float32; larger chunks (evaluation) multiply the float32 bank directly.
    Both give the float32 scores: float16 only chooses the candidates."""

    k: int = 10
    bank_: np.ndarray | None = field(default=None, repr=False)
    _half: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    SMALL = 64  # query rows up to which the candidate search is the faster one
    CANDIDATES = 32  # at least 2k

    def fit(self, features: np.ndarray, labels: Any = None) -> KNNScorer:
        self.bank_, self._half = _normalise(features).astype(np.float32), None
        return self

    def score(self, features: np.ndarray, chunk: int = 1024) -> np.ndarray:
        assert self.bank_ is not None, "fit first"
        k = min(self.k, len(self.bank_))
        bank = torch.from_numpy(self.bank_)
        query = torch.from_numpy(_normalise(features).astype(np.float32))
        if len(query) <= self.SMALL:
            return 1.0 - self._kth_nearest(query, bank, k).double().numpy()
        out = np.empty(len(query))
        for at in range(0, len(query), chunk):  # memory flat in the number of texts
            sims = query[at : at + chunk] @ bank.T
            out[at : at + chunk] = 1.0 - sims.topk(k, dim=1).values[:, -1].double().numpy()
        return out

    def _kth_nearest(self, query: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
        if self._half is None:
            self._half = bank.half()
        n = min(len(bank), max(self.CANDIDATES, 2 * k))
        near = (query.half() @ self._half.T).topk(n, dim=1).indices
        sims = torch.einsum("rd,rnd->rn", query, bank[near])
        return sims.topk(k, dim=1).values[:, -1]

    def state(self) -> dict[str, np.ndarray]:
        assert self.bank_ is not None
        return {"bank": self.bank_}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], k: int) -> KNNScorer:
        return cls(k=k, bank_=np.asarray(state["bank"], np.float32))


@dataclass
class MahalanobisScorer:
    """Smallest Mahalanobis distance to a class mean, one covariance shared by the classes."""

    ridge: float = 1e-3  # added to the covariance's diagonal, relative to its mean variance
    means_: np.ndarray | None = field(default=None, repr=False)
    precision_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, features: np.ndarray, labels: np.ndarray) -> MahalanobisScorer:
        x, y = np.asarray(features, np.float64), np.asarray(labels)
        classes = np.unique(y)
        self.means_ = np.stack([x[y == c].mean(0) for c in classes])
        centred = x - self.means_[np.searchsorted(classes, y)]
        cov = centred.T @ centred / max(len(x) - len(classes), 1)
        cov += np.eye(len(cov)) * self.ridge * np.trace(cov) / len(cov)
        self.precision_ = np.linalg.inv(cov)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        assert self.means_ is not None and self.precision_ is not None, "fit first"
        x = np.asarray(features, np.float64)
        # (x-m)ᵀP(x-m) = xᵀPx − 2 xᵀPm + mᵀPm, for every class at once
        xp = x @ self.precision_
        quad = (xp * x).sum(1, keepdims=True)
        mp = self.means_ @ self.precision_
        dist = quad - 2 * xp @ self.means_.T + (mp * self.means_).sum(1)
        return np.sqrt(np.maximum(dist.min(1), 0.0))

    def state(self) -> dict[str, np.ndarray]:
        assert self.means_ is not None and self.precision_ is not None
        return {"means": self.means_, "precision": self.precision_}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> MahalanobisScorer:
        return cls(means_=np.asarray(state["means"]), precision_=np.asarray(state["precision"]))


def coverage_threshold(in_scope_scores: np.ndarray, coverage: float) -> float:
    """The score below which a share `coverage` of in-scope rows lies (they are answered)."""
    return float(np.quantile(np.asarray(in_scope_scores, np.float64), coverage))


def youden_threshold(in_scope_scores: np.ndarray, oos_scores: np.ndarray) -> float:
    """The threshold where in-scope recall + out-of-scope recall is highest (rows scoring
    above it abstain): the choice when validation holds out-of-scope examples."""
    ins, oos = np.sort(in_scope_scores), np.sort(oos_scores)
    candidates = np.unique(np.r_[ins, oos])
    kept = np.searchsorted(ins, candidates, side="right") / len(ins)  # in-scope score <= t
    caught = 1.0 - np.searchsorted(oos, candidates, side="right") / len(oos)  # oos score > t
    return float(candidates[int(np.argmax(kept + caught))])


def auroc(in_scope_scores: np.ndarray, oos_scores: np.ndarray) -> float:
    """P(an out-of-scope row scores above an in-scope row), ties counting half."""
    scores = np.r_[in_scope_scores, oos_scores]
    ranks = _average_ranks(scores)
    n_in, n_oos = len(in_scope_scores), len(oos_scores)
    return float((ranks[n_in:].sum() - n_oos * (n_oos + 1) / 2) / (n_in * n_oos))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2  # 1-based average rank of a tie group
    return ranks


def fpr_at_recall(in_scope_scores: np.ndarray, oos_scores: np.ndarray, recall: float = 0.95):
    """Share of out-of-scope rows still answered when `recall` of in-scope rows are answered."""
    return float(np.mean(np.asarray(oos_scores) <= coverage_threshold(in_scope_scores, recall)))


def oos_report(
    in_scope_scores: np.ndarray,
    oos_scores: np.ndarray | None,
    threshold: float,
    correct: np.ndarray,
) -> dict[str, Any]:
    """What the threshold does on test rows: in-scope accuracy with abstention counted as wrong,
    and, with out-of-scope test rows, AUROC, FPR at 95% in-scope recall, their recall and
    precision at the threshold."""
    ins = np.asarray(in_scope_scores)
    answered = ins <= threshold
    doc: dict[str, Any] = {
        "threshold": threshold,
        "in_scope_rows": len(ins),
        "in_scope_answered": float(answered.mean()),
        "in_scope_accuracy_with_abstention": float((answered & np.asarray(correct)).mean()),
        "in_scope_accuracy": float(np.mean(correct)),
    }
    if oos_scores is None or not len(oos_scores):
        return {**doc, "oos_rows": 0}
    oos = np.asarray(oos_scores)
    caught = oos > threshold
    flagged = int(caught.sum() + (~answered).sum())
    return {
        **doc,
        "oos_rows": len(oos),
        "auroc": auroc(ins, oos),
        "fpr_at_95_recall": fpr_at_recall(ins, oos, 0.95),
        "oos_recall": float(caught.mean()),
        "oos_precision": float(caught.sum() / flagged) if flagged else None,
    }


@dataclass
class Outputs:
    """A model's logits and head inputs on some rows (models/features.py)."""

    logits: np.ndarray
    features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.logits)


@dataclass
class Detector:
    """A fitted out-of-scope score and its threshold: rows scoring above it abstain."""

    method: str
    threshold: float = float("inf")
    temperature: float = 1.0  # msp only: the run's validation temperature
    k: int = 10
    scorer: KNNScorer | MahalanobisScorer | None = None
    chosen_by: str = "coverage"  # "coverage" (in-scope validation) or "youden" (with oos rows)

    @property
    def needs_features(self) -> bool:
        return self.method in FEATURE_METHODS

    def score(self, logits: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        if self.method == "msp":
            return msp_score(logits, self.temperature)
        if self.method == "energy":
            return energy_score(logits)
        assert self.scorer is not None and features is not None, f"{self.method} needs features"
        return self.scorer.score(features)

    def of(self, out: Outputs) -> np.ndarray:
        return self.score(out.logits, out.features)


def choose_threshold(
    in_scope_scores: np.ndarray, oos_scores: np.ndarray | None, coverage: float
) -> tuple[float, str]:
    """Youden's J with out-of-scope validation rows, else the in-scope coverage quantile."""
    if oos_scores is not None and len(oos_scores):
        return youden_threshold(in_scope_scores, oos_scores), "youden"
    return coverage_threshold(in_scope_scores, coverage), "coverage"


def fit_detector(
    method: str,
    train: Outputs,
    train_y: np.ndarray,
    validation: Outputs,
    validation_oos: Outputs | None,
    coverage: float,
    k: int = 10,
    temperature: float = 1.0,
) -> Detector:
    """Fit the scorer on training rows, the threshold on validation rows: nothing else."""
    scorer: KNNScorer | MahalanobisScorer | None = None
    if method in ("knn", "mahalanobis"):
        if train.features is None:
            raise ValueError(f"{method} scores head inputs: the training Outputs have none")
        if method == "knn":
            scorer = KNNScorer(k=k).fit(train.features)
        else:
            scorer = MahalanobisScorer().fit(train.features, train_y)
    det = Detector(method, temperature=temperature if method == "msp" else 1.0, k=k, scorer=scorer)
    oos = det.of(validation_oos) if validation_oos is not None and len(validation_oos) else None
    det.threshold, det.chosen_by = choose_threshold(det.of(validation), oos, coverage)
    return det


def compare_methods(
    train: Outputs,
    train_y: np.ndarray,
    validation: Outputs,
    validation_oos: Outputs | None,
    test: Outputs,
    test_y: np.ndarray,
    test_oos: Outputs | None,
    *,
    coverage: float,
    k: int = 10,
    temperature: float = 1.0,
    methods: tuple[str, ...] = METHODS,
) -> tuple[dict[str, dict[str, Any]], dict[str, Detector]]:
    """Every method on the same rows: its test report (oos_report, with a histogram of the
    scores) and its detector. Test rows are only scored, never used to fit or choose."""
    correct = test.logits.argmax(1) == np.asarray(test_y)
    reports, detectors = {}, {}
    for method in methods:
        if method in FEATURE_METHODS and train.features is None:
            continue
        det = fit_detector(
            method, train, train_y, validation, validation_oos, coverage, k, temperature
        )
        ins = det.of(test)
        oos = det.of(test_oos) if test_oos is not None and len(test_oos) else None
        report = oos_report(ins, oos, det.threshold, correct)
        reports[method] = {
            **report,
            "chosen_by": det.chosen_by,
            "histogram": histogram(ins, oos, det.threshold),
        }
        detectors[method] = det
    return reports, detectors


def histogram(ins: np.ndarray, oos: np.ndarray | None, threshold: float) -> dict[str, list]:
    """Counts of in-scope and out-of-scope test scores on shared bins (the report's plot)."""
    both = np.r_[ins, oos if oos is not None else [], threshold]
    both = both[np.isfinite(both)]
    edges = np.histogram_bin_edges(both, bins=HISTOGRAM_BINS)
    oos_counts = np.histogram(oos, edges)[0].tolist() if oos is not None else []
    return {
        "edges": edges.tolist(),
        "in_scope": np.histogram(ins, edges)[0].tolist(),
        "oos": oos_counts,
    }


def save_detector(det: Detector, run_dir: Path, **extra: Any) -> None:
    """RUN_DIR/oos.json (method, threshold, ...) and, for feature methods, oos.safetensors."""
    from safetensors.numpy import save_file

    state = rundir.OOS_STATE
    (run_dir / state).unlink(missing_ok=True)
    doc = {
        "method": det.method,
        "threshold": det.threshold,
        "temperature": det.temperature,
        "k": det.k,
        "chosen_by": det.chosen_by,
        "features": "classification head input",
        **extra,
    }
    if det.scorer is not None:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in det.scorer.state().items()},
            str(run_dir / state),
        )
        doc["state"] = state
    (run_dir / rundir.OOS).write_text(json.dumps(doc, indent=1))


def load_detector(run_dir: Path) -> tuple[Detector, dict[str, Any]] | None:
    """The run's detector and its json, or None when the run has none."""
    from safetensors.numpy import load_file

    path = Path(run_dir) / rundir.OOS
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    det = Detector(
        doc["method"],
        float(doc["threshold"]),
        float(doc.get("temperature", 1.0)),
        int(doc.get("k", 10)),
        chosen_by=doc.get("chosen_by", "coverage"),
    )
    if det.needs_features:
        state = load_file(str(Path(run_dir) / doc.get("state", rundir.OOS_STATE)))
        det.scorer = (
            KNNScorer.from_state(state, det.k)
            if det.method == "knn"
            else MahalanobisScorer.from_state(state)
        )
    return det, doc
