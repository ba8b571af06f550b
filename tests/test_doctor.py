"""Each doctor rule fires on a run built to show its pitfall and stays quiet on a healthy run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tunewise.cli import main
from tunewise.config import DoctorConfig
from tunewise.doctor.diagnose import diagnose

HEALTHY = {
    "config": {
        "task": "classification",
        "name": "healthy",
        "data": {"train": "train.csv", "validation": None, "test": "test.csv"},
        "model": {"name": "minilm-l6", "dropout": None},
        "adapt": {"method": "full"},
        "train": {
            "lr": 3e-4,
            "epochs": 7,
            "batch_size": 32,
            "weight_decay": 0.01,
            "clip_grad_norm": 1.0,
            "loss": "cross_entropy",
            "early_stopping": {"metric": "macro_f1", "patience": 3, "min_delta": 0.0},
        },
    },
    "history": (
        [
            {"step": s, "split": "train", "loss": 3.0 / s, "grad_norm": 1.0}
            for s in range(10, 210, 10)
        ]
        + [
            {"step": s, "split": "validation", "loss": 2.0 / s, "accuracy": 0.5 + s / 1000}
            for s in (50, 100, 150, 200)
        ]
    ),
    "metrics": {
        "task": "classification",
        "tuned": {"accuracy": 0.93},
        "baseline_name": "linear_probe",
        "delta": {"accuracy": 0.05},
        "ci95": {"accuracy": [0.03, 0.07]},
        "significance": {"p_value": 0.001},
        "calibration": {"ece": 0.03, "ece_after_temperature": 0.02},
        "slices": {"worst": {"slice": "length", "value": "≤8 tokens", "gap": 0.02}},
        "forgetting": {"tasks": [{"name": "trec", "delta": -0.005, "ci95": [-0.02, 0.01]}]},
        "oos": {"method": "knn", "methods": {"knn": {"threshold": 0.3, "auroc": 0.95}}},
    },
    "training": {
        "train_label_counts": {"a": 50, "b": 40, "c": 45},
        "training": {"best_step": 200},
        "parameters": {"trainable": 1000},
    },
    "audit": [],
    "oos": {"method": "knn", "threshold": 0.3},  # oos.json: the detector serve abstains by
}


def make_run(tmp_path: Path, **changes) -> Path:
    """A run directory from HEALTHY with `changes` applied (dotted keys into the documents)."""
    docs = copy.deepcopy(HEALTHY)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = docs
        for key in parents:
            target = target[key]
        target[leaf] = value
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(docs["config"]))
    (run / "history.jsonl").write_text("\n".join(json.dumps(r) for r in docs["history"]) + "\n")
    for name in ("metrics", "training", "audit", "oos"):
        path = run / f"{name}.json"
        path.unlink(missing_ok=True)
        if docs[name] is not None:
            path.write_text(json.dumps(docs[name]))
    return run


def codes(run: Path) -> list[str]:
    return [f.code for f in diagnose(run, DoctorConfig())]


def test_healthy_run_has_no_findings(tmp_path):
    assert codes(make_run(tmp_path)) == []


def test_no_eval_set(tmp_path):
    assert codes(make_run(tmp_path, config__data__test=None)) == ["no-eval-set"]


def test_validation_equal_to_test_is_selection_on_test(tmp_path):
    (tmp_path / "same.csv").write_text("text,label\nhi,a\n")
    (tmp_path / "copy.csv").write_text("text,label\nhi,a\n")
    data = {
        "train": "t.csv",
        "validation": str(tmp_path / "same.csv"),
        "test": str(tmp_path / "copy.csv"),
    }
    assert "test-used-for-selection" in codes(make_run(tmp_path, config__data=data))


def test_leakage_from_the_audit_is_carried_over(tmp_path):
    leak = {
        "code": "leakage",
        "severity": "error",
        "message": "12 test rows are in train",
        "remedy": "drop them",
        "evidence": {"rows": [3, 7]},
    }
    found = diagnose(make_run(tmp_path, audit=[leak]), DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("leakage", "error")]


def test_untuned_defaults(tmp_path):
    train = {**HEALTHY["config"]["train"], "lr": 5e-5, "epochs": 3, "batch_size": 8}
    run = make_run(tmp_path, config__train=train)
    assert codes(run) == ["untuned-defaults"]
    (run / "tune").mkdir()
    assert codes(run) == []


def _overfit_history():
    train = [{"step": s, "split": "train", "loss": 3.0 / s} for s in range(10, 310, 10)]
    val = [
        {"step": s, "split": "validation", "loss": v}
        for s, v in ((50, 1.0), (100, 0.8), (150, 0.9), (200, 1.0), (250, 1.2), (300, 1.5))
    ]
    return train + val


def test_overfitting_warns_without_early_stopping(tmp_path):
    train = {**HEALTHY["config"]["train"], "early_stopping": None}
    found = diagnose(
        make_run(tmp_path, history=_overfit_history(), config__train=train), DoctorConfig()
    )
    assert [(f.code, f.severity) for f in found] == [("overfitting", "warning")]
    assert found[0].evidence["steps"] == [100, 150, 200, 250, 300]


def test_overfitting_is_info_when_early_stopping_restored_the_best(tmp_path):
    found = diagnose(make_run(tmp_path, history=_overfit_history()), DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("overfitting", "info")]


def test_overfitting_from_the_final_train_validation_gap(tmp_path):
    train = [{"step": s, "split": "train", "loss": 3.0 / s} for s in range(10, 210, 10)]
    val = [{"step": s, "split": "validation", "loss": 2.0 - s / 400} for s in range(50, 250, 50)]
    no_stop = {**HEALTHY["config"]["train"], "early_stopping": None}
    found = diagnose(make_run(tmp_path, history=train + val, config__train=no_stop), DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("overfitting", "warning")]
    assert found[0].evidence["gap"] == pytest.approx(1.5 - 0.015, abs=1e-3)
    assert diagnose(tmp_path / "run", DoctorConfig(overfit_loss_gap=1.6)) == []  # within limit


def test_classic_preprocessing_on_transformer_input(tmp_path):
    run = make_run(tmp_path, config__prepare={"stem": True, "stopwords": True, "lemmatize": False})
    found = diagnose(run, DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("classic-preprocessing", "warning")]
    assert found[0].evidence["steps"] == ["stem", "stopwords"]


def test_no_regularization(tmp_path):
    train = {**HEALTHY["config"]["train"], "weight_decay": 0.0, "early_stopping": None}
    run = make_run(tmp_path, config__train=train, config__model={"name": "m", "dropout": 0.0})
    assert codes(run) == ["no-regularization"]


def test_class_imbalance_without_a_balancing_loss(tmp_path):
    train = {**HEALTHY["config"]["train"], "early_stopping": {"metric": "accuracy"}}
    counts = {"a": 500, "b": 20, "c": 30}
    run = make_run(tmp_path, config__train=train, training__train_label_counts=counts)
    assert codes(run) == ["class-imbalance"]
    balanced = make_run(
        tmp_path, config__train={**train, "loss": "focal"}, training__train_label_counts=counts
    )
    assert codes(balanced) == []


def test_small_dataset(tmp_path):
    run = make_run(tmp_path, training__train_label_counts={"a": 3, "b": 4, "c": 5})
    assert codes(run) == ["small-dataset"]


def test_label_noise_above_the_rate(tmp_path):
    noisy = {
        "code": "label-noise",
        "severity": "warning",
        "message": "candidates",
        "remedy": "review them",
        "evidence": {"count": 90, "share": 0.09},
    }
    assert codes(make_run(tmp_path, audit=[noisy])) == ["label-noise"]
    quiet = {**noisy, "evidence": {"count": 10, "share": 0.01}}
    assert codes(make_run(tmp_path, audit=[quiet])) == []


def test_forgetting(tmp_path):
    tasks = [{"name": "sst2", "delta": -0.08, "ci95": [-0.11, -0.05]}]
    assert codes(make_run(tmp_path, metrics__forgetting={"tasks": tasks})) == ["forgetting"]


def test_slice_gap(tmp_path):
    worst = {"slice": "length", "value": ">40 tokens", "gap": 0.25}
    assert codes(make_run(tmp_path, metrics__slices={"worst": worst})) == ["slice-gap"]


def test_poor_calibration(tmp_path):
    cal = {"ece": 0.2, "ece_after_temperature": 0.15}
    found = diagnose(make_run(tmp_path, metrics__calibration=cal), DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("poor-calibration", "warning")]


def test_unstable_training_on_non_finite_loss_and_on_spikes(tmp_path):
    history = HEALTHY["history"] + [
        {"step": 300, "split": "train", "loss": None, "loss_nonfinite": "nan"}
    ]
    found = diagnose(make_run(tmp_path, history=history), DoctorConfig())
    assert [(f.code, f.severity) for f in found] == [("unstable-training", "error")]
    spiky = [
        {"step": s, "split": "train", "loss": 10.0 if s == 120 else 1.0} for s in range(10, 210, 10)
    ]
    assert codes(make_run(tmp_path, history=spiky)) == ["unstable-training"]


def test_unstable_training_when_the_clip_sets_every_step(tmp_path):
    # healthy: grad_norm 1.0 against clip 1.0 (the healthy run); clipped throughout:
    clipped = [
        {**r, "grad_norm": 197.0} if r["split"] == "train" else r for r in HEALTHY["history"]
    ]
    found = diagnose(make_run(tmp_path, history=clipped), DoctorConfig())
    assert [f.code for f in found] == ["unstable-training"]
    assert "100% of logged steps" in found[0].message and "median 197" in found[0].message
    # a few large norms are not "sustained"
    few = [
        {**r, "grad_norm": 197.0} if r["split"] == "train" and r["step"] < 60 else r
        for r in HEALTHY["history"]
    ]
    assert codes(make_run(tmp_path, history=few)) == []
    # without a clip, the spike rule speaks instead and this one stays quiet
    no_clip = {**HEALTHY["config"], "train": {**HEALTHY["config"]["train"], "clip_grad_norm": None}}
    assert codes(make_run(tmp_path, config=no_clip)) == []


def test_unstable_training_when_validation_falls_below_the_probe_start(tmp_path):
    start = {"method": "linear_probe", "validation": {"accuracy": 0.65}}
    run = make_run(tmp_path, training__head_init=start)  # validation 0.55 ... 0.70
    found = diagnose(run, DoctorConfig())
    assert [f.code for f in found] == ["unstable-training"]
    assert "from 0.6500" in found[0].message and "0.5500 at step 50" in found[0].message
    near = {"method": "linear_probe", "validation": {"accuracy": 0.565}}  # within 0.02
    assert codes(make_run(tmp_path, training__head_init=near)) == []


def test_no_improvement_and_significantly_worse(tmp_path):
    run = make_run(tmp_path, metrics__significance={"p_value": 0.4})
    assert codes(run) == ["no-improvement"]
    worse = make_run(
        tmp_path, metrics__significance={"p_value": 0.001}, metrics__delta={"accuracy": -0.04}
    )
    assert [(f.code, f.severity) for f in diagnose(worse, DoctorConfig())] == [
        ("no-improvement", "error")
    ]


def test_no_oos_check_without_an_out_of_scope_evaluation_or_threshold(tmp_path):
    no_detector = make_run(tmp_path, oos=None)  # evaluated, but nothing for serve to abstain by
    assert [(f.code, f.severity) for f in diagnose(no_detector, DoctorConfig())] == [
        ("no-oos-check", "warning")
    ]
    assert codes(make_run(tmp_path, metrics__oos=None)) == ["no-oos-check"]
    chat = {**HEALTHY["config"], "task": "causal_lm"}  # a chat model has no intents to abstain from
    assert "no-oos-check" not in codes(make_run(tmp_path, config=chat, metrics__oos=None))


def test_doctor_command_writes_json_and_exits_1_on_errors(tmp_path):
    run = make_run(tmp_path, config__data__test=None)
    assert main(["doctor", str(run)]) == 1
    assert json.loads((run / "doctor.json").read_text())[0]["code"] == "no-eval-set"
    healthy = make_run(tmp_path)
    assert main(["doctor", str(healthy)]) == 0


@pytest.mark.parametrize("threshold,fires", [(0.01, True), (0.5, False)])
def test_thresholds_come_from_the_doctor_config(tmp_path, threshold, fires):
    worst = {"slice": "length", "value": "long", "gap": 0.2}
    found = diagnose(
        make_run(tmp_path, metrics__slices={"worst": worst}), DoctorConfig(slice_gap=threshold)
    )
    assert bool(found) is fires
