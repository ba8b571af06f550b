"""R-Drop's two passes (training/rdrop.py): frozen lower layers run once, the batch doubles at the
first trainable block, and what comes out is what the stacked input gives."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from tests.conftest import tiny_bert
from tunewise.models.pooling import MeanPoolingBertConfig, MeanPoolingBertForSequenceClassification
from tunewise.training.losses import cross_entropy, rdrop_consistency
from tunewise.training.rdrop import twice, upper_blocks


def mean_bert():
    torch.manual_seed(0)
    config = MeanPoolingBertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=3,
    )  # fmt: skip
    return MeanPoolingBertForSequenceClassification(config)


def freeze_below(model, layer: int):
    for name, p in model.named_parameters():
        below = any(f"layer.{i}." in name for i in range(layer))
        p.requires_grad_(not ("embeddings" in name or below))
    return model


def padded_batch():
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0], [9, 8, 7, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def rows_seen(model, names):
    """How many rows each named module put out, in its first call."""
    seen: dict[str, int] = {}
    modules = dict(model.named_modules())

    def record(name, out):
        seen.setdefault(name, len(out if torch.is_tensor(out) else out[0]))

    for name in names:
        modules[name].register_forward_hook(lambda m, args, out, name=name: record(name, out))
    return seen


@pytest.mark.parametrize(
    "make, frozen", [(mean_bert, 2), (lambda: tiny_bert(num_labels=3, seed=1), 1)]
)
def test_shared_prefix_gives_the_stacked_logits_and_gradients(make, frozen):
    """Without dropout both ways compute the same function, mean pooling and padding included;
    the gradients of the trainable weights agree too."""
    batch, labels = padded_batch(), torch.tensor([0, 2, 1])
    results = []
    for shared in (True, False):
        model = freeze_below(make().eval(), frozen)
        if shared:
            assert len(upper_blocks(model)) == 1
            logits = twice(model, batch)
        else:
            logits = model(**{k: torch.cat([v, v]) for k, v in batch.items()}).logits
        loss = cross_entropy(logits, torch.cat([labels, labels])) + rdrop_consistency(logits)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((logits.detach(), grads))
    (logits, grads), (stacked, stacked_grads) = results
    assert logits.shape == (6, 3)
    torch.testing.assert_close(logits, stacked)
    torch.testing.assert_close(logits[:3], logits[3:])
    assert grads.keys() == stacked_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], stacked_grads[name], msg=name)


def test_frozen_layers_see_the_batch_once_and_trainable_ones_twice():
    model = freeze_below(mean_bert().train(), 2)
    seen = rows_seen(model, ["bert.embeddings", "bert.encoder.layer.1", "bert.encoder.layer.2"])
    inputs: list[torch.Tensor] = []
    model.bert.encoder.layer[2].attention.register_forward_pre_hook(
        lambda m, args, kwargs: inputs.append(args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True,
    )
    logits = twice(model, padded_batch())
    assert seen == {"bert.embeddings": 3, "bert.encoder.layer.1": 3, "bert.encoder.layer.2": 6}
    hidden = inputs[0]  # the frozen layers' output, dropout included, is the same for both copies
    torch.testing.assert_close(hidden[:3], hidden[3:])
    assert not torch.allclose(logits[:3], logits[3:])  # the trainable layer's masks differ


def test_the_input_is_stacked_when_sharing_does_not_apply():
    everything = mean_bert()
    head_only = freeze_below(mean_bert(), 3)  # every block frozen: only the head trains
    assert upper_blocks(everything) == [] and upper_blocks(head_only) == []
    seen = rows_seen(everything, ["bert.embeddings"])
    assert twice(everything, padded_batch()).shape == (6, 3) and seen["bert.embeddings"] == 6
    torch.manual_seed(0)
    llama = LlamaForSequenceClassification(
        LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, num_labels=3, pad_token_id=0)
    )  # fmt: skip
    llama.model.embed_tokens.weight.requires_grad_(False)
    assert upper_blocks(llama) == []  # causal: its head reads each row's last real token
    assert twice(llama, padded_batch()).shape == (6, 3)
