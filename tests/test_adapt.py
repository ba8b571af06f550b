"""Adaptation invariants on tiny in-memory models: what each method may change, it alone changes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import tiny_bert
from tests.test_training import _toy_encoded, _train_cfg
from tunewise.config import ADAPT_METHODS
from tunewise.core.errors import InputError
from tunewise.models.adapt import METHODS, adapt, count_parameters, frozen_names
from tunewise.models.layers import depth, depths, num_layers
from tunewise.training.loop import fit
from tunewise.training.optim import build_optimizer
from tunewise.training.unfreeze import GradualUnfreezing


def _no_eval(m):
    return {"loss": 0.0, "accuracy": 0.0, "macro_f1": 0.0}


def _train(model: nn.Module, steps: int = 6, callbacks=(), **cfg) -> nn.Module:
    fit(
        model,
        _toy_encoded(),
        _no_eval,
        _train_cfg(max_steps=steps, **cfg),
        seed=0,
        callbacks=callbacks,
    )
    return model


def _changed(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_config_and_adapt_name_the_same_methods():
    assert ADAPT_METHODS == METHODS


def test_depths_put_embeddings_first_layers_in_order_and_head_on_top():
    names = [n for n, _ in tiny_bert().named_parameters()]
    assert num_layers(names) == 2
    assert depth("bert.embeddings.word_embeddings.weight", 2) == 0
    assert depth("bert.encoder.layer.1.output.dense.weight", 2) == 2
    assert depth("bert.pooler.dense.weight", 2) == depth("classifier.weight", 2) == 3
    wrapped = "base_model.model.classifier.modules_to_save.default.weight"
    assert depth(wrapped, 2) == 3 and depth("base_model.model.bert.encoder.layer.0.x.y", 2) == 1


def test_bitfit_training_changes_only_biases_and_the_head():
    model = adapt(tiny_bert(), "bitfit")
    before = _snapshot(model)
    changed = _changed(before, _train(model, lr=1e-2, weight_decay=0.1))
    assert changed and all(k.endswith(".bias") or k.startswith("classifier.") for k in changed)
    assert "classifier.weight" in changed
    assert any(k.startswith("bert.encoder.") for k in changed)  # biases inside did train


def test_frozen_token_embeddings_stay_bitwise_while_positions_and_layers_train():
    model = adapt(tiny_bert(), "full", freeze_token_embeddings=True)
    before = _snapshot(model)
    changed = _changed(before, _train(model, lr=1e-2, weight_decay=0.1))
    assert "bert.embeddings.word_embeddings.weight" not in changed
    assert "bert.embeddings.position_embeddings.weight" in changed
    assert any(k.startswith("bert.encoder.layer.0.") for k in changed)
    assert (
        count_parameters(model)["trainable"]
        == count_parameters(adapt(tiny_bert(), "full"))["trainable"]
        - model.get_input_embeddings().weight.numel()
    )


@pytest.mark.parametrize(
    "spec,frozen_prefixes,trained_prefix",
    [
        (1, ("bert.embeddings.", "bert.encoder.layer.0."), "bert.encoder.layer.1."),
        ([1], ("bert.embeddings.", "bert.encoder.layer.1."), "bert.encoder.layer.0."),
        (r"layer\.0\.attention", ("bert.encoder.layer.0.attention.",), "bert.embeddings."),
    ],
)
def test_frozen_layers_are_bitwise_unchanged_after_training(spec, frozen_prefixes, trained_prefix):
    model = adapt(tiny_bert(), "freeze", freeze_layers=spec)
    before = _snapshot(model)
    changed = _changed(before, _train(model, lr=1e-2, weight_decay=0.1))
    params = {n for n, _ in model.named_parameters()}
    frozen = {k for k in params if k.startswith(frozen_prefixes)}
    assert frozen and not frozen & changed
    assert any(k.startswith(trained_prefix) for k in changed) and "classifier.weight" in changed


@pytest.mark.parametrize(
    "spec,message",
    [
        (3, "outside the model's 2 layers"),
        ([0, 5], "outside"),
        ("(", "invalid regex"),
        ("no_such_param", "matches no parameter"),
        (-1, "outside"),
    ],
)
def test_bad_freeze_specs_are_input_errors(spec, message):
    with pytest.raises(InputError, match=message):
        frozen_names([n for n, _ in tiny_bert().named_parameters()], spec)


def test_freeze_never_freezes_the_head():
    frozen = frozen_names([n for n, _ in tiny_bert().named_parameters()], "weight")
    assert "classifier.weight" not in frozen and "bert.pooler.dense.weight" in frozen


def test_unknown_method_is_an_input_error():
    with pytest.raises(InputError, match="adapter"):
        adapt(tiny_bert(), "adapter")


def test_layer_lr_decay_scales_each_layer_below_the_top():
    model = tiny_bert()
    opt = build_optimizer(model, lr=1.0, weight_decay=0.0, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    d = depths(model)
    for name, param in named.items():
        assert lr_of[id(param)] == pytest.approx(0.5 ** (3 - d[name])), name
    assert opt.param_groups[0]["lr"] == 1.0  # the head's group first: it is the lr logged


def test_gradual_unfreezing_trains_the_top_first_then_one_more_layer_per_stage():
    model = tiny_bert()
    before = _snapshot(model)
    unfreeze = GradualUnfreezing(every=2, unit="step")
    _train(model, steps=2, callbacks=[unfreeze], lr=1e-2)
    changed = _changed(before, model)
    assert changed and all(k.startswith(("classifier.", "bert.pooler.")) for k in changed)
    model2 = tiny_bert()
    before2 = _snapshot(model2)
    unfreeze2 = GradualUnfreezing(every=2, unit="step")
    _train(model2, steps=4, callbacks=[unfreeze2], lr=1e-2)
    changed = _changed(before2, model2)
    assert any(".layer.1." in k for k in changed) and not any(".layer.0." in k for k in changed)
    assert not any("embeddings" in k for k in changed)
    assert [s["stage"] for s in unfreeze2.log_] == [0, 1]


def test_gradual_unfreezing_eventually_trains_everything_the_method_allows():
    model = adapt(tiny_bert(), "bitfit")
    before = _snapshot(model)
    _train(model, steps=8, callbacks=[GradualUnfreezing(every=2, unit="step")], lr=1e-2)
    changed = _changed(before, model)
    assert "bert.embeddings.LayerNorm.bias" in changed
    assert all(k.endswith(".bias") or k.startswith("classifier.") for k in changed)


def _lora_model():
    return adapt(tiny_bert(), "lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})


def test_lora_trains_only_adapters_and_the_head():
    model = _lora_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".modules_to_save." in n for n in trainable)
    assert any("classifier.modules_to_save" in n for n in trainable)
    counts = count_parameters(model)
    assert counts["trainable"] == 2 * 2 * (4 * 16 + 16 * 4) + 3 * 16 + 3
    assert counts["total"] == count_parameters(tiny_bert())["total"] + 2 * 2 * 2 * 4 * 16


def test_lora_target_modules_are_configurable_and_bad_ones_named():
    model = adapt(tiny_bert(), "lora", lora={"r": 2, "target_modules": ["key"]})
    assert any(".key.lora_A." in n for n, _ in model.named_parameters())
    with pytest.raises(InputError, match="target_modules") as exc:
        adapt(tiny_bert(), "lora", lora={"target_modules": ["nope"]})
    assert "query" in str(exc.value)  # the fix lists Linear layers to choose from


def test_lora_merged_equals_unmerged_and_reloads_identically(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from tunewise.models.lora import save_adapter_and_merge

    model = _lora_model()
    _train(model, steps=6, lr=1e-2)
    model.eval()
    batch = {
        "input_ids": torch.tensor([[101, 1000, 2000, 3005, 102], [101, 1001, 102, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    }
    with torch.no_grad():
        unmerged = model(**batch).logits
        assert unmerged.abs().max() > 0
        merged_model = save_adapter_and_merge(model, tmp_path / "adapter")
        merged = merged_model(**batch).logits
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not any("lora_" in n for n, _ in merged_model.named_parameters())
    merged_model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (
        "classifier"
        in json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["modules_to_save"]
    )
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    readapted = PeftModel.from_pretrained(tiny_bert(), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, unmerged, atol=1e-5)
        assert torch.allclose(readapted(**batch).logits, unmerged, atol=1e-5)
