"""`tunewise run|train|evaluate` for task causal_lm: supervised fine-tuning of a chat model.

    tunewise run configs/cucom_sft.yaml

data (checked, line-numbered) → PII audit → baseline (the untuned model answers the held-out
prompts; perplexity, forgetting probe, canary exposure) → LoRA or full fine-tuning on assistant
tokens only (packed rows) → the same scores for the tuned model → doctor → report. When
`data.test` is null, `sft.test_rows` conversations are held out of train and both parts are
written to the run directory, and the resolved config points at them, so `tunewise evaluate`
and a re-run see exactly the same split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunewise.config import RunConfig, load_config
from tunewise.data.pii import PIIDetector, pii_counts
from tunewise.errors import InputError, Problem
from tunewise.findings import Finding, write_findings
from tunewise.llm.adapt import quantization_config
from tunewise.llm.canary import make_canaries, plant
from tunewise.llm.data import Conversation, Conversations, read_conversations
from tunewise.llm.infer import token_nll
from tunewise.llm.load import load_causal_lm
from tunewise.llm.packing import collate_packed, collate_padded, pack, padding_fraction
from tunewise.llm.scoring import score_model
from tunewise.llm.template import encode_conversations
from tunewise.training.callbacks import History, ProgressBar
from tunewise.training.loop import fit, resolve_precision


def _read(cfg: RunConfig, path: str, field: str) -> Conversations:
    s = cfg.sft
    return read_conversations(path, s.role_map, s.format, field, messages_key=s.messages_key)


def _sample(items: list, n: int | None, seed: int) -> list:
    if not n or len(items) <= n:
        return list(items)
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False).tolist())]


def load_sft_splits(cfg: RunConfig) -> dict[str, Any]:
    """train / validation / test conversations, every file checked before any model loads."""
    d = cfg.data
    train = _read(cfg, d.train, "data.train")
    test = _read(cfg, d.test, "data.test") if d.test else None
    items, held_out = train.items, None
    if test is None:  # hold out whole conversations, seeded
        order = np.random.default_rng(cfg.seed).permutation(len(items))
        if len(items) <= cfg.sft.test_rows + 2:
            fix = "give data.test, or lower sft.test_rows"
            raise InputError([Problem(d.train, None, "data.test", "too few rows to hold out", fix)])
        cut = set(order[: cfg.sft.test_rows].tolist())
        held_out = [c for i, c in enumerate(items) if i in cut]
        items = [c for i, c in enumerate(items) if i not in cut]
    val = _read(cfg, d.validation, "data.validation").items if d.validation else None
    pool = _sample(items, d.max_rows, cfg.seed)
    if val is None:
        order = np.random.default_rng(cfg.seed + 1).permutation(len(pool))
        n_val = max(1, round(d.val_fraction * len(pool)))
        val = [pool[i] for i in sorted(order[:n_val].tolist())]
        pool = [pool[i] for i in sorted(order[n_val:].tolist())]
    test_items = held_out if held_out is not None else test.items  # type: ignore[union-attr]
    return {
        "train": pool,
        "validation": _sample(val, d.max_rows, cfg.seed),
        "test": test_items,
        "all_train": items,
        "held_out": held_out is not None,
    }


def _write_jsonl(path: Path, convs: list[Conversation]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for c in convs:
            fh.write(json.dumps({"id": c.id, "messages": c.messages}, ensure_ascii=False) + "\n")


def start_sft_run(cfg: RunConfig, splits: dict[str, Any]) -> tuple[RunConfig, Path]:
    """The run directory; a held-out or redacted split is written there and the config names it."""
    from tunewise.pipeline import start_run

    if splits["held_out"] or splits.get("redacted"):
        data = cfg.run_dir() / "data"
        paths: dict[str, Any] = {
            "train": str(data / "train.jsonl"),
            "test": str(data / "test.jsonl"),
        }
        _write_jsonl(data / "train.jsonl", splits["all_train"])
        _write_jsonl(data / "test.jsonl", splits["test"])
        if cfg.data.validation:
            paths["validation"] = str(data / "validation.jsonl")
            _write_jsonl(data / "validation.jsonl", splits["validation"])
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **paths))
    return cfg, start_run(cfg)


def audit_pii(cfg: RunConfig, splits: dict[str, Any]) -> list[Finding]:
    """Find personal data in the chat turns; redact every split in place when prepare.pii: redact.

    Runs before the run directory is written, so the split files there hold redacted text.
    """
    if cfg.prepare.pii == "off":
        return []
    texts = [m["content"] for c in splits["train"] for m in c.messages]
    detector = PIIDetector().fit(texts)
    counts, rows = pii_counts(detector, texts)
    if not counts:
        return []
    redacted = cfg.prepare.pii == "redact"
    if redacted:
        every = {id(c): c for k in ("all_train", "validation", "test") for c in splits[k]}
        for conv in every.values():
            for m in conv.messages:
                m["content"] = detector.redact(m["content"])[0]
        splits["redacted"] = True
    evidence = {"types": dict(counts), "turns": len(rows), "redacted": redacted, "data": "chat",
                "examples": [texts[i][:160] for i in rows[:5]]}  # fmt: skip
    return [
        Finding(
            "pii",
            "info" if redacted else "warning",
            f"{len(rows)} of {len(texts)} training chat turns hold personal data "
            + ("(redacted before training)" if redacted else "(not redacted)"),
            "set prepare.pii: redact so the model cannot learn and repeat it",
            evidence,
        )
    ]


def _start(cfg: RunConfig) -> tuple[RunConfig, Path, dict[str, Any]]:
    """Checked splits, the PII audit (and redaction), then the run directory with audit.json."""
    quantization_config(cfg.sft.quantize)  # a missing GPU or package fails before any work
    splits = load_sft_splits(cfg)
    findings = audit_pii(cfg, splits)
    cfg, run_dir = start_sft_run(cfg, splits)
    write_findings(run_dir / "audit.json", findings)
    return cfg, run_dir, splits


def run_causal_lm(cfg: RunConfig) -> dict:
    """The whole path; returns metrics.json's content."""
    from tunewise.llm.evaluate import evaluate_sft
    from tunewise.pipeline import console, doctor

    cfg, run_dir, splits = _start(cfg)
    tokenizer, model = load_causal_lm(cfg.model.name, cfg.model.trust_remote_code, cfg.sft.quantize)
    canaries = make_canaries(cfg.sft.canaries, cfg.seed)
    bf16 = resolve_precision(cfg.train.precision, next(model.parameters()).device) == "bf16"
    console.log(f"baseline: the untuned model answers {cfg.sft.eval_rows} held-out prompts")
    base = score_model(cfg, tokenizer, model, splits["test"], canaries, bf16)
    (run_dir / "baseline.json").write_text(json.dumps(base, indent=1))
    train_sft(cfg, splits, run_dir, tokenizer, model)
    metrics = evaluate_sft(run_dir, splits["test"])
    doctor(run_dir)
    from tunewise.llm.report import write_sft_report

    console.log(f"report written: {write_sft_report(run_dir)}")
    return metrics


def train_only(cfg: RunConfig) -> Path:
    """`tunewise train` for causal_lm: model/, adapter/ (LoRA), training.json."""
    cfg, run_dir, splits = _start(cfg)
    tokenizer, model = load_causal_lm(cfg.model.name, cfg.model.trust_remote_code, cfg.sft.quantize)
    train_sft(cfg, splits, run_dir, tokenizer, model)
    return run_dir


def _validation(rows, batch_size: int, bf16: bool):
    def evaluate_validation(model) -> dict[str, float]:
        total, count = token_nll(model, rows, batch_size, bf16)
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": float(np.exp(loss))}

    return evaluate_validation


def train_sft(cfg: RunConfig, splits: dict[str, Any], run_dir: Path, tokenizer, model) -> dict:
    """Encode (canaries planted in train only), adapt, fit on assistant tokens, save model/."""
    from tunewise.llm.adapt import adapt_causal_lm
    from tunewise.pipeline import console
    from tunewise.training import recipe

    s, max_len = cfg.sft, cfg.model.max_length
    train_convs = plant(splits["train"], make_canaries(s.canaries, cfg.seed), cfg.seed)
    rows, enc = encode_conversations(tokenizer, train_convs, max_len, s.overlength)
    val, _ = encode_conversations(tokenizer, splits["validation"], max_len, "truncate", "val")
    console.log(
        f"encoded {enc['rows']} of {enc['rows_in']} training rows: {enc['over_length']} over "
        f"{max_len} tokens ({enc['truncated']} truncated, {enc['dropped_over_length']} dropped), "
        f"{enc['dropped_all_truncated']} dropped with no assistant token left"
    )
    data = pack(rows, max_len) if s.packing else rows
    collate = collate_packed if s.packing else collate_padded
    t = cfg.train
    pad = padding_fraction(data.lengths(), t.batch_size, t.grad_accum, cfg.seed, t.group_by_length)
    console.log(f"{len(data)} {'packed ' if s.packing else ''}rows, padding fraction {pad:.3f}")
    torch.manual_seed(cfg.seed)
    model, params = adapt_causal_lm(model, cfg)
    model.config.use_cache = False  # a cache would hide packed boundaries from the mask builder
    stop = t.early_stopping
    if stop is not None and stop.metric != "loss":  # text has no accuracy: stop on val loss
        t = dataclasses.replace(t, early_stopping=dataclasses.replace(stop, metric="loss"))
    bf16 = resolve_precision(t.precision, next(model.parameters()).device) == "bf16"
    total = t.max_steps or t.epochs * -(-len(data) // (t.batch_size * t.grad_accum))
    state = fit(
        model,
        data,  # type: ignore[arg-type]  # fit needs len(), lengths() and collate_fn
        _validation(val, cfg.eval.batch_size // 4 or 1, bf16),
        t,
        seed=cfg.seed,
        out_dir=run_dir,
        collate_fn=collate,
        callbacks=[History(run_dir / "history.jsonl"), ProgressBar(total, console.is_terminal)],
    )
    tokens = int(data.lengths().sum()) * state.samples / max(len(data), 1)
    model.config.use_cache = True
    merged: Any = recipe.save_trained(model, tokenizer, run_dir)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.generation_config.save_pretrained(run_dir / "model")
    summary = {
        "parameters": params,
        "data": {
            **enc,
            "packed_rows": len(data) if s.packing else None,
            "padding_fraction": pad,
            "validation_rows": len(val),
        },
        "training": {
            "steps": state.step,
            "epochs": state.epoch,
            "seconds": round(state.seconds, 2),
            "tokens_per_second": round(tokens / max(state.seconds, 1e-9), 1),
            "best_step": state.best_step,
            "best_metric": state.best_metric,
            "stopped_early": state.stopped_early,
            "precision": state.precision,
        },
        "regularization": recipe.regularization(cfg, merged.config),
    }
    (run_dir / "training.json").write_text(json.dumps(summary, indent=1))
    console.log(
        f"trained {state.step} steps in {state.seconds:.0f} s "
        f"({summary['training']['tokens_per_second']:.0f} tokens/s, {state.precision})"
    )
    return summary


def config_of(run_dir: Path) -> RunConfig:
    return load_config(run_dir / "config.yaml")
