"""Out-of-scope detection inside a run (eval.oos): oos rows are never a class, every method is
scored for the tuned model and the probe, the detector is saved, and test rows never choose it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_csv
from tunewise import pipeline
from tunewise.config import load_config
from tunewise.core.errors import BlockingFinding, InputError
from tunewise.evaluation import oos

WORDS = {
    "refund": "money back refund please",
    "card": "my card is lost stolen",
    "hello": "hello hi good morning",
}
OOS = ["weather in paris tomorrow", "order a pizza tonight", "asdfgh qwerty zxcv"]


def oos_data(tmp_path: Path) -> tuple[Path, Path]:
    """The toy intents plus out-of-scope rows (label `oos`) in train and test."""
    train = [(f"{t} {i}", lab) for i in range(20) for lab, t in WORDS.items()]
    train += [(f"{t} {i}", "oos") for i in range(6) for t in OOS]
    test = [(f"{t} number {i}", lab) for i in range(5) for lab, t in WORDS.items()]
    test += [(f"{t} number {i}", "oos") for i in range(3) for t in OOS]
    return write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "test.csv", test)


def config(tmp_path: Path, model_dir: Path, train: Path, test: Path, **eval_cfg) -> dict:
    return {
        "name": "oos",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(train), "test": str(test)},
        "model": {"name": str(model_dir), "max_length": 16},
        "train": {"max_steps": 4, "batch_size": 16, "precision": "fp32", "log_every": 2},
        "eval": {"bootstrap": 20, "forgetting": [], "oos": {"method": "knn", "k": 3, **eval_cfg}},
        "audit": {"label_noise": False},
        "track": {"backends": []},
    }


def run(cfg: dict) -> Path:
    with contextlib.suppress(BlockingFinding):  # a 4-step tiny model may lose to the probe
        pipeline.run(cfg)
    return Path(cfg["output_dir"]) / cfg["name"]


@pytest.fixture(scope="module")
def oos_run(tmp_path_factory, tiny_model_dir) -> Path:
    tmp = tmp_path_factory.mktemp("oos")
    return run(config(tmp, tiny_model_dir, *oos_data(tmp)))


def test_oos_rows_are_scored_for_every_method_and_are_never_a_class(oos_run):
    metrics = json.loads((oos_run / "metrics.json").read_text())
    assert "oos" not in metrics["labels"] and len(metrics["labels"]) == 3
    doc = metrics["oos"]
    assert doc["rows"]["test_oos"] == 9 and doc["rows"]["test"] == 15
    assert doc["rows"]["threshold_oos"] > 0 and doc["threshold_from"] == "youden"
    assert set(doc["methods"]) == set(oos.METHODS)
    for report in [*doc["methods"].values(), *doc["baseline"]["methods"].values()]:
        assert 0 <= report["auroc"] <= 1 and 0 <= report["fpr_at_95_recall"] <= 1
        assert report["oos_rows"] == 9 and report["in_scope_rows"] == 15
        assert report["in_scope_accuracy_with_abstention"] <= report["in_scope_accuracy"]
        assert sum(report["histogram"]["oos"]) == 9
    saved = json.loads((oos_run / "oos.json").read_text())
    assert saved["method"] == "knn" and saved["label"] == "oos"
    assert saved["threshold"] == doc["methods"]["knn"]["threshold"]
    assert (oos_run / "oos.safetensors").is_file()


def test_the_report_shows_every_method_and_the_score_distributions(oos_run):
    page = (oos_run / "report.html").read_text()
    section = page[page.index('<section id="oos">') :]
    section = section[: section.index("</section>")]
    assert "knn (served)" in section and section.count("<tr>") == 1 + 2 * len(oos.METHODS)
    assert 'alt="out-of-scope score distributions"' in section and "data:image/png" in section
    assert "chosen on" in section  # youden: the threshold came from oos example rows
    findings = json.loads((oos_run / "doctor.json").read_text())
    assert "no-oos-check" not in [f["code"] for f in findings]


def test_the_threshold_is_never_chosen_on_test_rows(oos_run, tmp_path):
    """Other out-of-scope test rows change the test metrics, never the saved detector."""
    before = json.loads((oos_run / "oos.json").read_text())
    old = json.loads((oos_run / "metrics.json").read_text())["oos"]["methods"]
    cfg = load_config(oos_run / "config.yaml")
    test = Path(cfg.data.test)
    lines = test.read_text().splitlines()
    kept = [line for line in lines if not line.endswith(",oos")]
    other = [f"totally different question {i} about football,oos" for i in range(9)]
    test.write_text("\n".join(kept + other) + "\n")
    new = pipeline.evaluate(oos_run)["oos"]["methods"]
    assert json.loads((oos_run / "oos.json").read_text()) == before
    for method in oos.METHODS:
        assert new[method]["threshold"] == old[method]["threshold"]
    assert any(new[m]["auroc"] != old[m]["auroc"] for m in oos.METHODS)


def test_without_oos_rows_the_threshold_keeps_the_coverage(tmp_path, tiny_model_dir, toy_data):
    cfg = config(tmp_path, tiny_model_dir, *toy_data, method="msp", coverage=0.8)
    run_dir = run(cfg)
    doc = json.loads((run_dir / "metrics.json").read_text())["oos"]
    assert doc["threshold_from"] == "coverage" and doc["rows"]["test_oos"] == 0
    assert "auroc" not in doc["methods"]["msp"]
    saved = json.loads((run_dir / "oos.json").read_text())
    assert saved["method"] == "msp" and saved["chosen_by"] == "coverage"
    assert not (run_dir / "oos.safetensors").exists()  # a logit method has no fitted state


def test_eval_oos_null_keeps_oos_rows_as_unknown_labels(tmp_path, tiny_model_dir):
    train, test = oos_data(tmp_path)
    cfg = config(tmp_path, tiny_model_dir, train, test)
    cfg["eval"]["oos"] = None
    train.write_text(
        "\n".join(x for x in train.read_text().splitlines() if not x.endswith(",oos")) + "\n"
    )
    with pytest.raises(InputError, match="never occurs in the training data"):
        pipeline.run(cfg)


def test_compare_methods_never_reads_test_rows_to_fit():
    rng = np.random.default_rng(0)

    def outputs(n: int, shift: float = 0.0) -> oos.Outputs:
        return oos.Outputs(rng.normal(size=(n, 3)) + shift, rng.normal(size=(n, 4)) + shift)

    train, train_y = outputs(30), rng.integers(0, 3, 30)
    val, val_oos = outputs(20), outputs(5, 3.0)
    common = {"coverage": 0.9, "k": 3}
    test_y = rng.integers(0, 3, 10)
    _, first = oos.compare_methods(
        train, train_y, val, val_oos, outputs(10), test_y, outputs(4, 3), **common
    )
    _, second = oos.compare_methods(
        train, train_y, val, val_oos, outputs(10, 9.0), test_y, outputs(7, -5), **common
    )
    assert {m: d.threshold for m, d in first.items()} == {m: d.threshold for m, d in second.items()}
