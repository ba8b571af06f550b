"""`tunewise evaluate RUN_DIR` for causal_lm: the tuned model against the untuned one.

Reads model/ as plain transformers would, answers the same held-out prompts the baseline
answered (baseline.json), and writes metrics.json: ROUGE-L, BLEU, chrF, exact match (short
references), assistant-token perplexity, their deltas with paired bootstrap CIs and a paired
randomization p-value, forgetting (general-instruction perplexity before vs after), the canary
exposure table and side-by-side generations:

    tunewise evaluate runs/cucom-sft
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunewise.config import load_config
from tunewise.core import rundir
from tunewise.core.device import bf16_supported
from tunewise.core.errors import InputError, Problem
from tunewise.evaluation.summary import print_scores
from tunewise.models.load import load_trained_causal_lm
from tunewise.tasks.causal_lm.canary import make_canaries
from tunewise.tasks.causal_lm.data import Conversation, read_conversations
from tunewise.tasks.causal_lm.metrics import compare_generations, text_scores
from tunewise.tasks.causal_lm.scoring import canary_table, forgetting_table, score_model


def evaluate_sft(
    run_dir: str | Path,
    test: list[Conversation] | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> dict:
    """Score model/ on the test conversations (or `data`) and compare with baseline.json."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    path = str(data) if data is not None else cfg.data.test
    if test is None or data is not None:
        if path is None:
            fix = "pass --data FILE"
            raise InputError(
                [Problem(str(run_dir / rundir.CONFIG), None, "data.test", "none", fix)]
            )
        s = cfg.sft
        test = read_conversations(
            path, s.role_map, s.format, "data.test", messages_key=s.messages_key
        ).items
    tokenizer, model = load_trained_causal_lm(run_dir / rundir.MODEL, cfg.model.trust_remote_code)
    bf16 = bf16_supported(next(model.parameters()).device) and cfg.train.precision != "fp32"
    canaries = make_canaries(cfg.sft.canaries, cfg.seed) if data is None else []
    tuned = score_model(cfg, tokenizer, model, test, canaries, bf16)
    saved = run_dir / rundir.BASELINE
    base = json.loads(saved.read_text()) if saved.exists() and data is None else None
    doc = _document(cfg, str(path), tuned, base)
    training = run_dir / rundir.TRAINING
    if training.exists():
        doc.update(json.loads(training.read_text()))
    out = run_dir / (rundir.METRICS if data is None else f"metrics-{Path(str(path)).stem}.json")
    out.write_text(json.dumps(doc, indent=1))
    write_card(run_dir, cfg, doc)
    print_summary(doc, run_dir)
    return doc


def _document(cfg, path: str, tuned: dict, base: dict | None) -> dict[str, Any]:
    refs = [p["reference"] for p in tuned["prompts"]]
    doc: dict[str, Any] = {
        "task": "causal_lm",
        "name": cfg.name,
        "test_size": len(refs),
        "test_source": path,
        "primary_metric": "rougeL",
        "tuned": {**text_scores(tuned["replies"], refs), "perplexity": tuned["perplexity"]},
    }
    same = base is not None and [p["reference"] for p in base["prompts"]] == refs
    if not same:
        return doc
    assert base is not None
    cmp = compare_generations(refs, base["replies"], tuned["replies"], cfg.eval.bootstrap, cfg.seed)
    doc["baseline_name"] = "untuned"
    doc["baseline"] = {**cmp["baseline"], "perplexity": base["perplexity"]}
    doc["baselines"] = {"untuned": doc["baseline"]}
    doc["delta"] = {**cmp["delta"], "perplexity": tuned["perplexity"] - base["perplexity"]}
    doc["ci95"], doc["significance"] = cmp["ci95"], cmp["significance"]
    doc["forgetting"] = forgetting_table(base["forgetting"], tuned["forgetting"])
    if base.get("canaries") and tuned.get("canaries"):
        doc["canaries"] = canary_table(base["canaries"], tuned["canaries"])
    n = cfg.sft.generations_shown
    doc["generations"] = [
        {**p, "baseline": b, "tuned": t}
        for p, b, t in zip(
            tuned["prompts"][:n], base["replies"][:n], tuned["replies"][:n], strict=True
        )
    ]
    return doc


def write_card(run_dir: Path, cfg, doc: dict) -> None:
    """model/README.md: what was tuned, how to call it without tunewise, the headline numbers."""
    t = doc["tuned"]
    lines = [
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\n"
        "tags: [tunewise, sft]\n---",
        f"# {cfg.name}\n",
        f"Supervised fine-tuning of `{cfg.model.name}` with tunewise (adapt.method = "
        f"`{cfg.adapt.method}`, loss on assistant tokens only) on `{cfg.data.train}`.\n",
        "```python\nfrom transformers import pipeline",
        f'chat = pipeline("text-generation", model="{run_dir / rundir.MODEL}")',
        'chat([{"role": "user", "content": "Where is my order?"}], max_new_tokens=64)\n```\n',
        f"Held-out replies ({doc['test_size']} prompts): ROUGE-L {t['rougeL']:.4f}, BLEU "
        f"{t['bleu']:.2f}, chrF {t['chrf']:.2f}, assistant-token perplexity {t['perplexity']:.2f}.",
    ]
    if "delta" in doc:
        lo, hi = doc["ci95"]["rougeL"]
        lines.append(
            f"ROUGE-L vs the untuned model: {doc['delta']['rougeL']:+.4f} (95% CI {lo:+.4f} … "
            f"{hi:+.4f}, p = {doc['significance']['p_value']:.2g})."
        )
    (run_dir / rundir.MODEL / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def print_summary(doc: dict, run_dir: Path) -> None:
    """The table `tunewise run` ends with for causal_lm."""

    keys = ("rougeL", "bleu", "chrf", "perplexity")
    out = print_scores(f"{doc['name']}: {doc['test_size']} held-out prompts", doc, keys)
    if "delta" in doc:
        lo, hi = doc["ci95"]["rougeL"]
        out.print(
            f"tuned − untuned: ROUGE-L {doc['delta']['rougeL']:+.4f} (95% CI {lo:+.4f} … "
            f"{hi:+.4f}), paired randomization p = {doc['significance']['p_value']:.2g}"
        )
    for task in (doc.get("forgetting") or {}).get("tasks", []):
        out.print(
            f"forgetting {task['name']}: perplexity {task['perplexity_before']:.2f} → "
            f"{task['perplexity_after']:.2f}"
        )
    for c in doc.get("canaries", []):
        out.print(
            f"canary ×{c['repeats']}: exposure {c['exposure_before']:.1f} → "
            f"{c['exposure_after']:.1f} bits, extracted {c['extracted_after']}"
        )
    out.print(f"report: {(run_dir / 'report.html').resolve()}")
