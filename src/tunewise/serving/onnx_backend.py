"""Classify with ONNX Runtime from RUN_DIR/onnx/ (written by `tunewise export`).

`serve --backend onnx` uses this: the same labels and probabilities as the PyTorch model (within
1e-4 for fp32, checked at export time), and the same out-of-scope decisions from the export's
second output, the head's input vector, with less per-request overhead.

    predictor = OnnxPredictor("runs/banking77")
    predictor.predict(["my card has not arrived"], top_k=3)
    # [{"label": "card_arrival", "score": 0.93, "top_k": [{"label": ..., "score": ...}, ...]}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from tunewise.core import rundir
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import sha256_file
from tunewise.serving.abstention import detector, with_abstentions


def session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session; `threads` caps intra-op threads (None: the runtime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_outputs(
    sess: Any, tokenizer: Any, texts: list[str], max_length: int, features: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (float64) for `texts`, padded to the longest in the batch, and with `features`
    the head's input vectors (the export's `features` output; `tunewise export` writes it)."""
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    feed = {
        "input_ids": batch["input_ids"].astype(np.int64),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }
    out = sess.run(["logits", "features"] if features else ["logits"], feed)
    return out[0].astype(np.float64), (out[1].astype(np.float64) if features else None)


def onnx_probabilities(sess: Any, tokenizer: Any, texts: list[str], max_length: int) -> np.ndarray:
    """Softmax probabilities (float64) for `texts`, padded to the longest in the batch."""
    return softmax(onnx_outputs(sess, tokenizer, texts, max_length)[0], axis=1)


class OnnxPredictor:
    """Labels, scores and top-k for texts, from the ONNX export of a run.

    `variant` picks "model.onnx" (fp32) or "model.int8.onnx"; None takes the one export.json
    names (int8 when the export was quantised). A model retrained or promoted after the export
    no longer matches its recorded weight hash, and loading refuses with the fix. The run's
    out-of-scope detector applies as with PyTorch (serving/abstention.py); `oos_threshold`
    overrides its threshold.
    """

    def __init__(
        self,
        run_dir: str | Path,
        variant: str | None = None,
        threads: int | None = None,
        oos_threshold: float | None = None,
    ):
        from transformers import AutoTokenizer

        self.run_dir = Path(run_dir)
        folder = self.run_dir / "onnx"
        record = _read_record(folder)
        _check_fresh(self.run_dir, record)
        name = variant or record["serve"]
        if name not in record["files"]:
            raise InputError(
                [
                    Problem(
                        str(folder),
                        None,
                        "variant",
                        f"no {name} exported",
                        f"choose one of {sorted(record['files'])}",
                    )
                ]
            )
        self.variant = name
        self.labels: list[str] = list(record["labels"])
        self.max_length = int(record["max_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.session = session(folder / name, threads)
        self.detector = detector(self.run_dir, oos_threshold)
        if self.detector and self.detector.needs_features and not _has_features(self.session):
            raise InputError(
                [
                    Problem(
                        str(folder / name),
                        None,
                        "features",
                        f"the export has no head-input output, which the run's "
                        f"{self.detector.method} out-of-scope score reads (an export made before "
                        "tunewise exported it)",
                        f"run: tunewise export {self.run_dir} --format onnx again",
                    )
                ]
            )

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(rows, labels) probabilities in input order."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        return onnx_probabilities(self.session, self.tokenizer, texts, self.max_length)

    def predict(self, texts: list[str], top_k: int = 5) -> list[dict]:
        """One dict per text: the label, its probability, and the `top_k` most likely labels;
        with a detector, its out-of-scope score and whether it abstained."""
        if not texts:
            return []
        det = self.detector
        needs = bool(det and det.needs_features)
        logits, feats = onnx_outputs(self.session, self.tokenizer, texts, self.max_length, needs)
        k = max(1, min(top_k, len(self.labels)))
        out = []
        for row in softmax(logits, axis=1):
            best = np.argsort(-row, kind="stable")[:k]
            ranked = [{"label": self.labels[i], "score": float(row[i])} for i in best]
            out.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "top_k": ranked})
        return with_abstentions(out, det, logits, feats)


def _has_features(sess: Any) -> bool:
    return "features" in {o.name for o in sess.get_outputs()}


def _read_record(folder: Path) -> dict:
    path = folder / "export.json"
    if not path.is_file():
        raise InputError(
            [
                Problem(
                    str(folder),
                    None,
                    "onnx/",
                    "no ONNX export in this run",
                    f"run: tunewise export {folder.parent} --format onnx",
                )
            ]
        )
    return json.loads(path.read_text())


def _check_fresh(run_dir: Path, record: dict) -> None:
    """Refuse an export of older weights: serving it would silently serve the old model."""

    weights = run_dir / rundir.MODEL / "model.safetensors"
    if weights.is_file() and sha256_file(weights) != record["source_weights_sha256"]:
        raise InputError(
            [
                Problem(
                    str(run_dir / "onnx" / "export.json"),
                    None,
                    "source_weights_sha256",
                    "the export is of older weights than model/ holds now",
                    f"run: tunewise export {run_dir} --format onnx again",
                )
            ]
        )
