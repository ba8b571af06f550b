"""Packing: a packed batch must give the unpacked model's logits, example by example."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_bert
from tunewise.data.encode import Encoded, collate
from tunewise.training.packing import (
    block_mask,
    enable,
    first_fit_decreasing,
    pack_collate,
    packable,
    prepare,
)


def _data(lengths, seed=0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [[101, *torch.randint(1000, 2000, (n - 2,), generator=g).tolist(), 102] for n in lengths]
    return Encoded(ids, [i % 3 for i in range(len(lengths))], 0)


def test_first_fit_decreasing_fills_rows_without_overflow():
    lengths = [5, 3, 4, 2, 7, 1, 6]
    rows = first_fit_decreasing(lengths, 8)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 8 for r in rows)
    assert len(rows) == 4  # 28 tokens need at least 4 rows of 8


def test_pack_collate_layout():
    data = _data([4, 9, 3, 5])
    batch = pack_collate(data, [0, 1, 2, 3])
    width = batch["input_ids"].shape[1]
    assert width == 9
    flat = batch["input_ids"].flatten()
    for k, row in enumerate([0, 1, 2, 3]):
        s = int(batch["starts"][k])
        n = len(data.input_ids[row])
        assert flat[s : s + n].tolist() == data.input_ids[row]
        assert batch["position_ids"].flatten()[s : s + n].tolist() == list(range(n))
    real = int((batch["seq_ids"] >= 0).sum())
    assert real == sum(len(s) for s in data.input_ids)
    assert batch["labels"].tolist() == [0, 1, 2, 0]


def test_block_mask_isolates_examples():
    seq = torch.tensor([[0, 0, 1, 1, -1]])
    m = block_mask(seq, additive=False, dtype=torch.float32)[0, 0]
    assert m[0, 1] and not m[0, 2] and not m[2, 4] and m[4, 4]
    add = block_mask(seq, additive=True, dtype=torch.float32)[0, 0]
    assert add[0, 1] == 0 and add[0, 2] < -1e30


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked(attn):
    model = tiny_bert(num_labels=3)
    model.config._attn_implementation = attn
    model.eval()
    data = _data([5, 12, 3, 7, 20, 4, 9, 2, 16])
    rows = list(range(len(data)))
    packed = pack_collate(data, rows, width=24)
    assert packed["input_ids"].shape[0] < len(rows)  # several examples share a row
    with torch.no_grad():
        ref = model(**collate(data, rows)).logits
        enable(model)
        assert torch.equal(model(**collate(data, rows)).logits, ref)  # unpacked path unchanged
        out = model(**packed)
    assert torch.allclose(out.logits, ref, atol=1e-5), (out.logits - ref).abs().max()
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(ref, packed["labels"]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(**packed).logits.float()
    assert torch.allclose(low, ref, atol=5e-2)


def test_packed_gradients_equal_unpacked():
    model = tiny_bert(num_labels=3)
    model.eval()  # no dropout, so both paths compute the same function
    data = _data([6, 11, 3, 8, 2])
    rows = list(range(len(data)))
    model(**collate(data, rows)).loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    enable(model)(**pack_collate(data, rows)).loss.backward()
    for n, p in model.named_parameters():
        if n in ref:
            assert torch.allclose(p.grad, ref[n], atol=1e-5), n


def test_prepare_only_packs_when_asked_and_possible():
    from tunewise.config.schema import TrainConfig

    model = tiny_bert()
    assert packable(model)
    keys = list(model.state_dict())
    wrapped, fn, cfg = prepare(model, TrainConfig(packing=True))
    assert wrapped is model and fn is pack_collate and list(model.state_dict()) == keys
    assert cfg.group_by_length is False
    plain = tiny_bert()
    same, fn, cfg = prepare(plain, TrainConfig(packing=False))
    assert (
        same is plain
        and not getattr(plain, "_tunewise_packed", False)
        and fn is collate
        and cfg.group_by_length is True
    )
    _, fn, cfg = prepare(tiny_bert(), TrainConfig(packing=True, rdrop=1.0))
    assert fn is collate and cfg.group_by_length is True  # R-Drop stacks batches: not packed
    model.config.problem_type = "multi_label_classification"
    assert not packable(model)
