"""`tunewise compare`: every method on the same split, one table, compare.json and compare.html."""

from __future__ import annotations

import json

import pytest
import yaml

from tunewise.cli import main
from tunewise.core.errors import InputError
from tunewise.studies.compare import split_overrides


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir):
    from tests.conftest import write_csv

    tmp = tmp_path_factory.mktemp("compare")
    words = {
        "refund": "money back refund please",
        "card": "my card is lost stolen",
        "hello": "hello hi good morning",
    }
    train = [(f"{t} {i}", lab) for i in range(20) for lab, t in words.items()]
    test = [(f"{t} number {i}", lab) for i in range(5) for lab, t in words.items()]
    config = {
        "name": "toy",
        "output_dir": str(tmp / "runs"),
        "data": {
            "train": str(write_csv(tmp / "train.csv", train)),
            "test": str(write_csv(tmp / "test.csv", test)),
            "max_rows": 14,  # a sample of each file: baseline and methods see the same rows
        },
        "model": {"name": str(tiny_model_dir), "max_length": 16},
        "adapt": {"freeze_layers": 1, "lora": {"r": 2}},
        "train": {
            "max_steps": 6,
            "batch_size": 16,
            "lr": 1e-3,
            "precision": "fp32",
            "early_stopping": None,
        },
        "eval": {"bootstrap": 50, "forgetting": []},
    }
    path = tmp / "toy.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code = main(
        [
            "compare",
            str(path),
            "--methods",
            "full,head,freeze,bitfit,lora",
            "lora:train.lr=5e-3",
            "train.log_every=3",
        ]
    )
    assert code == 0
    return tmp / "runs" / "toy-compare"


def test_compare_writes_one_row_per_method_on_the_same_test_rows(compared):
    doc = json.loads((compared / "compare.json").read_text())
    rows = {r["method"]: r for r in doc["methods"]}
    assert list(rows) == ["full", "head", "freeze", "bitfit", "lora"]
    for r in rows.values():
        assert r["test_size"] == 14 and 0.0 <= r["accuracy"] <= 1.0 and r["macro_f1"] is not None
        assert r["train_seconds"] > 0 and r["peak_memory_mb"] > 0 and r["steps"] == 6
        run = json.loads((compared / r["method"] / "metrics.json").read_text())
        assert run["tuned"]["accuracy"] == r["accuracy"] and "ci95" in run  # same baseline
        assert r["ci95_vs_baseline"] is not None
    p = {m: r["trainable_parameters"] for m, r in rows.items()}
    assert p["full"] > p["freeze"] > p["bitfit"] > p["head"] and p["lora"] < p["freeze"]
    assert rows["lora"]["lr"] == 5e-3 and rows["full"]["lr"] == 1e-3
    assert set(doc["baselines"]) == {"zero_shot", "linear_probe"}
    assert (compared / "lora" / "adapter" / "adapter_config.json").is_file()


def test_compare_html_is_self_contained_with_a_chart(compared):
    page = (compared / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "<script src=" not in page
    assert all(m in page for m in ("full", "head", "freeze", "bitfit", "lora"))
    assert "http" not in page


def test_method_prefixed_overrides_go_to_that_method_only():
    shared, per = split_overrides(
        ["train.epochs=2", "lora:train.lr=1e-3", "data.train=C:/x.csv"], ["full", "lora"]
    )
    assert shared == ["train.epochs=2", "data.train=C:/x.csv"]
    assert per == {"full": [], "lora": ["train.lr=1e-3"]}
    with pytest.raises(InputError, match="'bitfit' is not compared"):
        split_overrides(["bitfit:train.lr=1"], ["full"])


def test_unknown_method_exits_2(capsys):
    assert main(["compare", "configs/banking77.yaml", "--methods", "full,adapters"]) == 2
    assert "unknown: adapters" in capsys.readouterr().err
