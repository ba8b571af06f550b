"""The doctor's rules: each a small function of a run's facts and the thresholds.

A rule returns the findings it sees (usually zero or one) with evidence and a remedy; see
`tunewise.doctor.facts` for how a run directory becomes `RunFacts`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.core import rundir
from tunewise.core.files import sha256_file
from tunewise.core.findings import Finding
from tunewise.doctor.data_rules import classic_preprocessing
from tunewise.doctor.facts import RunFacts
from tunewise.doctor.lm_rules import LM_RULES

# Hugging Face Trainer's defaults: a run that uses them all was never tuned for its data.
LIBRARY_DEFAULTS = {"lr": 5e-5, "epochs": 3, "batch_size": 8, "weight_decay": 0.0}
BALANCING_LOSSES = ("weighted_cross_entropy", "focal")


def no_eval_set(run: RunFacts, limits) -> list[Finding]:
    if run.section("data").get("test") and run.metrics.get("tuned"):
        return []
    return [
        Finding(
            "no-eval-set",
            "error",
            "the tuned model was never scored on a held-out test set",
            "give data.test (rows never used for training or selection) and run tunewise evaluate",
            {"test": run.section("data").get("test"), "evaluated": bool(run.metrics.get("tuned"))},
        )
    ]


def _fingerprint(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return sha256_file(path)


def selection_on_test(run: RunFacts, limits) -> list[Finding]:
    data = run.section("data")
    val, test = data.get("validation"), data.get("test")
    if not (val and test):
        return []
    same = Path(val).resolve() == Path(test).resolve() or _fingerprint(val) == _fingerprint(test)
    if not same:
        return []
    return [
        Finding(
            "test-used-for-selection",
            "error",
            "the validation set (used for early stopping and model selection) is the test set, so "
            "the test score is optimistic",
            "use a separate validation file, or data.validation: null for a seeded split of train",
            {"validation": val, "test": test},
        )
    ]


def leakage(run: RunFacts, limits) -> list[Finding]:
    return [f for f in run.audit if f.code == "leakage"]


def untuned_defaults(run: RunFacts, limits) -> list[Finding]:
    train = run.section("train")
    same = {k: v for k, v in LIBRARY_DEFAULTS.items() if train.get(k) == v}
    if len(same) < 3 or (run.path / rundir.TUNE).is_dir():
        return []
    return [
        Finding(
            "untuned-defaults",
            "warning",
            f"{len(same)} key hyperparameters equal library defaults and no search ran",
            "run tunewise tune CONFIG, or start from a measured recipe (configs/banking77.yaml)",
            {"defaults_used": same},
        )
    ]


def overfitting(run: RunFacts, limits) -> list[Finding]:
    """Validation loss rising for K evaluations in a row while training loss falls, or, at the
    end, validation loss above training loss by more than `overfit_loss_gap` nats (the model
    gives validation labels e^-gap times the probability it gives training labels)."""
    evals = [r for r in run.records("validation") if _finite(r.get("loss"))]
    stopped = bool(run.section("train").get("early_stopping"))
    severity = "info" if stopped else "warning"
    remedy = ("keep early stopping on; add weight decay, dropout or label smoothing; train fewer "
              "epochs or add data")  # fmt: skip
    rise = _rising_validation_loss(run, evals, limits.overfit_evals)
    if rise:
        best = run.training.get("training", {}).get("best_step")
        message, evidence = rise
        if stopped:
            message += f"; early stopping kept the weights of step {best}"
        return [Finding("overfitting", severity, message, remedy, evidence)]
    if not evals:
        return []
    last = evals[-1]
    train_loss = _train_loss_at(run, last["step"])
    if train_loss is None or last["loss"] - train_loss <= limits.overfit_loss_gap:
        return []
    gap = last["loss"] - train_loss
    message = (f"validation loss {last['loss']:.3f} is {gap:.2f} above training loss "
               f"{train_loss:.3f} at step {last['step']}: the model fits training rows far "
               "better than unseen ones")  # fmt: skip
    evidence = {"step": last["step"], "validation_loss": round(last["loss"], 4),
                "train_loss": round(train_loss, 4), "gap": round(gap, 4),
                "limit": limits.overfit_loss_gap, "early_stopping": stopped}  # fmt: skip
    return [Finding("overfitting", severity, message, remedy, evidence)]


def _rising_validation_loss(run: RunFacts, evals: list[dict], k: int) -> tuple | None:
    rises = _longest_rise([r["loss"] for r in evals])
    if rises is None or rises[1] - rises[0] < k:
        return None
    start, end = evals[rises[0]], evals[rises[1]]
    train_then, train_now = _train_loss_at(run, start["step"]), _train_loss_at(run, end["step"])
    if train_then is None or train_now is None or train_now >= train_then:
        return None
    message = (f"validation loss rose for {rises[1] - rises[0]} evaluations in a row "
               f"(steps {start['step']}–{end['step']}) while training loss fell")  # fmt: skip
    evidence = {
        "steps": [r["step"] for r in evals[rises[0] : rises[1] + 1]],
        "validation_loss": [round(r["loss"], 4) for r in evals[rises[0] : rises[1] + 1]],
        "train_loss": [round(train_then, 4), round(train_now, 4)],
        "early_stopping": bool(run.section("train").get("early_stopping")),
    }
    return message, evidence


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _longest_rise(values: list[float]) -> tuple[int, int] | None:
    """(start, end) indices of the longest strictly rising run, or None for fewer than 2 values."""
    best, start = None, 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] <= values[i - 1]:
            if best is None or i - 1 - start > best[1] - best[0]:
                best = (start, i - 1)
            start = i
    return best if best and best[1] > best[0] else None


def _train_loss_at(run: RunFacts, step: int) -> float | None:
    before = [
        r["loss"] for r in run.records("train") if r["step"] <= step and _finite(r.get("loss"))
    ]
    return before[-1] if before else None


def no_regularization(run: RunFacts, limits) -> list[Finding]:
    train, model = run.section("train"), run.section("model")
    active = {
        "weight_decay": (train.get("weight_decay") or 0) > 0,
        "dropout": model.get("dropout") is None or model.get("dropout", 0) > 0,
        "early_stopping": bool(train.get("early_stopping")),
        "label_smoothing": (train.get("loss_options") or {}).get("label_smoothing", 0) > 0,
    }
    if any(active.values()):
        return []
    return [
        Finding(
            "no-regularization",
            "warning",
            "no regulariser was active: no weight decay, no dropout, "
            "no early stopping, no label smoothing",
            "set train.weight_decay (e.g. 0.01) and keep train.early_stopping on",
            {"active": active},
        )
    ]


def class_imbalance(run: RunFacts, limits) -> list[Finding]:
    counts = run.training.get("train_label_counts") or {}
    if len(counts) < 2:
        return []
    ratio = max(counts.values()) / max(1, min(counts.values()))
    loss = run.section("train").get("loss", "cross_entropy")
    stop_metric = (run.section("train").get("early_stopping") or {}).get("metric", "")
    if ratio < limits.imbalance_ratio or loss in BALANCING_LOSSES or stop_metric == "macro_f1":
        return []
    rare = sorted(counts, key=lambda label: counts[label])[:5]
    return [
        Finding(
            "class-imbalance",
            "warning",
            f"largest class has {ratio:.0f}× the rows of the smallest, "
            f"and training neither weights the loss ({loss}) nor selects on a macro metric",
            "use train.loss: weighted_cross_entropy or focal, and early_stopping.metric: macro_f1",
            {"ratio": round(ratio, 2), "rarest": {k: counts[k] for k in rare}},
        )
    ]


def small_dataset(run: RunFacts, limits) -> list[Finding]:
    counts = run.training.get("train_label_counts") or {}
    if not counts:
        return []
    per_class = sum(counts.values()) / len(counts)
    method = run.section("adapt").get("method", "full")
    if per_class >= limits.min_rows_per_class:
        return []
    trainable = run.training.get("parameters", {}).get("trainable")
    return [
        Finding(
            "small-dataset",
            "warning",
            f"{per_class:.1f} training rows per class for "
            f"{len(counts)} classes is small for tuning "
            f"{f'{trainable:,}' if trainable else 'all'} parameters ({method})",
            "collect more labelled rows (tunewise select picks the most useful), augment, or tune "
            "fewer parameters (adapt.method: head, bitfit or lora)",
            {
                "rows": sum(counts.values()),
                "classes": len(counts),
                "rows_per_class": round(per_class, 2),
                "trainable_parameters": trainable,
            },
        )
    ]


def label_noise(run: RunFacts, limits) -> list[Finding]:
    found = []
    for f in run.audit:
        if f.code != "label-noise":
            continue
        ev = f.evidence
        rate = ev.get("share", ev.get("rate", 0.0))  # the audit's share of training rows
        if rate >= limits.label_noise_rate:
            found.append(
                Finding(
                    "label-noise",
                    "warning",
                    f"{rate:.1%} of training labels look wrong (audit)",
                    f.remedy,
                    {**ev, "rate": rate},
                )
            )
    return found


def forgetting(run: RunFacts, limits) -> list[Finding]:
    tasks = (run.metrics.get("forgetting") or {}).get("tasks") or []
    lost = [
        t
        for t in tasks
        if _finite(t.get("delta"))
        and t["delta"] <= -limits.forgetting
        and (t.get("ci95") or [0, 0])[1] < 0
    ]
    if not lost:
        return []
    return [
        Finding(
            "forgetting",
            "warning",
            "the tuned encoder lost general ability: "
            + ", ".join(f"{t['name']} {t['delta']:+.3f}" for t in lost),
            "tune fewer parameters (lora, bitfit, freeze), lower the learning rate or train fewer "
            "epochs",
            {"tasks": lost},
        )
    ]


def slice_gap(run: RunFacts, limits) -> list[Finding]:
    worst = (run.metrics.get("slices") or {}).get("worst") or {}
    if not _finite(worst.get("gap")) or worst["gap"] <= limits.slice_gap:
        return []
    return [
        Finding(
            "slice-gap",
            "warning",
            f"slice {worst.get('slice')}={worst.get('value')} scores "
            f"{worst['gap']:.1%} below the overall accuracy",
            "add training rows like this slice, and check its labels",
            dict(worst),
        )
    ]


def poor_calibration(run: RunFacts, limits) -> list[Finding]:
    cal = run.metrics.get("calibration") or {}
    ece = cal.get("ece")
    if not _finite(ece) or ece <= limits.max_ece:
        return []
    after = cal.get("ece_after_temperature")
    fixed = _finite(after) and after <= limits.max_ece
    return [
        Finding(
            "poor-calibration",
            "info" if fixed else "warning",
            f"expected calibration error {ece:.3f}: confidence does not match accuracy",
            "use the fitted temperature when thresholding confidences"
            if fixed
            else "fit temperature scaling on validation, or use label smoothing",
            {"ece": ece, "ece_after_temperature": after, "temperature": cal.get("temperature")},
        )
    ]


def unstable_training(run: RunFacts, limits) -> list[Finding]:
    train = run.records("train")
    bad = [
        r["step"]
        for r in train
        if any(k.endswith("_nonfinite") for k in r) or r.get("loss") is None
    ]
    if bad:
        return [
            Finding(
                "unstable-training",
                "error",
                f"non-finite loss or gradient at {len(bad)} logged steps",
                "lower the learning rate, keep clipping on, use bf16 rather than fp16",
                {"steps": bad[:20]},
            )
        ]
    clip = run.section("train").get("clip_grad_norm")
    spikes = _spikes(train, "loss", limits.spike_factor)
    if not clip:  # clipped spikes cannot move the weights
        spikes += _spikes(train, "grad_norm", limits.spike_factor * 3)
    found = []
    if spikes:
        found.append(
            Finding(
                "unstable-training",
                "warning",
                f"{len(spikes)} loss or gradient-norm spikes",
                "lower the learning rate, lengthen warmup, keep train.clip_grad_norm on",
                {"spikes": spikes[:20]},
            )
        )
    return found + _clipped_throughout(train, clip, limits) + _start_lost(run, limits)


def _clipped_throughout(train: list[dict[str, Any]], clip: Any, limits) -> list[Finding]:
    """The pre-clip gradient norm far above the clip for much of the run: the clip, not the
    learning rate, sets every step, and what the gradient says is thrown away."""
    norms = [r["grad_norm"] for r in train if _finite(r.get("grad_norm"))]
    if not clip or not norms:
        return []
    share = sum(n > limits.clip_excess * clip for n in norms) / len(norms)
    if share < limits.clip_share:
        return []
    return [
        Finding(
            "unstable-training",
            "warning",
            f"the gradient norm before clipping was over {limits.clip_excess:g}x the clip "
            f"({clip:g}) on {share:.0%} of logged steps (median {statistics.median(norms):.3g})",
            "lower train.lr or lengthen train.warmup_ratio; with adapt.head_init: linear_probe, "
            "check the head's weights are not huge",
            {"share": share, "median_grad_norm": statistics.median(norms), "clip": clip},
        )
    ]


def _start_lost(run: RunFacts, limits) -> list[Finding]:
    """Validation fell well below where training started (the probe head's own score)."""
    start = ((run.training.get("head_init") or {}).get("validation") or {}).get("accuracy")
    scores = [(r["step"], r["accuracy"]) for r in run.records("validation")
              if _finite(r.get("accuracy"))]  # fmt: skip
    if not _finite(start) or not scores:
        return []
    step, low = min(scores, key=lambda s: s[1])
    if low >= start - limits.start_drop:
        return []
    return [
        Finding(
            "unstable-training",
            "warning",
            f"validation accuracy fell from {start:.4f} (the linear-probe head training started "
            f"from) to {low:.4f} at step {step}: training first undid the head it was given",
            "lower train.lr or lengthen train.warmup_ratio so the first steps keep the probe",
            {"start": start, "lowest": low, "step": step},
        )
    ]


def _spikes(records: list[dict[str, Any]], key: str, factor: float) -> list[dict[str, Any]]:
    """Logged values above `factor` × the median of the 5 values before them."""
    values = [(r["step"], r[key]) for r in records if _finite(r.get(key))]
    out = []
    for i in range(5, len(values)):
        median = statistics.median(v for _, v in values[i - 5 : i])
        if median > 0 and values[i][1] > factor * median:
            out.append({"step": values[i][0], key: values[i][1], "median_before": median})
    return out


def no_improvement(run: RunFacts, limits) -> list[Finding]:
    sig, delta = run.metrics.get("significance"), run.metrics.get("delta")
    if not sig or not delta:
        return []
    key = run.metrics.get("primary_metric", "accuracy")  # causal_lm: rougeL
    p, gain = sig.get("p_value", 1.0), delta.get(key, 0.0)
    if p < limits.alpha and gain > 0:
        return []
    worse = p < limits.alpha and gain < 0
    name = run.metrics.get("baseline_name", "baseline")
    return [
        Finding(
            "no-improvement",
            "error" if worse else "warning",
            f"the tuned model is {'significantly worse' if worse else 'not significantly better'}"
            f" than the {name} baseline ({key} {gain:+.4f}, p = {p:.2g})",
            f"deploy the {name} baseline, or search hyperparameters (tunewise tune) and compare "
            "adaptation methods (tunewise compare)",
            {"delta": delta, "ci95": run.metrics.get("ci95"), "p_value": p, "baseline": name},
        )
    ]


def no_oos_check(run: RunFacts, limits) -> list[Finding]:
    """A classifier answers every message with an intent: without an out-of-scope check and a
    threshold (eval.oos, RUN_DIR/oos.json), a message that fits none is answered confidently."""
    if run.config.get("task", "classification") != "classification" or not run.metrics.get("tuned"):
        return []
    checked = (run.metrics.get("oos") or {}).get("methods")
    if checked and (run.path / rundir.OOS).is_file():
        return []
    return [
        Finding(
            "no-oos-check",
            "warning",
            "no out-of-scope evaluation and no threshold: every message, even one that fits no "
            "intent, gets a confident label",
            "set eval.oos (the default: method knn, coverage 0.98) and re-run tunewise evaluate; "
            "add rows labelled eval.oos.label to validation and test to measure detection",
            {"oos_section": bool(checked), "detector": (run.path / rundir.OOS).is_file()},
        )
    ]


RULES: tuple[Callable[[RunFacts, Any], list[Finding]], ...] = (
    no_eval_set,
    selection_on_test,
    leakage,
    untuned_defaults,
    overfitting,
    no_regularization,
    class_imbalance,
    small_dataset,
    label_noise,
    classic_preprocessing,
    forgetting,
    slice_gap,
    poor_calibration,
    unstable_training,
    no_improvement,
    no_oos_check,
    *LM_RULES,
)
