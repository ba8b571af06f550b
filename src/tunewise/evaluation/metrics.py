"""Classification metrics computed from the confusion matrix with numpy.

Why not call scikit-learn directly: these functions run inside bootstrap loops (a thousand
resamples of thousands of rows), where sklearn's per-call validation dominates the cost.
Everything here is derived from one confusion matrix, so one `bincount` per resample is enough.
The values match sklearn's `precision_recall_fscore_support` with `labels=range(n_classes)`
and `zero_division=0`; the tests hold them to that.

`metrics_from_confusion` also accepts a stack of matrices (shape `(..., K, K)`) so that the
bootstrap can score every resample in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "micro_f1",
    "micro_precision",
    "micro_recall",
    "weighted_f1",
    "weighted_precision",
    "weighted_recall",
)

IdArray = Sequence[int] | np.ndarray


def as_class_ids(values: IdArray, n_classes: int, name: str = "labels") -> np.ndarray:
    """Return `values` as a 1-D int64 array, refusing ids outside `[0, n_classes)`.

    An out-of-range id would silently land in the wrong confusion cell (or crash bincount's
    reshape), so it is rejected here, once, before any fast path runs.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} hold ids outside [0, {n_classes}): {arr.min()}..{arr.max()}")
    return arr


def _paired_ids(y_true: IdArray, y_pred: IdArray, n_classes: int) -> tuple[np.ndarray, ...]:
    """Validate a (truth, prediction) pair; mismatched lengths would misalign every row."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    t = as_class_ids(y_true, n_classes, "y_true")
    p = as_class_ids(y_pred, n_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} rows but y_pred has {p.size}")
    return t, p


def confusion(y_true: IdArray, y_pred: IdArray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows = true class, columns = predicted class) via a single bincount."""
    t, p = _paired_ids(y_true, y_pred, n_classes)
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Divide, yielding 0 where the denominator is 0 (sklearn's `zero_division=0`)."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.zeros(num.shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class_arrays(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support along the last axis."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    return {
        "tp": tp,
        "support": support,
        "predicted": predicted,
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        "f1": _safe_div(2 * tp, support + predicted),
    }


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """All of METRIC_NAMES from a `(..., K, K)` confusion matrix (or a stack of them).

    Returns arrays shaped like the leading batch axes (0-d for a single matrix), so the
    bootstrap can difference whole vectors of resampled scores at once.
    """
    cm = np.asarray(cm, dtype=float)
    pc = _per_class_arrays(cm)
    total = pc["support"].sum(axis=-1)
    tp_all = pc["tp"].sum(axis=-1)
    pred_all = pc["predicted"].sum(axis=-1)
    weights = _safe_div(pc["support"], total[..., None])
    out = {"accuracy": _safe_div(tp_all, total)}
    for key in ("f1", "precision", "recall"):
        out[f"macro_{key}"] = pc[key].mean(axis=-1)
        out[f"weighted_{key}"] = (pc[key] * weights).sum(axis=-1)
    out["micro_precision"] = _safe_div(tp_all, pred_all)
    out["micro_recall"] = _safe_div(tp_all, total)
    out["micro_f1"] = _safe_div(2 * tp_all, pred_all + total)
    return {name: out[name] for name in METRIC_NAMES}


def classification_metrics(y_true: IdArray, y_pred: IdArray, n_classes: int) -> dict[str, float]:
    """Accuracy plus macro/micro/weighted precision, recall and F1 as plain floats.

    Every class in `range(n_classes)` counts in the macro average, including classes absent
    from both truth and predictions (scored 0), exactly as sklearn does with those labels.
    """
    scores = metrics_from_confusion(confusion(y_true, y_pred, n_classes))
    return {name: float(value) for name, value in scores.items()}


def per_class(y_true: IdArray, y_pred: IdArray, labels: list[str]) -> list[dict]:
    """One row per label (in label order) with precision, recall, F1 and support.

    Labels index the class ids: `labels[i]` names class id `i`.
    """
    pc = _per_class_arrays(confusion(y_true, y_pred, len(labels)).astype(float))
    return [
        {
            "label": label,
            "precision": float(pc["precision"][i]),
            "recall": float(pc["recall"][i]),
            "f1": float(pc["f1"][i]),
            "support": int(pc["support"][i]),
        }
        for i, label in enumerate(labels)
    ]
