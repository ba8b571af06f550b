"""Label-noise candidates: rows whose label a cheap out-of-fold model confidently disagrees with.

Why out-of-fold: a model scoring rows it was trained on agrees with their labels, wrong or not.
Each row is scored by a logistic regression on frozen sentence embeddings that never saw it;
cleanlab's confident learning (`find_label_issues`) then flags rows whose given label is
unlikely given per-class confidence thresholds, which adapts to classes that are easy or hard.

    noise = LabelNoise(folds=3, seed=13).fit(embeddings, labels)
    noise.issues_       # row indices, most suspicious first
    noise.suggested_    # the label the model prefers, per row
"""

from __future__ import annotations

import warnings

import numpy as np


class LabelNoise:
    """Out-of-fold probabilities + confident learning; scikit-learn's fit/learned-state contract."""

    def __init__(self, folds: int = 3, C: float = 10.0, max_iter: int = 200, seed: int = 0):
        self.folds = folds
        self.C = C
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, X: np.ndarray, labels: list[str]) -> LabelNoise:
        """Learn `pred_probs_`, `classes_`, `issues_`, `suggested_` and `self_confidence_`.

        Rows of classes with fewer than `folds` examples cannot be scored out of fold; they get
        no probability row and are never flagged (`scored_` marks the rows that were).
        """
        self.classes_, y = np.unique(np.asarray(labels), return_inverse=True)
        counts = np.bincount(y, minlength=len(self.classes_))
        self.scored_ = counts[y] >= self.folds
        self.pred_probs_ = np.zeros((len(y), len(self.classes_)))
        self.issues_ = np.array([], dtype=int)
        if len(np.unique(y[self.scored_])) >= 2:
            self._score(np.asarray(X)[self.scored_], y[self.scored_])
        self.suggested_ = self.pred_probs_.argmax(1)
        self.self_confidence_ = self.pred_probs_[np.arange(len(y)), y]
        return self

    def _score(self, X: np.ndarray, y: np.ndarray) -> None:
        from cleanlab.filter import find_label_issues
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        present, y_local = np.unique(y, return_inverse=True)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        cv = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings():  # max_iter reached: a cheap model is all this needs
            warnings.simplefilter("ignore")
            probs = cross_val_predict(model, X, y_local, cv=cv, method="predict_proba")
            # n_jobs=1: by default cleanlab forks a Pool of one process per physical core, and
            # a fork beside torch's threads can deadlock (it held CI for 90 minutes)
            issues = find_label_issues(
                y_local, probs, return_indices_ranked_by="self_confidence", n_jobs=1
            )
        rows = np.flatnonzero(self.scored_)
        self.pred_probs_[np.ix_(rows, present)] = probs
        self.issues_ = rows[issues]
