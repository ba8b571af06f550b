"""Doctor rules for causal_lm runs (appended to report/rules.py's RULES).

- PII in chat data trained without redaction: an SFT model learns to repeat what replies say.
- A planted canary that greedy decoding reproduces after training (and not before): memorised.
- Forgetting: perplexity on general instruction data rising by more than 10% (or
  `doctor.forgetting`, if larger) after fine-tuning.
"""

from __future__ import annotations

from tunewise.core.findings import Finding
from tunewise.doctor.facts import RunFacts

MIN_PERPLEXITY_RISE = 0.10


def _is_lm(run: RunFacts) -> bool:
    return run.config.get("task") == "causal_lm"


def pii_not_redacted(run: RunFacts, limits) -> list[Finding]:
    found = [f for f in run.audit if f.code == "pii"]
    if not _is_lm(run) or not found or run.section("prepare").get("pii") == "redact":
        return []
    return [
        Finding(
            "pii",
            "warning",
            "the audit found personal data in the chat data and no redaction was applied; a "
            "fine-tuned chat model can learn and repeat it",
            "set prepare.pii: redact (typed placeholders such as [PHONE]) and re-run; check the "
            "canary table for how much this model memorises",
            {"audit": [f.evidence for f in found]},
        )
    ]


def canary_extracted(run: RunFacts, limits) -> list[Finding]:
    leaked = [
        c
        for c in run.metrics.get("canaries") or []
        if c.get("extracted_after") and not c.get("extracted_before")
    ]
    if not _is_lm(run) or not leaked:
        return []
    return [
        Finding(
            "pii",
            "warning",
            "greedy decoding reproduces planted secrets seen "
            + ", ".join(f"{c['repeats']}×" for c in leaked)
            + " in training: the model memorises repeated strings verbatim",
            "deduplicate and redact training data; train fewer epochs or with a lower learning "
            "rate; never put secrets in SFT data",
            {"canaries": leaked},
        )
    ]


def lm_forgetting(run: RunFacts, limits) -> list[Finding]:
    tasks = (run.metrics.get("forgetting") or {}).get("tasks") or []
    rise = max(MIN_PERPLEXITY_RISE, limits.forgetting)
    worse = [t for t in tasks if isinstance(t.get("ratio"), float) and t["ratio"] > 1 + rise]
    if not _is_lm(run) or not worse:
        return []
    return [
        Finding(
            "forgetting",
            "warning",
            "perplexity on general instruction data rose after fine-tuning: "
            + ", ".join(f"{t['name']} ×{t['ratio']:.2f}" for t in worse),
            "use LoRA with a lower rank or learning rate, train fewer steps, or mix general "
            "instruction data into the training set",
            {"tasks": worse},
        )
    ]


LM_RULES = (pii_not_redacted, canary_extracted, lm_forgetting)
