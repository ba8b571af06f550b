"""End to end: `tunewise run` on a 300-row slice of real BANKING77 with the embedded MiniLM."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import banking_slice
from tunewise.cli import main

CONTRACT_METRICS = {"accuracy", "macro_f1", "macro_precision", "macro_recall"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    train, test = banking_slice(tmp, n_train=300, n_test=150)
    code = main(
        [
            "run",
            "configs/banking77.yaml",
            f"data.train={train}",
            f"data.test={test}",
            f"output_dir={tmp / 'runs'}",
            "name=slice",
            "train.max_steps=12",
            "train.eval_every=6",
            "train.log_every=3",
            "eval.bootstrap=200",
            "eval.forgetting_rows=100",
            "eval.forgetting_test_rows=50",
            # the plain recipe (random [CLS] head, nothing added): the shipped one starts from
            # the probe and would not regress, and this test is about the doctor blocking
            "model.pooling=cls",
            "adapt.method=full",
            "adapt.head_init=random",
            "train.average_last=null",
            "train.interpolate_start=false",
            "train.contrastive=null",
        ]
    )
    # 12 steps on 300 rows cannot beat the linear probe: the doctor blocks (exit 1), and the run
    # directory is still complete, so the user can read why.
    assert code == 1
    return tmp / "runs" / "slice"


def test_the_doctor_names_the_regression(finished_run):
    findings = json.loads((finished_run / "doctor.json").read_text())
    assert ("no-improvement", "error") in [(f["code"], f["severity"]) for f in findings]


def test_run_directory_contract(finished_run):
    for name in (
        "config.yaml",
        "metrics.json",
        "history.jsonl",
        "report.html",
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
        "checkpoints/step-00000012/model.safetensors",
        "checkpoints/step-00000012/state.json",
        "checkpoints/step-00000012/manifest.json",
        "audit.json",
        "audit.html",
        "prepare.json",
        "dropped.jsonl",
    ):
        assert (finished_run / name).is_file(), name
    assert not list(finished_run.rglob("*.bin")) and not list(finished_run.rglob("*.pt"))
    metrics = json.loads((finished_run / "metrics.json").read_text())
    for key in ("task", "baseline", "tuned", "delta", "ci95", "significance", "test_size"):
        assert key in metrics, key
    assert metrics["test_size"] == 150 and metrics["task"] == "classification"
    assert (
        metrics["tuned"].keys() >= CONTRACT_METRICS
        and metrics["baseline"].keys() >= CONTRACT_METRICS
    )
    assert set(metrics["baselines"]) == {"zero_shot", "linear_probe"}
    lo, hi = metrics["ci95"]["accuracy"]
    assert lo <= metrics["delta"]["accuracy"] <= hi
    assert 0.0 <= metrics["significance"]["p_value"] <= 1.0
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    assert config["train"]["max_steps"] == 12 and "${" not in json.dumps(config)


def test_deeper_evaluation_sections(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    slices = metrics["slices"]
    assert slices["by"] == ["length"] and slices["groups"]
    assert sum(g["size"] for g in slices["groups"] + slices["skipped"]) == 150
    assert slices["worst"]["gap"] == slices["overall"]["accuracy"] - slices["worst"]["accuracy"]
    cal = metrics["calibration"]
    assert 0 <= cal["ece"] <= 1 and len(cal["bins"]) == 15
    assert cal["temperature"] > 0 and 0 <= cal["ece_after_temperature"] <= 1
    assert (
        cal["validation_size"]
        == json.loads((finished_run / "training.json").read_text())["validation"]["size"]
    )
    tasks = {t["name"]: t for t in metrics["forgetting"]["tasks"]}
    assert set(tasks) == {"trec", "sst2"}, metrics["forgetting"]["skipped"]
    for t in tasks.values():
        assert t["train_size"] == 100 and t["test_size"] == 50
        lo, hi = t["ci95"]
        assert lo <= t["delta"] <= hi
    errors = metrics["errors"]
    assert len(errors["confident_wrong"]) == 10 and len(errors["confused_pairs"]) == 10
    wrong = errors["confident_wrong"][0]
    assert {"text", "true", "predicted", "confidence", "line"} <= wrong.keys()
    html = (finished_run / "report.html").read_text()
    for section in ("slices", "calibration", "forgetting", "errors"):
        assert f'<section id="{section}">' in html, section


def test_history_has_train_steps_and_evaluations(finished_run):
    lines = [json.loads(x) for x in (finished_run / "history.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["split"] == "train"]
    val = [r for r in lines if r["split"] == "validation"]
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert [r["step"] for r in val] == [6, 12]
    assert all({"epoch", "loss", "lr", "grad_norm"} <= r.keys() for r in train)
    assert all({"loss", "accuracy", "macro_f1"} <= r.keys() for r in val)


def test_transformers_pipeline_loads_the_model_with_label_names(finished_run):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(finished_run / "model"))
    labels = json.loads((finished_run / "metrics.json").read_text())["labels"]
    out = clf("I am still waiting on my card?")
    assert out[0]["label"] in labels


def test_report_is_self_contained(finished_run):
    html = (finished_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script src=" not in html


def test_corrupted_data_exits_2_with_line_numbers(tmp_path, capsys):
    train, test = banking_slice(tmp_path, n_train=60, n_test=20)
    lines = train.read_text(encoding="utf-8").splitlines()
    lines[5] = ",card_arrival"  # empty text on line 6
    lines[9] = lines[9].split(",")[0] + ","  # missing label on line 10
    train.write_bytes("\n".join(lines).encode() + b"\nbad \xff\xfe bytes,card_arrival\n")
    code = main(
        [
            "run",
            "configs/banking77.yaml",
            f"data.train={train}",
            f"data.test={test}",
            f"output_dir={tmp_path / 'runs'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{train}:6: text:" in err and f"{train}:10: category:" in err
    assert f"{train}:{len(lines) + 1}:" in err
    assert not (tmp_path / "runs").exists()  # nothing ran, no model loaded


def test_report_renders_in_a_real_browser(finished_run, tmp_path):
    from tests.browser import browser_page

    with browser_page() as page:
        page.goto((finished_run / "report.html").resolve().as_uri())
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        count = page.evaluate("document.images.length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert page.errors == []
    assert count >= 3 and broken == 0
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert (finished_run.parent / "mlflow.db").is_file()  # tracked in MLflow's local store
