"""Dropout overrides (hidden, attention, classifier) on a Hugging Face config, whatever the names.

Why: architectures spell the same knob differently (BERT `hidden_dropout_prob`, DistilBERT
`dropout`, `seq_classif_dropout`, ...), and a run must both set the overrides and record the
values that were in force, so the doctor can tell whether any regulariser was active.

    set_dropout(config, hidden=0.2, attention=None, classifier=0.3)
    dropout_of(config)  # {"hidden": 0.2, "attention": 0.1, "classifier": 0.3}
"""

from __future__ import annotations

from typing import Any

KEYS = {
    "hidden": ("hidden_dropout_prob", "hidden_dropout", "dropout", "resid_pdrop"),
    "attention": ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"),
    "classifier": ("classifier_dropout", "seq_classif_dropout", "cls_dropout", "pooler_dropout"),
}


def set_dropout(config: Any, **rates: float | None) -> Any:
    """Set each given rate (hidden, attention, classifier) on every attribute the config has for it.

    A missing classifier rate follows an explicit hidden one, as `model.dropout` always did. A
    kind the architecture has no attribute for is left alone; `dropout_of` then shows None.
    """
    if rates.get("classifier") is None and rates.get("hidden") is not None:
        rates["classifier"] = rates["hidden"]
    for kind, rate in rates.items():
        if rate is None:
            continue
        for key in KEYS[kind]:
            if hasattr(config, key):
                setattr(config, key, rate)
    return config


def dropout_of(config: Any) -> dict[str, float | None]:
    """The rates in force; BERT's unset `classifier_dropout` means the hidden rate is used."""
    found = {
        kind: next((getattr(config, k) for k in keys if getattr(config, k, None) is not None), None)
        for kind, keys in KEYS.items()
    }
    if found["classifier"] is None:
        found["classifier"] = found["hidden"]
    return found
