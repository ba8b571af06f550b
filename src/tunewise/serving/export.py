"""`tunewise export RUN_DIR --format onnx [--quantize int8]`: the run's model for ONNX Runtime.

Why export: ONNX Runtime runs the same graph with less Python per request than PyTorch, and int8
dynamic quantisation shrinks the weights about 4x. The export is checked before it is trusted:
fp32 probabilities must match the PyTorch model within 1e-4 on sample texts, and the int8 model's
top-1 agreement and largest probability difference are measured and written down.

    tunewise export runs/banking77 --format onnx --quantize int8
    # runs/banking77/onnx/{model.onnx, model.int8.onnx, tokenizer files, export.json}
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from tunewise.config import load_config
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.errors import BlockingFinding, InputError, Problem
from tunewise.core.files import sha256_file
from tunewise.data.load import read_examples
from tunewise.evaluation.oos import Detector
from tunewise.models.features import head_inputs
from tunewise.models.load import load_trained_classifier
from tunewise.serving.abstention import detector
from tunewise.serving.onnx_backend import onnx_outputs, session

FP32_TOLERANCE = 1e-4  # largest |p_onnx - p_torch| accepted for the fp32 export
INT8_MIN_AGREEMENT = 0.9  # top-1 agreement with PyTorch below this blocks the int8 export
SAMPLE_ROWS = 256
FALLBACK_TEXTS = [
    "I still have not received my new card, what should I do?",
    "How do I top up my account with a bank transfer?",
    "Why was I charged a fee for withdrawing cash?",
    "My transfer is pending",
    "Can I change my PIN at an ATM or only in the app, and how long does it take to work?",
    "hi",
]


def export(
    run_dir: str | Path, fmt: str = "onnx", quantize: str | None = None, opset: int = 17
) -> Path:
    """Export RUN_DIR/model to RUN_DIR/onnx/, verify it against PyTorch, write export.json."""
    run_dir = Path(run_dir)
    _check_request(run_dir, fmt, quantize)
    from transformers import AutoTokenizer

    model_dir = run_dir / rundir.MODEL
    model = load_trained_classifier(model_dir)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_length = _max_length(run_dir)
    out = run_dir / "onnx"
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    _to_onnx(model, tokenizer, out / "model.onnx", opset)
    tokenizer.save_pretrained(out)
    texts = sample_texts(run_dir)
    reference = _torch_outputs(model, tokenizer, texts, max_length)
    det = detector(run_dir)
    record: dict[str, Any] = {
        "format": "onnx",
        "opset": opset,
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "max_length": max_length,
        "source_weights_sha256": sha256_file(model_dir / "model.safetensors"),
        "files": {"model.onnx": sha256_file(out / "model.onnx")},
        "checks": {
            "model.onnx": _check(out / "model.onnx", tokenizer, texts, max_length, reference, det)
        },
        "serve": "model.onnx",
    }
    if quantize == "int8":
        _quantize(out / "model.onnx", out / "model.int8.onnx")
        record["files"]["model.int8.onnx"] = sha256_file(out / "model.int8.onnx")
        record["checks"]["model.int8.onnx"] = _check(
            out / "model.int8.onnx", tokenizer, texts, max_length, reference, det
        )
        record["serve"] = "model.int8.onnx"
    record["seconds"] = round(time.perf_counter() - started, 2)
    (out / "export.json").write_text(json.dumps(record, indent=1))
    _report(record, out)
    return out


def _check_request(run_dir: Path, fmt: str, quantize: str | None) -> None:
    """Every usage problem before any model loads (exit 2)."""
    problems = []
    if fmt != "onnx":
        problems.append(
            Problem(
                "command line", None, "--format", f"unknown format '{fmt}'", "use --format onnx"
            )
        )
    if quantize not in (None, "int8"):
        problems.append(
            Problem(
                "command line",
                None,
                "--quantize",
                f"unknown '{quantize}'",
                "use --quantize int8 or leave it out",
            )
        )
    if not (run_dir / rundir.MODEL / "model.safetensors").is_file():
        problems.append(
            Problem(
                str(run_dir),
                None,
                "model/",
                "no model/model.safetensors here",
                "give a finished run directory (tunewise run or train)",
            )
        )
    elif _task(run_dir) != "classification":
        problems.append(
            Problem(
                str(run_dir / rundir.CONFIG),
                None,
                "task",
                "only classification models export to ONNX so far",
                "serve causal LMs with PyTorch (tunewise serve)",
            )
        )
    if problems:
        raise InputError(problems)


def _task(run_dir: Path) -> str:
    cfg = _config(run_dir)
    return cfg.task if cfg is not None else "classification"


def _config(run_dir: Path):

    path = run_dir / rundir.CONFIG
    return load_config(path) if path.is_file() else None


def _max_length(run_dir: Path) -> int:
    cfg = _config(run_dir)
    return cfg.model.max_length if cfg is not None else 64


class _LogitsAndFeatures(torch.nn.Module):
    """The classifier's logits and its head's input vector, what feature-space out-of-scope
    scores read: one graph serves both, as one forward pass does in PyTorch."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        with head_inputs(self.model) as captured:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits, captured.pop()


def _to_onnx(model: Any, tokenizer: Any, path: Path, opset: int) -> None:
    """Trace with a padded batch of two lengths; batch and sequence axes stay dynamic."""
    batch = tokenizer(
        ["a short one", "a longer example sentence with more words"],
        padding=True,
        return_tensors="pt",
    )
    dynamic = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes; the export is checked below
        torch.onnx.export(
            _LogitsAndFeatures(model).eval(),  # export restores this mode on the model
            (batch["input_ids"], batch["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "features"],
            dynamic_axes={**dynamic, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def _quantize(src: Path, dst: Path) -> None:
    """int8 weights for MatMul/Gemm, activations quantised on the fly (no calibration data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def sample_texts(run_dir: Path) -> list[str]:
    """SAMPLE_ROWS test rows of the run spread evenly over its test file (the texts the model is
    meant for; a file sorted by label gives every part of it), then fixed sentences."""

    cfg = _config(run_dir)
    if cfg is not None and cfg.data.test:
        try:
            ex, _ = read_examples(
                cfg.data.test, cfg.data.text_col, cfg.data.label_col, require_labels=False
            )
            if len(ex):
                return ex.texts[:: max(1, len(ex) // SAMPLE_ROWS)][:SAMPLE_ROWS] + FALLBACK_TEXTS
        except InputError:
            pass
    return FALLBACK_TEXTS


def _torch_outputs(model: Any, tokenizer: Any, texts: list[str], max_length: int):
    """PyTorch's (logits, head inputs) for `texts`, float64, padded as the ONNX check pads."""
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        logits, features = _LogitsAndFeatures(model)(batch["input_ids"], batch["attention_mask"])
    return logits.double().numpy(), features.double().numpy()


def _check(
    path: Path,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    reference: tuple[np.ndarray, np.ndarray],
    det: Detector | None = None,
) -> dict:
    """Compare with PyTorch; an fp32 export off by more than FP32_TOLERANCE is refused (exit 1).
    With the run's out-of-scope detector `det`, how often both abstain alike is recorded too."""
    logits, features = onnx_outputs(session(path), tokenizer, texts, max_length, features=True)
    probs, expected = softmax(logits, axis=1), softmax(reference[0], axis=1)
    check: dict[str, Any] = {
        "rows": len(texts),
        "max_abs_prob_diff": float(np.abs(probs - expected).max()),
        "top1_agreement": float(np.mean(probs.argmax(1) == expected.argmax(1))),
    }
    if det is not None:
        ours, theirs = det.score(logits, features), det.score(*reference)
        check["oos_max_abs_score_diff"] = float(np.abs(ours - theirs).max())
        check["abstention_agreement"] = float(
            np.mean((ours > det.threshold) == (theirs > det.threshold))
        )
    fp32 = path.name == "model.onnx"
    if fp32 and check["max_abs_prob_diff"] > FP32_TOLERANCE:
        raise BlockingFinding(
            f"{path}: ONNX differs from PyTorch by "
            f"{check['max_abs_prob_diff']:.2e} > {FP32_TOLERANCE}"
        )
    if not fp32 and check["top1_agreement"] < INT8_MIN_AGREEMENT:
        raise BlockingFinding(
            f"{path}: int8 agrees with PyTorch on only "
            f"{check['top1_agreement']:.0%} of rows (< {INT8_MIN_AGREEMENT:.0%})"
        )
    return check


def _report(record: dict, out: Path) -> None:
    for name, check in record["checks"].items():
        size = (out / name).stat().st_size / 1e6
        console.log(
            f"{name}: {size:.1f} MB, top-1 agreement with PyTorch "
            f"{check['top1_agreement']:.3f}, largest probability difference "
            f"{check['max_abs_prob_diff']:.1e} on {check['rows']} rows"
            + (
                f", abstains alike on {check['abstention_agreement']:.1%}"
                if "abstention_agreement" in check
                else ""
            )
        )
    console.log(f"export written: {out / 'export.json'} (serve uses {record['serve']})")
