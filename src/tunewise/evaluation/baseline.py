"""The generic model the tuned one must beat, scored on the same test rows.

Two baselines from the untuned encoder's mean-pooled embeddings:
- zero-shot: nearest label name by cosine similarity (`card_arrival` → "card arrival");
- linear probe: logistic regression on frozen embeddings, its C chosen on validation only.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

PROBE_C = (1.0, 10.0, 100.0)


def label_text(label: str) -> str:
    """A label name as words: `card_arrival` → `card arrival`."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def zero_shot(test_emb: np.ndarray, label_emb: np.ndarray) -> np.ndarray:
    """Predicted class ids: the label whose name embedding is most similar to the text."""
    return (test_emb @ label_emb.T).argmax(axis=1)


def linear_probe(
    train_emb: np.ndarray,
    train_y: np.ndarray,
    val_emb: np.ndarray,
    val_y: np.ndarray,
    test_emb: np.ndarray,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Predicted class ids on test and the C picked by validation accuracy."""
    model, c = fit_probe(train_emb, train_y, val_emb, val_y, seed)
    return model.predict(test_emb), c


def fit_probe(
    train_emb: np.ndarray, train_y: np.ndarray, val_emb: np.ndarray, val_y: np.ndarray, seed: int
) -> tuple[LogisticRegression, float]:
    """The logistic regression with the C of best validation accuracy, and that C."""
    best_c, best_acc, best_model = PROBE_C[0], -1.0, None
    for c in PROBE_C:
        model = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(train_emb, train_y)
        acc = float((model.predict(val_emb) == val_y).mean())
        if acc > best_acc:
            best_c, best_acc, best_model = c, acc, model
    assert best_model is not None
    return best_model, best_c
