"""Dropout with hashed-counter masks: the same distribution as nn.Dropout, the same attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.conftest import tiny_bert
from tunewise.models.rand_dropout import (
    RandDropout,
    _lowbias32,
    attention,
    keep_mask,
    rand_dropout,
    softmax_padded,
    use_rand_dropout,
)


def test_rand_dropout_zeroes_a_fraction_p_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = rand_dropout(x, 0.1)
    assert abs((y == 0).float().mean().item() - 0.1) < 0.005
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.01
    module = RandDropout(0.1).eval()
    assert module(x) is x  # evaluation: the identity, like nn.Dropout


def lowbias32(x: int) -> int:
    """The reference hash on Python's unbounded ints, kept to 32 bits by hand."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_hash_matches_its_reference_bit_for_bit():
    """int32 tensors wrap their products and need masked shifts to hash like unsigned ints."""
    values = [0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1, 0x9E3779B9]
    signed = torch.tensor([v - 2**32 if v >= 2**31 else v for v in values], dtype=torch.int32)
    got = [v % 2**32 for v in _lowbias32(signed).tolist()]
    assert got == [lowbias32(v) for v in values]


def test_masks_follow_the_seed_and_are_independent_of_each_other():
    shape = torch.Size([100, 2001])  # odd: the last 32-bit word is half used
    torch.manual_seed(5)
    a, p = keep_mask(shape, 0.1, torch.device("cpu"))
    b, _ = keep_mask(shape, 0.1, torch.device("cpu"))
    torch.manual_seed(5)
    assert torch.equal(keep_mask(shape, 0.1, torch.device("cpu"))[0], a)
    assert p == round(0.1 * 65536) / 65536 and a.shape == shape
    flat_a, flat_b = a.flatten().float(), b.flatten().float()
    corr = lambda u, v: torch.corrcoef(torch.stack([u, v]))[0, 1].abs().item()  # noqa: E731
    assert corr(flat_a, flat_b) < 0.01  # one call and the next
    assert corr(flat_a[:-1], flat_a[1:]) < 0.01  # the two halves of each word, and neighbours
    assert abs(flat_a.mean().item() - 0.9) < 0.003


def test_rand_dropout_passes_gradients_through_the_kept_units_only():
    torch.manual_seed(1)
    x = torch.randn(64, 8, requires_grad=True)
    y = rand_dropout(x, 0.5)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert (x.grad[~kept] == 0).all()


def test_attention_with_nothing_dropped_equals_pytorch_sdpa_under_a_padding_mask():
    """p = 1e-12 drops nothing in practice, so the rand-dropout path must reproduce SDPA,
    including the boolean padding mask (True = attend) that transformers passes."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, :, :, 3:] = False  # the first row's last two tokens are padding
    module = torch.nn.Module()
    out, _ = attention(module, q, k, v, mask, dropout=1e-12, scaling=0.5)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5)
    torch.testing.assert_close(out, expected.transpose(1, 2))


def test_swapped_model_predicts_what_it_did_and_still_drops_in_training():
    model = tiny_bert(num_labels=3, seed=3).eval()
    ids = torch.randint(1000, 2000, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    before = model(input_ids=ids, attention_mask=mask).logits
    assert use_rand_dropout(model) == 8  # embeddings, 3 per layer (attention, 2 outputs), head
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    after = model(input_ids=ids, attention_mask=mask).logits  # padding still masked
    torch.testing.assert_close(after, before)
    model.train()
    torch.manual_seed(0)
    a = model(input_ids=ids, attention_mask=mask).logits
    b = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(a, b)


def test_padded_softmax_equals_softmax_at_every_row_length():
    torch.manual_seed(4)
    for n in (1, 5, 16, 17, 33):
        scores = torch.randn(2, 3, 4, n, dtype=torch.bfloat16, requires_grad=True)
        got = softmax_padded(scores)
        assert got.shape == scores.shape
        torch.testing.assert_close(got, torch.softmax(scores, -1))
        (grad,) = torch.autograd.grad((got * got.detach()).sum(), scores)
        (expected,) = torch.autograd.grad((torch.softmax(scores, -1) * got.detach()).sum(), scores)
        torch.testing.assert_close(grad, expected)


def test_bf16_attention_takes_the_plain_product_where_cpu_sdpa_is_slow(monkeypatch):
    """bf16 on CPU: the plain product (SDPA's CPU kernel is slower there), the same numbers;
    fp32 without dropout: SDPA itself."""
    import transformers.integrations.sdpa_attention as sdpa

    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 4:] = False
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5).transpose(1, 2)
    calls = []
    real = sdpa.sdpa_attention_forward
    monkeypatch.setattr(
        sdpa, "sdpa_attention_forward", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    bf16 = [t.bfloat16() for t in (q, k, v)]
    out, _ = attention(torch.nn.Module(), *bf16, mask, dropout=0.0, scaling=0.5)
    assert calls == [] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    out, _ = attention(torch.nn.Module(), q, k, v, mask, dropout=0.0, scaling=0.5)
    assert calls == [1]
    torch.testing.assert_close(out, expected)
