"""Score one causal LM on a run's held-out data: replies, perplexity, forgetting, canaries.

The same function scores the untuned model (baseline.json, before training) and the tuned one
(after), on the same prompts, so every number has a paired before/after:

    scores = score_model(cfg, tokenizer, model, test, canaries, bf16=False)
    scores["generations"], scores["perplexity"], scores["forgetting"], scores["canaries"]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.core.errors import InputError, Problem
from tunewise.data.sources import data_dir
from tunewise.tasks.causal_lm.canary import Canary, measure
from tunewise.tasks.causal_lm.data import Conversation, read_conversations
from tunewise.tasks.causal_lm.infer import generate, perplexity
from tunewise.tasks.causal_lm.template import encode_conversations, prompt_ids

GENERAL = {
    "alpaca_libre": "alpaca_libre/alpaca_libre_tasks_v1.jsonl",
    "self_instruct": "self_instruct/user_oriented_instructions.jsonl",
}


def eval_prompts(
    tokenizer, convs: list[Conversation], turn: str, limit: int, seed: int
) -> list[dict[str, Any]]:
    """One (history, reference) per conversation: the chosen assistant turn and what came before.

    Oldest turns are dropped until the prompt fits `limit` tokens, so a long dialogue is still
    answered from its most recent context.
    """
    rng = np.random.default_rng(seed)
    out = []
    for conv in convs:
        turns = conv.assistant_turns()
        pick = {"first": turns[0], "last": turns[-1]}.get(turn) or int(rng.choice(turns))
        history = conv.messages[:pick]
        ids = prompt_ids(tokenizer, history)
        while len(ids) > limit and len(history) > 1:
            history = history[1:] if history[0]["role"] != "system" else history[:1] + history[2:]
            ids = prompt_ids(tokenizer, history)
        if len(ids) <= limit and any(m["role"] == "user" for m in history):
            prompt = history[-1]["content"]
            out.append(
                {
                    "ids": ids,
                    "prompt": prompt,
                    "reference": conv.messages[pick]["content"],
                    "line": conv.line,
                    "turn": pick,
                }
            )
    return out


def general_sets(names: list[str], rows: int, seed: int) -> dict[str, list[Conversation]]:
    """General instruction data for the forgetting probe; bad lines skipped (Alpaca-Libre v2)."""
    out = {}
    for name in names:
        path = data_dir() / GENERAL[name] if name in GENERAL else Path(name)
        if not path.is_file():
            fix = f"give a JSONL path or one of {sorted(GENERAL)} under TUNEWISE_DATA_DIR"
            raise InputError([Problem("config", None, "sft.forgetting", f"{path} not found", fix)])
        convs = read_conversations(path, strict=False, field_name="sft.forgetting").items
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(convs), min(rows, len(convs)), replace=False).tolist())
        out[Path(name).stem if name not in GENERAL else name] = [convs[i] for i in idx]
    return out


def score_model(
    cfg,
    tokenizer,
    model,
    test: list[Conversation],
    canaries: list[Canary],
    bf16: bool = False,
) -> dict[str, Any]:
    """Replies to the test prompts, assistant-token perplexity, forgetting and canary tables."""
    s, limit = cfg.sft, cfg.model.max_length - cfg.sft.max_new_tokens
    prompts = eval_prompts(tokenizer, test[: s.eval_rows], s.eval_turn, limit, cfg.seed)
    replies = generate(
        model, tokenizer, [p["ids"] for p in prompts], s.max_new_tokens, cfg.eval.batch_size, bf16
    )
    rows, _ = encode_conversations(tokenizer, test, cfg.model.max_length, "truncate", "data.test")
    general = general_sets(s.forgetting, s.forgetting_rows, cfg.seed)
    forgetting = {}
    for name, convs in general.items():
        encoded, _ = encode_conversations(tokenizer, convs, cfg.model.max_length, "truncate", name)
        forgetting[name] = perplexity(model, encoded, bf16=bf16)
    return {
        "prompts": [{k: p[k] for k in ("prompt", "reference", "line", "turn")} for p in prompts],
        "replies": replies,
        "perplexity": perplexity(model, rows, bf16=bf16),
        "test_label_tokens": rows.label_tokens(),
        "forgetting": forgetting,
        "canaries": measure(model, tokenizer, canaries, s.canary_candidates, cfg.seed)
        if canaries
        else [],
    }


def forgetting_table(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Perplexity on general instruction data before vs after; ratio > 1 means worse."""
    tasks = []
    for name in before:
        b, a = before[name], after.get(name, math.nan)
        tasks.append(
            {
                "name": name,
                "perplexity_before": b,
                "perplexity_after": a,
                "delta": a - b,
                "ratio": a / b if b else math.nan,
            }
        )
    return {"metric": "perplexity (assistant tokens)", "tasks": tasks}


def canary_table(before: list[dict], after: list[dict]) -> list[dict]:
    """One row per canary: exposure and extraction before and after training."""
    rows = []
    for b, a in zip(before, after, strict=True):
        rows.append(
            {
                "repeats": a["repeats"],
                "secret": a["secret"],
                "name": a["name"],
                "exposure_before": b["exposure"],
                "exposure_after": a["exposure"],
                "exposure_sampled_after": a["exposure_sampled"],
                "rank_sampled_after": a["rank_sampled"],
                "candidates": a["candidates"],
                "extracted_before": b["extracted"],
                "extracted_after": a["extracted"],
                "greedy_after": a["greedy"],
            }
        )
    return rows
