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
    threshold = coverage_threshold(scorer.score(val_features), coverage=0.95)
    report = oos_report(in_scores, oos_scores, threshold, correct)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax

LOGIT_METHODS = ("msp", "energy")
FEATURE_METHODS = ("mahalanobis", "knn")


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
    """Distance to the k-th nearest training vector, on L2-normalised head inputs."""

    k: int = 10
    bank_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, features: np.ndarray, labels: Any = None) -> KNNScorer:
        self.bank_ = _normalise(features).astype(np.float32)
        return self

    def score(self, features: np.ndarray, chunk: int = 1024) -> np.ndarray:
        assert self.bank_ is not None, "fit first"
        k = min(self.k, len(self.bank_))
        query = _normalise(features).astype(np.float32)
        out = np.empty(len(query))
        for at in range(0, len(query), chunk):  # memory flat in the number of texts
            sims = query[at : at + chunk] @ self.bank_.T
            out[at : at + chunk] = 1.0 - np.partition(sims, -k, axis=1)[:, -k]
        return out

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
