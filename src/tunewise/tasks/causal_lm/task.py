"""Task `causal_lm`: supervised fine-tuning of a chat model (LoRA by default).

    tunewise run configs/cucom_sft.yaml

The pipeline's stages for conversations: data (checked, line-numbered) → PII audit → redaction
and the held-out split → baseline (the untuned model answers the held-out prompts; perplexity,
forgetting probe, canary exposure) → fine-tuning on assistant tokens only (packed rows) → the same
scores for the tuned model. When `data.test` is null, `sft.test_rows` conversations are held out
of train and both parts are written to the run directory, and the resolved config points at
them, so `tunewise evaluate` and a re-run see exactly the same split.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunewise.config import RunConfig
from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.device import uses_bf16
from tunewise.core.errors import InputError, Problem
from tunewise.core.files import write_jsonl
from tunewise.core.findings import Finding, write_findings
from tunewise.data.columns import refuse_columns
from tunewise.data.pii import PIIDetector, pii_counts
from tunewise.data.split import sample_rows
from tunewise.models.integrity import write_manifest
from tunewise.report.sft_html import write_sft_report
from tunewise.tasks.causal_lm.adapt import adapt_causal_lm, quantization_config
from tunewise.tasks.causal_lm.canary import make_canaries, plant
from tunewise.tasks.causal_lm.data import Conversation, Conversations, read_conversations
from tunewise.tasks.causal_lm.evaluate import evaluate_sft
from tunewise.tasks.causal_lm.infer import token_nll
from tunewise.tasks.causal_lm.load import load_causal_lm
from tunewise.tasks.causal_lm.packing import collate_packed, collate_padded, pack, padding_fraction
from tunewise.tasks.causal_lm.scoring import score_model
from tunewise.tasks.causal_lm.template import encode_conversations
from tunewise.training import recipe
from tunewise.training.callbacks import History, ProgressBar
from tunewise.training.loop import fit

NAME = "causal_lm"
RESUMABLE = False  # `train --resume` is exact for classification only so far


def _read(cfg: RunConfig, path: str, field: str) -> Conversations:
    s = cfg.sft
    return read_conversations(path, s.role_map, s.format, field, messages_key=s.messages_key)


def _sample(items: list, n: int | None, seed: int) -> list:
    return [items[i] for i in sample_rows(len(items), n, seed)]


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


def _write_conversations(path: Path, convs: list[Conversation]) -> None:
    write_jsonl(path, ({"id": c.id, "messages": c.messages} for c in convs))


def load_data(cfg: RunConfig) -> dict[str, Any]:
    """Checked conversations; a missing GPU or package for sft.quantize fails here too."""
    quantization_config(cfg.sft.quantize)
    return load_sft_splits(cfg)


def audit(cfg: RunConfig, splits: dict[str, Any], run_dir: Path) -> list[Finding]:
    """Personal data in the training chat turns (prepare.pii: redact removes it): audit.json."""
    findings = _pii_findings(cfg, splits)
    write_findings(run_dir / rundir.AUDIT, findings)
    return findings


def _pii_findings(cfg: RunConfig, splits: dict[str, Any]) -> list[Finding]:
    if cfg.prepare.pii == "off":
        return []
    texts = [m["content"] for c in splits["train"] for m in c.messages]
    counts, rows = pii_counts(PIIDetector().fit(texts), texts)
    if not counts:
        return []
    redacted = cfg.prepare.pii == "redact"
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


def prepare(cfg: RunConfig, splits: dict[str, Any], run_dir: Path | None) -> tuple[RunConfig, dict]:
    """Redact (prepare.pii: redact); a held-out or redacted split is written to the run directory
    and the resolved config names it, so `evaluate` and a re-run see exactly this split.
    `run_dir` None (a second DDP process) writes nothing."""
    redacted = cfg.prepare.pii == "redact" and _redact(splits)
    if not (splits["held_out"] or redacted):
        return cfg, splits
    names = ["train", "test", *(["validation"] if cfg.data.validation else [])]
    parts = {"train": "all_train", "test": "test", "validation": "validation"}
    paths = {
        name: str((run_dir or cfg.run_dir()) / rundir.DATA / f"{name}.jsonl") for name in names
    }
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **paths))  # type: ignore[arg-type]
    if run_dir is not None:
        for name in names:
            _write_conversations(Path(paths[name]), splits[parts[name]])
        rundir.dump_config(cfg, run_dir / rundir.CONFIG)
    return cfg, splits


def _redact(splits: dict[str, Any]) -> bool:
    """Replace personal data in every split in place; whether any turn changed."""
    texts = [m["content"] for c in splits["train"] for m in c.messages]
    detector = PIIDetector().fit(texts)
    if not pii_counts(detector, texts)[0]:
        return False
    every = {id(c): c for k in ("all_train", "validation", "test") for c in splits[k]}
    for conv in every.values():
        for m in conv.messages:
            m["content"] = detector.redact(m["content"])[0]
    return True


def baseline(cfg: RunConfig, splits: dict[str, Any], run_dir: Path) -> dict:
    """The untuned model answers the held-out prompts: perplexity, forgetting, canary exposure."""
    tokenizer, model = load_causal_lm(cfg.model.name, cfg.model.trust_remote_code, cfg.sft.quantize)
    canaries = make_canaries(cfg.sft.canaries, cfg.seed)
    bf16 = uses_bf16(cfg.train.precision, model)
    console.log(f"baseline: the untuned model answers {cfg.sft.eval_rows} held-out prompts")
    base = score_model(cfg, tokenizer, model, splits["test"], canaries, bf16)
    (run_dir / rundir.BASELINE).write_text(json.dumps(base, indent=1))
    return base


def train(
    cfg: RunConfig, splits: dict[str, Any], run_dir: Path, resume_from: Path | None = None
) -> dict:
    """LoRA (or full) fine-tuning on assistant tokens: model/, adapter/, training.json."""
    tokenizer, model = load_causal_lm(cfg.model.name, cfg.model.trust_remote_code, cfg.sft.quantize)
    return train_sft(cfg, splits, run_dir, tokenizer, model)


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    forgetting: bool = True,
    columns: tuple[str | None, str | None] = (None, None),
) -> dict:
    """The SFT evaluation (its own forgetting probe, sft.forgetting, always runs: generation
    quality can move with every decoding setting)."""
    refuse_columns(columns, "sft.messages_key, sft.format")
    return evaluate_sft(run_dir, data=data, overrides=overrides)


def write_report(run_dir: str | Path) -> Path:
    return write_sft_report(Path(run_dir))


def _validation(rows, batch_size: int, bf16: bool):
    def evaluate_validation(model) -> dict[str, float]:
        total, count = token_nll(model, rows, batch_size, bf16)
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": float(np.exp(loss))}

    return evaluate_validation


def train_sft(cfg: RunConfig, splits: dict[str, Any], run_dir: Path, tokenizer, model) -> dict:
    """Encode (canaries planted in train only), adapt, fit on assistant tokens, save model/."""
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
    bf16 = uses_bf16(t.precision, model)
    total = t.max_steps or t.epochs * -(-len(data) // (t.batch_size * t.grad_accum))
    state = fit(
        model,
        data,  # type: ignore[arg-type]  # fit needs len(), lengths() and collate_fn
        _validation(val, cfg.eval.batch_size // 4 or 1, bf16),
        t,
        seed=cfg.seed,
        out_dir=run_dir,
        collate_fn=collate,
        callbacks=[History(run_dir / rundir.HISTORY), ProgressBar(total, console.is_terminal)],
    )
    tokens = int(data.lengths().sum()) * state.samples / max(len(data), 1)
    model.config.use_cache = True
    merged: Any = recipe.save_trained(model, tokenizer, run_dir)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.generation_config.save_pretrained(run_dir / rundir.MODEL)
    write_manifest(run_dir / rundir.MODEL)  # again: generation_config.json changed
    summary = {
        "parameters": params,
        "data": {
            **enc,
            "packed_rows": len(data) if s.packing else None,
            "padding_fraction": pad,
            "validation_rows": len(val),
        },
        "training": {
            **state.summary(),
            "tokens_per_second": round(tokens / max(state.seconds, 1e-9), 1),
        },
        "regularization": recipe.regularization(cfg, merged.config),
    }
    (run_dir / rundir.TRAINING).write_text(json.dumps(summary, indent=1))
    console.log(
        f"trained {state.step} steps in {state.seconds:.0f} s "
        f"({summary['training']['tokens_per_second']:.0f} tokens/s, {state.precision})"
    )
    return summary
