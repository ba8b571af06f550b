""" "I don't know" when serving: both backends (PyTorch and ONNX Runtime) score each text with the
run's out-of-scope detector, from the logits and the head's input vector, and answer a text
above its threshold with `"label": None, "abstained": True`.

    det = detector(run_dir, threshold=None)  # RUN_DIR/oos.json, written by `evaluate`
    predictions = with_abstentions(predictions, det, logits, features)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunewise.core.console import console
from tunewise.evaluation.oos import Detector, load_detector


def detector(run_dir: Path, threshold: float | None = None) -> Detector | None:
    """The run's out-of-scope detector, its threshold replaced by `threshold` when given; with
    no oos.json, a given threshold applies to the msp score (1 − top probability)."""
    found = load_detector(run_dir)
    if found is None and threshold is None:
        return None
    det = found[0] if found is not None else Detector("msp")
    if threshold is not None:
        det.threshold = threshold
    console.log(f"out of scope: {det.method} score above {det.threshold:.4g} abstains")
    return det


def with_abstentions(
    predictions: list[dict], det: Detector | None, logits: np.ndarray, features: np.ndarray | None
) -> list[dict]:
    """Each prediction with its out-of-scope score and decision (unchanged with no detector)."""
    if det is None:
        return predictions
    feats = None if features is None else np.asarray(features, np.float64)
    scores = det.score(np.asarray(logits, np.float64), feats)
    return [abstain(p, float(x), det.threshold) for p, x in zip(predictions, scores, strict=True)]


def abstain(prediction: dict, oos_score: float, threshold: float) -> dict:
    """The prediction with its out-of-scope score; "I don't know" (label None) above threshold."""
    out = {
        **prediction,
        "abstained": oos_score > threshold,
        "oos_score": oos_score,
        "oos_threshold": threshold,
    }
    if out["abstained"]:
        out["label"] = None
    return out
