"""Load a run's model for serving: classifiers predict labels, causal LMs generate text.

    predictor = load_predictor(Path("runs/banking77"))
    predictor.predict(["my card is lost"], top_k=3)
    # [{"label": "lost_or_stolen_card", "score": 0.97,
    #   "top_k": [{"label": "lost_or_stolen_card", "score": 0.97}, ...]}]

`backend="onnx"` hands over to `tunewise.serving.onnx_backend.OnnxPredictor` (same interface).

With an out-of-scope detector (RUN_DIR/oos.json, written by `evaluate`; `oos_threshold`
overrides its threshold) a text scoring above the threshold is answered "I don't know":
`{"label": None, "abstained": True, "score": ..., "oos_score": 0.41, "oos_threshold": 0.3,
"top_k": [...]}`; every prediction then carries `abstained`, `oos_score` and `oos_threshold`.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import yaml

from tunewise.core import rundir
from tunewise.core.device import autocast, bf16_supported
from tunewise.core.errors import InputError, Problem
from tunewise.data.encode import collate, encode, eval_batches
from tunewise.models.features import head_inputs, head_layer
from tunewise.models.load import load_trained_causal_lm, load_trained_classifier
from tunewise.serving.abstention import detector, with_abstentions
from tunewise.serving.onnx_backend import OnnxPredictor

TASKS = ("classification", "causal_lm")


def run_task(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """The run's task and its resolved config, checked before any model loads."""
    run_dir = Path(run_dir)
    config = run_dir / rundir.CONFIG
    if not (run_dir / rundir.MODEL).is_dir() or not config.is_file():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    None,
                    "RUN_DIR",
                    "not a finished run (needs config.yaml and model/)",
                    "train first: tunewise train CONFIG, then serve runs/<name>",
                )
            ]
        )
    cfg = yaml.safe_load(config.read_text()) or {}
    task = cfg.get("task", "classification")
    if task not in TASKS:
        raise InputError([Problem(str(config), None, "task", f"unknown task {task!r}", str(TASKS))])
    return task, cfg


def _max_length(cfg: dict[str, Any], default: int = 128) -> int:
    return int((cfg.get("model") or {}).get("max_length") or default)


def _trust(cfg: dict[str, Any]) -> bool:
    return bool((cfg.get("model") or {}).get("trust_remote_code", False))


class TorchClassifier:
    """A sequence classifier in eval mode, in the precision `evaluate` scored the run in (bf16
    autocast where the hardware has it, unless the run's train.precision is fp32). Each call
    sorts its texts by length and runs them `SUB_BATCH` at a time, each padded to its longest.
    """

    SUB_BATCH = 16  # a micro-batch of 32 in two sorted halves: 1.2x the texts/s of one pass

    def __init__(self, run_dir: Path, cfg: dict[str, Any], oos_threshold: float | None = None):
        from transformers import AutoTokenizer

        folder = Path(run_dir) / rundir.MODEL
        trust = _trust(cfg)
        self.detector = detector(Path(run_dir), oos_threshold)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
        self.model = load_trained_classifier(folder, trust).eval()
        self.head = head_layer(self.model)  # found once: it walks every module
        n = self.model.config.num_labels
        self.labels: list[str] = [str(self.model.config.id2label[i]) for i in range(n)]
        self.max_length = _max_length(cfg)
        self.task = "classification"
        precision = (cfg.get("train") or {}).get("precision", "auto")
        self.bf16 = precision != "fp32" and bf16_supported(self.model.device)

    def predict(self, texts: list[str], top_k: int = 5) -> list[dict]:
        import torch

        if not texts:
            return []
        data = encode(self.tokenizer, texts, None, self.max_length)
        logits = torch.empty(len(texts), len(self.labels))
        det = self.detector
        features: torch.Tensor | None = None
        needs = det is not None and det.needs_features
        hook = head_inputs(self.model, self.head) if needs else contextlib.nullcontext()
        with torch.inference_mode(), autocast(self.model, self.bf16), hook as captured:
            for rows in eval_batches(data.lengths(), self.SUB_BATCH):
                batch = collate(data, rows)
                out = self.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                )
                logits[rows] = out.logits.float()
                if captured is not None:
                    vectors = captured.pop()
                    if features is None:
                        features = torch.empty(len(texts), vectors.shape[-1])
                    features[rows] = vectors
        probs = torch.softmax(logits, dim=-1)
        k = max(1, min(top_k, len(self.labels)))
        scores, ids = probs.topk(k, dim=-1)
        pairs = zip(scores.tolist(), ids.tolist(), strict=True)
        preds = [_prediction(self.labels, s, i) for s, i in pairs]
        feats = features.double().numpy() if features is not None else None
        return with_abstentions(preds, det, logits.double().numpy(), feats)


def _prediction(labels: list[str], scores: list[float], ids: list[int]) -> dict:
    top = [{"label": labels[i], "score": float(s)} for s, i in zip(scores, ids, strict=True)]
    return {"label": top[0]["label"], "score": top[0]["score"], "top_k": top}


class TorchGenerator:
    """A causal LM (the `causal_lm` task): greedy generation, prompts left-padded in one batch.

    When the tokenizer has a chat template (as SFT runs train with), each prompt is sent as one
    user turn followed by the assistant's generation prompt, the way training rendered it.
    """

    def __init__(self, run_dir: Path, cfg: dict[str, Any]):
        folder = Path(run_dir) / rundir.MODEL
        self.tokenizer, self.model = load_trained_causal_lm(folder, _trust(cfg))
        self.tokenizer.padding_side = "left"
        self.labels: list[str] = []
        self.max_length = _max_length(cfg, 512)
        self.task = "causal_lm"
        self._lock = threading.Lock()

    def generate(self, prompts: list[str], max_new_tokens: int = 64) -> list[dict]:
        """[{"text": continuation, "tokens": n}] per prompt, the prompt itself left out."""
        import torch

        if not prompts:
            return []
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        batch = self.tokenizer(
            [self.render(p) for p in prompts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            add_special_tokens=not templated,  # the template writes its own BOS
        )
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        decode = self.tokenizer.decode
        return [
            {"text": decode(r, skip_special_tokens=True), "tokens": _count(r, self)} for r in new
        ]

    def render(self, prompt: str) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return prompt
        out = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return out if isinstance(out, str) else str(out)

    def predict(self, texts: list[str], top_k: int = 5) -> list[dict]:
        raise InputError(
            [Problem("request", None, "task", "this run is a causal LM", "POST /generate instead")]
        )


def _count(row, gen: TorchGenerator) -> int:
    pad = gen.tokenizer.pad_token_id
    return int((row != pad).sum()) if pad is not None else len(row)


def load_predictor(
    run_dir: Path,
    backend: str = "torch",
    threads: int | None = None,
    oos_threshold: float | None = None,
) -> Any:
    """The serving model of a run: `predict(texts, top_k)` and `labels` for classifiers,
    `generate(prompts, max_new_tokens)` for causal LMs. Checks the run before loading weights.

    `threads` caps intra-op threads (torch and ONNX Runtime); on a busy machine one thread per
    server often beats two that wait on each other. `oos_threshold` overrides the threshold of
    the run's out-of-scope detector (see the module docstring)."""
    import torch

    task, cfg = run_task(Path(run_dir))
    if backend not in ("torch", "onnx"):
        raise InputError([Problem("serve", None, "--backend", f"got {backend!r}", "torch|onnx")])
    if threads:
        torch.set_num_threads(threads)
    if task == "causal_lm":
        if backend == "onnx":
            raise InputError(
                [Problem("serve", None, "--backend", "onnx serves classifiers only", "use torch")]
            )
        return TorchGenerator(Path(run_dir), cfg)
    if backend == "onnx":
        return OnnxPredictor(Path(run_dir), threads=threads, oos_threshold=oos_threshold)
    return TorchClassifier(Path(run_dir), cfg, oos_threshold)
