"""The recipe's ingredients: LP-FT head initialisation, checkpoint averaging, WiSE-FT, R-Drop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert, write_csv
from tunewise.config import load_config
from tunewise.core.errors import InputError
from tunewise.data.encode import collate, encode
from tunewise.evaluation.predict import predict_logits
from tunewise.models.features import head_layer
from tunewise.models.head_init import fit_probe, init_head_from_probe
from tunewise.models.load import load_tokenizer
from tunewise.training.averaging import (
    ALPHAS,
    CheckpointAverage,
    apply_average,
    interpolate_with_start,
)
from tunewise.training.loop import batch_loss
from tunewise.training.losses import cross_entropy, rdrop_consistency

WORDS = {
    "refund": "money back refund please",
    "card": "my card is lost stolen",
    "hello": "hello hi good morning",
}


def toy_encoded(n: int = 10):
    texts = [f"{t} {i}" for i in range(n) for t in WORDS.values()]
    labels = [j for _ in range(n) for j in range(len(WORDS))]
    return encode(load_tokenizer("minilm-l6"), texts, labels, 16)


def test_head_is_the_last_linear_with_one_output_per_label():
    model = tiny_bert(num_labels=3)
    assert head_layer(model) is model.classifier
    model.config.num_labels = 7
    with pytest.raises(ValueError, match="7 outputs"):
        head_layer(model)


def test_probe_head_predicts_exactly_what_the_probe_predicts():
    """The folded-back scaling is right: the model's own logits reproduce the probe's accuracy,
    and the probe beats the random head it replaces on the rows it was fitted on."""
    model, data = tiny_bert(num_labels=3, seed=1), toy_encoded()
    y = np.asarray(data.labels)
    before = (predict_logits(model, data)[0].argmax(1) == y).mean()
    record = init_head_from_probe(model, data, seed=0)
    after = (predict_logits(model, data)[0].argmax(1) == y).mean()
    assert record["method"] == "linear_probe"
    assert after == pytest.approx(record["train_accuracy"], abs=1 / len(y))
    assert after > before and after >= 0.8


def test_binary_probe_gives_softmax_logits_that_match_the_sigmoid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)
    w, b = fit_probe(x, y, 2, seed=0, c=1.0)
    logits = x @ w.T + b
    assert ((logits.argmax(1) == y).mean()) > 0.9
    assert w.shape == (2, 4) and np.allclose(w[0], -w[1])


def test_a_near_constant_feature_does_not_get_a_huge_probe_weight():
    # A pooled encoder has dimensions that barely vary (MiniLM-L6: std near 0). Scaling each
    # dimension to unit variance gave them weights over 1,000, whose gradients wrecked the head
    # in the first epoch; one global scale keeps the head's weights in the raw features' range.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)
    x[:, 7] = 1.0 + 1e-5 * rng.normal(size=300)  # near-constant
    w, b = fit_probe(x, y, 4, seed=0, c=1.0)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.9
    assert np.abs(w).max() < 20 and np.abs(w[:, 7]).max() < 1


def _set(model, value: float) -> None:
    with torch.no_grad():
        model.classifier.weight.fill_(value)


def test_average_is_the_mean_of_the_last_n_evaluations():
    model = tiny_bert()
    avg = CheckpointAverage(2)
    evaluate = avg.wrap(lambda m: {"accuracy": 0.0})
    for v in (1.0, 2.0, 4.0):  # the first falls out of the window
        _set(model, v)
        evaluate(model)
    mean = avg.average()["classifier.weight"]
    assert torch.allclose(mean, torch.full_like(mean, 3.0))
    assert set(avg.average()) == set(model.state_dict())  # every tensor, buffers included


@pytest.mark.parametrize(("score_of_average", "kept"), [(0.9, True), (0.5, False)])
def test_average_is_kept_only_when_validation_is_no_worse(score_of_average, kept):
    model = tiny_bert()
    avg = CheckpointAverage(3)
    for v in (1.0, 3.0):
        _set(model, v)
        avg.wrap(lambda m: {})(model)

    def evaluate(m):
        is_avg = torch.allclose(m.classifier.weight, torch.full_like(m.classifier.weight, 2.0))
        return {"accuracy": score_of_average if is_avg else 0.7}

    record = apply_average(model, avg, evaluate, "accuracy", current=0.7)
    assert record["kept"] is kept
    expected = 2.0 if kept else 3.0
    assert torch.allclose(
        model.classifier.weight, torch.full_like(model.classifier.weight, expected)
    )


@pytest.mark.parametrize(("peak", "alpha"), [(0.4, 0.4), (None, 1.0)])
def test_interpolation_keeps_the_best_mix_on_validation_or_the_trained_model(peak, alpha):
    model = tiny_bert()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _set(model, 1.0)
    start_point = {
        k: torch.zeros_like(v) if k == "classifier.weight" else v for k, v in start.items()
    }

    def evaluate(m):  # the classifier weight is alpha itself: score peaks at `peak`
        a = float(m.classifier.weight.detach().mean())
        return {"accuracy": 0.8 if peak is None else 0.8 + 0.1 - abs(a - peak)}

    record = interpolate_with_start(model, start_point, evaluate, "accuracy")
    assert record["alpha"] == alpha and set(record["by_alpha"]) == {str(a) for a in ALPHAS}
    expected = torch.full_like(model.classifier.weight, alpha)
    torch.testing.assert_close(model.classifier.weight, expected)


def test_config_accepts_the_options_and_rejects_bad_values():
    base = {"name": "x", "output_dir": "runs", "data": {"train": "t.csv"}}
    cfg = load_config(
        {**base, "adapt": {"head_init": "linear_probe"}, "train": {"average_last": 3}}
    )
    assert cfg.adapt.head_init == "linear_probe" and cfg.train.average_last == 3
    with pytest.raises(InputError, match="head_init"):
        load_config({**base, "adapt": {"head_init": "probe"}})
    with pytest.raises(InputError, match="average_last"):
        load_config({**base, "train": {"average_last": 1}})


def test_train_records_head_init_averaging_and_rdrop(tmp_path, tiny_model_dir):
    import tunewise

    rows = [(f"{t} {i}", lab) for i in range(12) for lab, t in WORDS.items()]
    config = {
        "name": "lpft",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": str(write_csv(tmp_path / "train.csv", rows)), "val_fraction": 0.25},
        "model": {"name": str(tiny_model_dir), "max_length": 16},
        "adapt": {"head_init": "linear_probe"},
        "train": {
            "epochs": 3,
            "batch_size": 8,
            "lr": 1e-3,
            "precision": "fp32",
            "average_last": 2,
            "interpolate_start": True,
            "rdrop": 0.5,
        },  # fmt: skip
        "eval": {"forgetting": []},
    }
    run_dir = tunewise.train(config)
    summary = json.loads((run_dir / "training.json").read_text())
    assert summary["head_init"]["method"] == "linear_probe"
    assert summary["averaging"]["evaluations"] == 2
    assert summary["regularization"]["average_last"] == 2
    assert {"average_last", "rdrop"} <= set(summary["regularization"]["active"])
    assert summary["regularization"]["rdrop"] == 0.5
    assert 0.0 < summary["interpolation"]["alpha"] <= 1.0
    assert set(summary["interpolation"]["by_alpha"]) == {str(a) for a in ALPHAS}


def test_rdrop_consistency_is_the_symmetric_kl_between_the_two_halves():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    q = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    kl = lambda a, b: (a * (a / b).log()).sum(-1).mean()  # noqa: E731
    stacked = torch.cat([p.log(), q.log()])
    expected = (kl(p, q) + kl(q, p)) / 2
    torch.testing.assert_close(rdrop_consistency(stacked), expected)
    assert rdrop_consistency(torch.cat([p.log(), p.log() + 3.0])).item() == pytest.approx(0.0)


def test_rdrop_adds_the_kl_of_two_dropout_passes_and_nothing_without_dropout():
    """Without dropout both copies agree, so the loss is plain cross-entropy; with dropout the
    two passes differ and the KL term makes the loss larger."""
    data = toy_encoded(4)
    batch = collate(data, list(range(8)))
    labels = batch["labels"]
    model = tiny_bert(num_labels=3, seed=2)
    model.eval()
    plain = cross_entropy(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, labels)
    torch.testing.assert_close(batch_loss(model, dict(batch), cross_entropy, rdrop=4.0), plain)
    model.train()
    with torch.no_grad():
        model.classifier.weight.mul_(100.0)  # confident logits, so dropout moves them visibly
    torch.manual_seed(0)  # the same masks twice: the difference is the KL term alone
    small = batch_loss(model, dict(batch), cross_entropy, rdrop=1e-6)
    torch.manual_seed(0)
    large = batch_loss(model, dict(batch), cross_entropy, rdrop=1.0 + 1e-6)
    assert large.item() - small.item() > 0.05
    base = {"name": "x", "output_dir": "runs", "data": {"train": "t.jsonl"}}
    with pytest.raises(InputError, match="train.rdrop.*causal_lm"):
        load_config({**base, "task": "causal_lm", "train": {"rdrop": 1.0}})
    with pytest.raises(InputError, match="train.rdrop.*ranking"):
        load_config({**base, "task": "ranking", "train": {"rdrop": 1.0}})
