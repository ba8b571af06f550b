"""Config loading: defaults, round trip, overrides, coercion, and errors that name line and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tunewise.config import (
    ADAPT_METHODS,
    EarlyStoppingConfig,
    RunConfig,
    TrainConfig,
    dump_config,
    load_config,
)
from tunewise.core.errors import InputError
from tunewise.data import sources


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[InputError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def test_defaults_load_with_none():
    cfg = load_config(None)
    assert cfg.task == "classification" and cfg.data == RunConfig().data
    assert cfg.train.lr == 5.0e-5  # classification: the recipe's, not TrainConfig's 3e-4
    assert cfg.train.early_stopping == EarlyStoppingConfig()
    assert cfg.run_dir() == Path("runs") / "run"


def test_yaml_file_round_trips_through_dump(tmp_path):
    src = write(
        tmp_path,
        """
        name: demo
        output_dir: out
        data:
          train: data/train.csv
          validation: null
          max_rows: 300
        model: {dropout: 0.2, max_length: 128}
        adapt: {method: freeze, freeze_layers: 2}
        train:
          lr: 2.0e-5
          clip_grad_norm: null
          early_stopping: {metric: loss, patience: 5, min_delta: 0.01}
        eval: {baseline: linear_probe, bootstrap: 0}
        """,
    )
    cfg = load_config(src)
    assert cfg.data.max_rows == 300 and cfg.adapt.method == "freeze"
    assert cfg.train.clip_grad_norm is None and cfg.train.early_stopping.patience == 5
    out = tmp_path / "resolved" / "config.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert cfg.to_dict()["train"]["early_stopping"]["metric"] == "loss"
    assert cfg.run_dir() == Path("out") / "demo"


def test_dict_source_is_not_modified():
    source = {"data": {"train": "a.csv"}, "train": {"lr": 0.1}}
    cfg = load_config(source, ["train.lr=0.2"])
    assert cfg.train.lr == 0.2
    assert source == {"data": {"train": "a.csv"}, "train": {"lr": 0.1}}


def test_overrides_change_values_nested_and_null(tmp_path):
    src = write(tmp_path, "data:\n  train: a.csv\ntrain:\n  lr: 0.1\n")
    cfg = load_config(
        src,
        ["train.lr=3e-5", "data.max_rows=300", "train.early_stopping=null", "model.dropout=0.1"],
    )
    assert cfg.train.lr == pytest.approx(3e-5)
    assert cfg.data.max_rows == 300
    assert cfg.train.early_stopping is None
    assert cfg.model.dropout == 0.1
    patched = load_config(src, ["train.early_stopping.patience=5"])
    assert patched.train.early_stopping == EarlyStoppingConfig(patience=5)


def test_override_reenables_section_that_file_set_to_null(tmp_path):
    src = write(tmp_path, "data: {train: a.csv}\ntrain:\n  early_stopping: null\n")
    assert load_config(src).train.early_stopping is None
    cfg = load_config(src, ["train.early_stopping.metric=loss"])
    assert cfg.train.early_stopping == EarlyStoppingConfig(metric="loss")


def test_exponent_without_dot_is_coerced_to_float(tmp_path):
    src = write(tmp_path, "data: {train: a.csv}\ntrain:\n  lr: 3e-4\n  weight_decay: 1\n")
    cfg = load_config(src)
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(3e-4)
    assert isinstance(cfg.train.weight_decay, float)


def test_unknown_key_names_line_and_suggests_close_key(tmp_path):
    src = write(
        tmp_path,
        """
        data:
          train: a.csv
        train:
          lrr: 3e-5
        """,
        name="x.yaml",
    )
    with pytest.raises(InputError) as exc:
        load_config(src)
    (message,) = problems(exc)
    assert f"{src}:4: train.lrr: unknown key" in message
    assert "did you mean 'train.lr'?" in message


def test_unknown_key_in_override_and_dict_name_their_origin():
    with pytest.raises(InputError) as exc:
        load_config({"data": {"train": "a.csv"}, "modle": {}}, ["train.epoch=3"])
    text = "\n".join(problems(exc))
    assert "<dict>: modle: unknown key (fix: did you mean 'model'?)" in text
    assert "override: train.epoch: unknown key (fix: did you mean 'train.epochs'?)" in text


def test_all_problems_reported_at_once(tmp_path):
    src = write(
        tmp_path,
        """
        data:
          train: a.csv
          val_fraction: 0.7
        model:
          max_length: 4
        train:
          lr: 0
          batch_size: 0
          epochs: 0
          warmup_ratio: 1.0
          weight_decay: -0.1
        """,
    )
    with pytest.raises(InputError) as exc:
        load_config(src)
    text = "\n".join(problems(exc))
    assert len(exc.value.problems) == 7
    for line, key in [(3, "data.val_fraction"), (5, "model.max_length"), (7, "train.lr"),
                      (8, "train.batch_size"), (9, "train.epochs"), (10, "train.warmup_ratio"),
                      (11, "train.weight_decay")]:  # fmt: skip
        assert f":{line}: {key}: must be" in text
    assert "train.lr: must be > 0.0, got 0" in text


def test_missing_train_file_is_required():
    with pytest.raises(InputError) as exc:
        load_config({"data": {"train": ""}})
    assert "data.train: required" in str(exc.value)
    with pytest.raises(InputError, match="data.train: required"):
        load_config({})
    with pytest.raises(InputError, match="data.train: required"):
        load_config(None, ["train.lr=0.1"])


def test_bad_choice_lists_valid_ones():
    with pytest.raises(InputError) as exc:
        load_config({"data": {"train": "a.csv"}, "adapt": {"method": "lorra"}})
    (message,) = problems(exc)
    assert "adapt.method: 'lorra' is not a valid choice" in message
    assert ", ".join(ADAPT_METHODS) in message
    assert "'lora'" in message


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.epochs=2.5", "train.epochs", "expected an integer, got 2.5"),
        ("train.epochs=true", "train.epochs", "expected an integer, got True"),
        ("train.lr=fast", "train.lr", "expected a number, got 'fast'"),
        ("model.trust_remote_code=1", "model.trust_remote_code", "expected true or false"),
        ("name=2024", "name", "expected a string, got 2024"),
        ("train=5", "train", "expected a mapping"),
        ("data=null", "data", "expected a mapping"),
        ("model.dropout=[1]", "model.dropout", "expected a number or null"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(override, key, expected):
    with pytest.raises(InputError) as exc:
        load_config({"data": {"train": "a.csv"}}, [override])
    assert f"override: {key}: {expected}" in str(exc.value)


def test_whole_floats_are_ints_and_nulls_fill_optional_fields():
    cfg = load_config({"data": {"train": "a.csv", "max_rows": None}, "train": {"epochs": 3.0}})
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.data.max_rows is None


def test_env_vars_expand_with_default_and_in_overrides(monkeypatch):
    monkeypatch.setenv("TW_DATA", "/mnt/d")
    monkeypatch.setenv("TW_STEPS", "40")
    monkeypatch.delenv("TW_MISSING", raising=False)
    cfg = load_config(
        {"data": {"train": "${TW_DATA}/train.csv", "test": "${TW_MISSING:-none}.csv"}},
        ["train.max_steps=${TW_STEPS}", "name=run-${TW_MISSING:-x}"],
    )
    assert cfg.data.train == "/mnt/d/train.csv"
    assert cfg.data.test == "none.csv"
    assert cfg.train.max_steps == 40
    assert cfg.name == "run-x"


def test_unset_env_var_is_an_error_naming_variable_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("TW_MISSING", raising=False)
    src = write(tmp_path, "data:\n  train: a.csv\nseed: ${TW_MISSING}\n")
    with pytest.raises(InputError) as exc:
        load_config(src)
    (message,) = problems(exc)
    assert ":3: seed: environment variable TW_MISSING is not set" in message


def test_data_dir_variable_defaults_to_data_dir(monkeypatch):
    monkeypatch.delenv("TUNEWISE_DATA_DIR", raising=False)
    cfg = load_config({"data": {"train": "${TUNEWISE_DATA_DIR}/banking77/train.csv"}})
    assert cfg.data.train == f"{sources.data_dir()}/banking77/train.csv"
    monkeypatch.setenv("TUNEWISE_DATA_DIR", "/elsewhere")
    cfg = load_config({"data": {"train": "${TUNEWISE_DATA_DIR}/t.csv"}})
    assert cfg.data.train == "/elsewhere/t.csv"


def test_bad_yaml_syntax_names_the_line(tmp_path):
    src = write(tmp_path, "data:\n  train: a.csv\ntrain:\n  lr: [1, 2\nseed: 1\n")
    with pytest.raises(InputError) as exc:
        load_config(src)
    (message,) = problems(exc)
    assert message.startswith(f"{src}:")
    assert "invalid YAML" in message
    assert exc.value.problems[0].line in (4, 5)


def test_missing_file_and_non_mapping_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="not a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_malformed_override_is_reported():
    with pytest.raises(InputError) as exc:
        load_config(
            {"data": {"train": "a.csv"}, "train": {"lr": 0.1}}, ["train.lr", "train.lr.x=1"]
        )
    text = str(exc.value)
    assert "override: train.lr: cannot read 'train.lr'" in text
    assert "train.lr is not a section" in text


def test_dataclass_constructors_do_no_checking():
    assert TrainConfig(lr=-1.0).lr == -1.0  # validation lives in the loader only


@pytest.mark.parametrize(
    "value,expected",
    [("2", 2), ("[0, 3]", [0, 3]), (r"'layer\.[01]\.'", r"layer\.[01]\."), ("'2'", 2)],
)
def test_a_union_field_takes_the_first_type_the_value_fits(value, expected):
    cfg = load_config({"data": {"train": "a.csv"}}, [f"adapt.freeze_layers={value}"])
    assert cfg.adapt.freeze_layers == expected


def test_a_union_field_names_every_accepted_type_when_none_fits():
    with pytest.raises(InputError) as exc:
        load_config({"data": {"train": "a.csv"}, "adapt": {"freeze_layers": [0, "x"]}})
    (message,) = problems(exc)
    assert "adapt.freeze_layers: expected an integer or a number or a list or a string" in message


def test_losses_lora_and_regularisation_keys_round_trip(tmp_path):
    cfg = load_config(
        {
            "data": {"train": "a.csv"},
            "model": {"attention_dropout": 0.2, "classifier_dropout": 0.3},
            "adapt": {
                "method": "lora",
                "lora": {"r": 4, "target_modules": ["query"]},
                "unfreeze_every": 2,
                "unfreeze_unit": "step",
                "layer_lr_decay": 0.8,
            },
            "train": {
                "loss": "focal",
                "grad_accum": 4,
                "loss_options": {"gamma": 1.5, "alpha": [1, 2], "label_smoothing": 0.1},
            },
        }
    )
    assert cfg.train.loss_options.alpha == [1.0, 2.0] and cfg.adapt.lora.r == 4
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    with pytest.raises(InputError) as exc:
        load_config(
            {
                "data": {"train": "a.csv"},
                "train": {"loss": "focall", "grad_accum": 0, "loss_options": {"gamma": -1}},
                "adapt": {"layer_lr_decay": 1.5},
            }
        )
    text = str(exc.value)
    assert "did you mean 'focal'" in text and "train.grad_accum: must be >= 1" in text
    assert "train.loss_options.gamma" in text and "adapt.layer_lr_decay" in text


def test_causal_lm_defaults_to_lora_unless_the_config_says_otherwise():
    base = {"task": "causal_lm", "name": "sft", "data": {"train": "chats.jsonl"}}
    assert load_config(base).adapt.method == "lora"
    assert load_config(base, ["adapt.method=full"]).adapt.method == "full"
    assert load_config({**base, "adapt": {"lora": {"r": 4}}}).adapt.lora.r == 4
    assert load_config({**base, "task": "classification"}).adapt.method == "freeze"  # the recipe


def test_a_minimal_classification_config_gets_the_recipe_and_other_tasks_do_not():
    from tunewise.config.schema import RECIPE

    cfg = load_config({"data": {"train": "t.csv"}})
    for key, value in RECIPE.items():
        section, name = key.split(".")
        got = getattr(getattr(cfg, section), name)
        assert got == (type(got)(**value) if isinstance(value, dict) else value), key
    mine = load_config({"data": {"train": "t.csv"}, "adapt": {"method": "full"}})
    assert mine.adapt.method == "full" and mine.adapt.head_init == "linear_probe"  # the rest stays
    lm = load_config({"task": "causal_lm", "data": {"train": "t.jsonl"}})
    assert lm.adapt.method == "lora" and lm.train.rdrop == 0 and lm.train.average_last is None
    assert lm.train.lr == 3e-4  # the recipe's learning rate is for its probe-started encoder
    ranking = load_config({"task": "ranking", "data": {"train": "t.jsonl"}})
    assert ranking.train.loss == "pairwise_ranking" and ranking.adapt.method == "full"
