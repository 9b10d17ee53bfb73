"""AdaptiveSpan and adaptive_span_attention against float64 loops; the copy task it trains on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from attention_book.variants import (
    AdaptiveSpan,
    CopyTaskData,
    SpanModel,
    adaptive_span_attention,
    copy_task_data,
    train_adaptive_span,
)


def reference_mask(spans: list[float], ramp: int, num_queries: int, num_keys: int) -> Tensor:
    """m(d) = clamp((ramp + z - d) / ramp, 0, 1), one entry at a time, in float64."""
    mask = torch.empty(len(spans), num_queries, num_keys, dtype=torch.float64)
    for h, z in enumerate(spans):
        for i in range(num_queries):
            for j in range(num_keys):
                d = (num_keys - num_queries + i) - j
                mask[h, i, j] = min(1.0, max(0.0, (ramp + z - d) / ramp))
    return mask


def reference_forward(weights: Tensor, mask: Tensor) -> Tensor:
    """Multiply each row by the mask and renormalise it, row by row (zeros if nothing is left)."""
    out = torch.zeros_like(weights)
    for n in range(weights.shape[0]):
        for h in range(weights.shape[1]):
            for i in range(weights.shape[2]):
                row = weights[n, h, i] * mask[h, i]
                total = float(row.sum())
                if total > 0:
                    out[n, h, i] = row / total
    return out


def causal_weights(num: int, heads: int, num_queries: int, num_keys: int) -> Tensor:
    """Random softmax weights, causal and bottom-right aligned, in float64."""
    scores = torch.randn(num, heads, num_queries, num_keys, dtype=torch.float64)
    query_pos = torch.arange(num_keys - num_queries, num_keys)[:, None]
    allowed = torch.arange(num_keys)[None, :] <= query_pos  # (L, S)
    return torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)


def module(spans: list[float], max_span: int, ramp: int) -> AdaptiveSpan:
    adaptive = AdaptiveSpan(len(spans), max_span, ramp=ramp).double()
    with torch.no_grad():
        adaptive.span.copy_(torch.tensor(spans, dtype=torch.float64) / max_span)
    return adaptive


# --- AdaptiveSpan ---


def test_init_and_spans() -> None:
    adaptive = AdaptiveSpan(3, 40, init=0.25)
    assert adaptive.span.shape == (3,)
    assert adaptive.span.requires_grad
    torch.testing.assert_close(adaptive.span.detach(), torch.full((3,), 0.25))
    torch.testing.assert_close(adaptive.spans().detach(), torch.full((3,), 10.0))
    assert adaptive.ramp == 32  # the default of the spec
    assert "num_heads=3, max_span=40, ramp=32" in repr(adaptive)


@pytest.mark.parametrize(
    ("spans", "max_span", "ramp", "num_queries", "num_keys"),
    [
        ([2.3, 5.7], 10, 3, 5, 5),
        ([0.0], 13, 1, 1, 13),
        ([0.0, 13.0, 6.5], 13, 4, 7, 13),
        ([1.5], 5, 2, 7, 5),  # more queries than keys
        ([7.0, 1.0], 7, 5, 13, 13),
    ],
)
def test_mask_matches_the_formula(
    spans: list[float], max_span: int, ramp: int, num_queries: int, num_keys: int
) -> None:
    adaptive = module(spans, max_span, ramp)
    expected = reference_mask(spans, ramp, num_queries, num_keys)
    torch.testing.assert_close(adaptive.mask(num_queries, num_keys), expected)


@pytest.mark.parametrize(
    ("num", "spans", "max_span", "ramp", "num_queries", "num_keys"),
    [
        (2, [2.3, 5.7], 10, 3, 5, 5),
        (1, [0.0], 13, 1, 1, 13),
        (3, [0.0, 13.0, 6.5], 13, 4, 7, 13),
        (2, [11.2], 20, 2, 5, 9),
        (1, [0.4, 3.3], 97, 2, 13, 97),
    ],
)
def test_forward_matches_a_float64_loop(
    num: int, spans: list[float], max_span: int, ramp: int, num_queries: int, num_keys: int
) -> None:
    adaptive = module(spans, max_span, ramp)
    weights = causal_weights(num, len(spans), num_queries, num_keys)
    before = weights.clone()
    out = adaptive(weights)
    expected = reference_forward(weights, reference_mask(spans, ramp, num_queries, num_keys))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(dim=-1), torch.ones(num, len(spans), num_queries).double())
    assert torch.equal(weights, before)  # the input is not modified


def test_weights_beyond_the_span_are_exactly_zero() -> None:
    adaptive = module([3.0], 16, 2)  # m(d) > 0 for d < 5
    out = adaptive(causal_weights(1, 1, 1, 16))[0, 0, 0]  # one query at position 15
    assert torch.all(out[: 16 - 5] == 0)
    assert torch.all(out[16 - 5 :] > 0)


def test_a_row_with_nothing_left_is_zeros_with_finite_gradients() -> None:
    adaptive = module([1.0], 10, 1)  # m(d) = 0 for d >= 2
    weights = torch.zeros(1, 1, 2, 6, dtype=torch.float64)
    weights[0, 0, 0, 0] = 1.0  # query 0 (position 4) only looks 4 back: masked away
    weights[0, 0, 1, 5] = 1.0  # query 1 (position 5) looks at itself
    weights.requires_grad_(True)
    out = adaptive(weights)
    expected = torch.zeros(1, 1, 2, 6, dtype=torch.float64)
    expected[0, 0, 1, 5] = 1.0
    torch.testing.assert_close(out, expected)
    torch.autograd.backward(out.sum())
    assert weights.grad is not None
    assert torch.isfinite(weights.grad).all()
    assert adaptive.span.grad is not None
    assert torch.isfinite(adaptive.span.grad).all()


def test_future_keys_pass_through_unmasked() -> None:
    # the documented choice: m(d) = 1 for d < 0; causal weights are 0 there anyway
    adaptive = module([0.0], 4, 2)
    mask = adaptive.mask(3, 3)[0]  # (L, S), L == S: the upper triangle is the future
    assert torch.all(mask.triu(diagonal=1)[torch.ones(3, 3).triu(1).bool()] == 1)
    weights = torch.full((1, 1, 3, 3), 1 / 3, dtype=torch.float64)  # not causal
    torch.testing.assert_close(adaptive(weights)[0, 0, 0], torch.full((3,), 1 / 3).double())


def test_gradients_reach_the_span_gradcheck() -> None:
    adaptive = module([2.3, 5.7], 10, 3)  # no distance sits on a kink of the clamp
    weights = causal_weights(2, 2, 5, 8).requires_grad_(True)

    def forward(weights: Tensor, span: Tensor) -> Tensor:
        out: Tensor = torch.func.functional_call(adaptive, {"span": span}, (weights,))
        return out

    span = adaptive.span.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(forward, (weights, span))
    out = adaptive(weights)
    torch.autograd.backward((out * torch.randn_like(out)).sum())
    assert adaptive.span.grad is not None
    assert torch.all(adaptive.span.grad != 0)


def test_span_loss_and_clamp() -> None:
    adaptive = AdaptiveSpan(2, 20, init=0.5)
    with torch.no_grad():
        adaptive.span.copy_(torch.tensor([-0.3, 1.4]))
    torch.testing.assert_close(adaptive.span_loss(), torch.tensor(20 * 0.55))
    adaptive.clamp_()
    torch.testing.assert_close(adaptive.span.detach(), torch.tensor([0.0, 1.0]))
    assert adaptive.span.requires_grad  # still a parameter to train
    torch.autograd.backward(adaptive.span_loss())
    torch.testing.assert_close(adaptive.span.grad, torch.tensor([10.0, 10.0]))


@pytest.mark.parametrize(("spans", "ramp"), [([2.3, 5.7], 3), ([4.0], 2), ([0.0, 0.0], 1)])
def test_keys_needed_is_the_reach_of_the_longest_span(spans: list[float], ramp: int) -> None:
    adaptive = module(spans, 10, ramp)
    keys = adaptive.keys_needed()
    assert keys == math.ceil(max(spans) + ramp)
    mask = adaptive.mask(1, 30)[:, 0]  # (H, S): distances 29 .. 0
    assert torch.all(mask[:, : 30 - keys] == 0)  # every key before the last `keys` is dead
    assert torch.any(mask[:, 30 - keys] > 0)  # the oldest key kept is alive for some head
    assert adaptive.keys_needed(5) == keys + 4


def test_moves_with_to() -> None:
    adaptive = AdaptiveSpan(2, 8)
    moved = adaptive.to("meta")
    assert all(t.device.type == "meta" for t in moved.parameters())
    doubled = AdaptiveSpan(2, 8).to(torch.float64)
    assert doubled.span.dtype == torch.float64
    weights = causal_weights(1, 2, 3, 3)
    assert doubled(weights).dtype == torch.float64
    assert AdaptiveSpan(2, 8)(weights.float()).dtype == torch.float32


# --- adaptive_span_attention ---


def reference_attention(
    query: Tensor, key: Tensor, value: Tensor, spans: list[float], ramp: int
) -> Tensor:
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    allowed = (
        torch.arange(num_keys)[None, :] <= torch.arange(num_keys - num_queries, num_keys)[:, None]
    )
    masked = scores.exp() * allowed * reference_mask(spans, ramp, num_queries, num_keys)
    return masked / masked.sum(dim=-1, keepdim=True) @ value


@pytest.mark.parametrize(
    ("spans", "ramp", "num_queries", "num_keys"),
    [
        ([2.3, 5.7], 3, 1, 40),
        ([0.0, 1.0], 1, 5, 7),
        ([12.5, 3.0], 4, 13, 13),
        ([9.0, 9.0], 2, 7, 97),
    ],
)
def test_trimmed_equals_full_equals_reference(
    spans: list[float], ramp: int, num_queries: int, num_keys: int
) -> None:
    adaptive = module(spans, 20, ramp)
    query = torch.randn(2, 2, num_queries, 5, dtype=torch.float64)
    key = torch.randn(2, 2, num_keys, 5, dtype=torch.float64)
    value = torch.randn(2, 2, num_keys, 3, dtype=torch.float64)
    full = adaptive_span_attention(query, key, value, adaptive, trim=False)
    trimmed = adaptive_span_attention(query, key, value, adaptive)
    assert full.weights is not None
    assert trimmed.weights is not None
    kept = min(num_keys, adaptive.keys_needed(num_queries))
    assert full.weights.shape == (2, 2, num_queries, num_keys)
    assert trimmed.weights.shape == (2, 2, num_queries, kept)
    expected = reference_attention(query, key, value, spans, ramp)
    torch.testing.assert_close(full.output, expected)
    torch.testing.assert_close(trimmed.output, expected)
    torch.testing.assert_close(trimmed.weights, full.weights[..., num_keys - kept :])
    assert torch.all(full.weights[..., : num_keys - kept] == 0)  # what trimming skips


def test_attention_scale_and_gradients() -> None:
    adaptive = module([2.3, 5.7], 10, 3)
    query = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    key = torch.randn(1, 2, 9, 4, dtype=torch.float64, requires_grad=True)
    value = torch.randn(1, 2, 9, 2, dtype=torch.float64, requires_grad=True)
    out = adaptive_span_attention(query, key, value, adaptive, scale=0.5)
    expected = reference_attention(query * 0.5 * 2, key, value, [2.3, 5.7], 3)  # scale 1/sqrt(4)
    torch.testing.assert_close(out.output, expected)
    assert torch.autograd.gradcheck(
        lambda q, k, v: adaptive_span_attention(q, k, v, adaptive).output, (query, key, value)
    )


# --- errors ---


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: AdaptiveSpan(2, 8, ramp=0), ValueError, "ramp must be at least 1; got 0"),
        (lambda: AdaptiveSpan(2, 0), ValueError, "max_span must be at least 1; got 0"),
        (lambda: AdaptiveSpan(0, 8), ValueError, "num_heads must be at least 1; got 0"),
        (lambda: AdaptiveSpan(2, 8, init=1.5), ValueError, r"init must lie in \[0, 1\]; got 1.5"),
        (lambda: AdaptiveSpan(2, 8, init=-0.1), ValueError, r"init must lie in \[0, 1\]; got -0.1"),
        (
            lambda: AdaptiveSpan(2, 8, init="a"),  # type: ignore[arg-type]
            TypeError,
            "init must be a number; got str",
        ),
        (
            lambda: AdaptiveSpan(2, 8.0),  # type: ignore[arg-type]
            TypeError,
            "max_span must be an int; got float",
        ),
        (
            lambda: AdaptiveSpan(2, 8)(torch.rand(2, 5, 5)),
            ValueError,
            r"weights must have 4 dims \(N, H, L, S\); got shape \(2, 5, 5\)",
        ),
        (
            lambda: AdaptiveSpan(2, 8)(torch.rand(1, 3, 5, 5)),
            ValueError,
            r"weights must have H = 2 heads \(N, H, L, S\); got shape \(1, 3, 5, 5\)",
        ),
        (
            lambda: AdaptiveSpan(2, 8)(torch.ones(1, 2, 5, 5, dtype=torch.int64)),
            TypeError,
            "weights must be a floating-point tensor",
        ),
        (
            lambda: adaptive_span_attention(
                torch.rand(1, 3, 2, 4),
                torch.rand(1, 3, 5, 4),
                torch.rand(1, 3, 5, 4),
                AdaptiveSpan(2, 8),
            ),
            ValueError,
            r"query must have H = 2 heads \(N, H, L, E\); got shape \(1, 3, 2, 4\)",
        ),
        (
            lambda: adaptive_span_attention(
                torch.rand(2, 2, 4), torch.rand(2, 5, 4), torch.rand(2, 5, 4), AdaptiveSpan(2, 8)
            ),
            ValueError,
            r"query must have 4 dims \(N, H, L, E\); got shape \(2, 2, 4\)",
        ),
        (
            lambda: adaptive_span_attention(
                torch.rand(1, 2, 2, 4),
                torch.rand(1, 2, 5, 4),
                torch.rand(1, 2, 5, 4),
                8,  # type: ignore[arg-type]
            ),
            TypeError,
            "adaptive_span must be an AdaptiveSpan; got int",
        ),
        (
            lambda: AdaptiveSpan(2, 8).mask(0, 3),
            ValueError,
            "num_queries must be at least 1; got 0",
        ),
    ],
)
def test_errors(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]


# --- the copy task ---


def test_copy_task_data() -> None:
    data = copy_task_data(13, seq_len=15, lags=(1, 4, 12), vocab_size=5, seed=3)
    assert isinstance(data, CopyTaskData)
    assert data.tokens.shape == (13, 15)
    assert data.tokens.dtype == torch.int64
    assert data.targets.shape == (13, 15, 3)
    assert int(data.tokens.min()) >= 0
    assert int(data.tokens.max()) < 5
    for h, lag in enumerate((1, 4, 12)):
        assert torch.all(data.targets[:, :lag, h] == -100)
        assert torch.equal(data.targets[:, lag:, h], data.tokens[:, :-lag])
    again = copy_task_data(13, seq_len=15, lags=(1, 4, 12), vocab_size=5, seed=3)
    assert torch.equal(again.tokens, data.tokens)
    assert not torch.equal(copy_task_data(13, seq_len=15, seed=4).tokens, data.tokens)


def test_span_model_weights() -> None:
    model = SpanModel(vocab_size=6, num_heads=2, max_span=5, ramp=2, init=1.0)
    out = model(torch.randint(6, (3, 9)))
    assert out.logits.shape == (3, 9, 2, 6)
    weights = out.weights
    assert weights.shape == (3, 2, 9, 9)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, 2, 9))
    distance = torch.arange(9)[:, None] - torch.arange(9)[None, :]
    assert torch.all(weights[..., (distance < 0) | (distance >= 5)] == 0)  # future, too far
    assert all(t.device.type == "meta" for t in model.to("meta").parameters())


def test_training_makes_the_spans_diverge() -> None:
    state = torch.random.get_rng_state()
    result = train_adaptive_span(copy_task_data(256), steps=150)
    assert torch.equal(torch.random.get_rng_state(), state)  # global state untouched
    assert result.spans.shape == (151, 2)
    torch.testing.assert_close(result.spans[0], torch.tensor([16.0, 16.0]))
    short, long = result.spans[-1].tolist()
    assert short < 1.0  # copying from 1 back needs no span
    assert long > 12 - 4  # copying from 12 back needs m(12) > 0: z > 12 - ramp
    assert result.accuracy == [1.0, 1.0]
    assert len(result.losses) == 150
    assert result.losses[-1] < 0.1 * result.losses[0]
    again = train_adaptive_span(copy_task_data(256), steps=10)
    assert torch.equal(again.spans, result.spans[:11])  # reproducible


def test_without_the_penalty_the_long_span_stays_longer() -> None:
    data = copy_task_data(128)
    free = train_adaptive_span(data, steps=150, span_loss_weight=0.0)
    pressed = train_adaptive_span(data, steps=150, span_loss_weight=0.1)
    assert float(pressed.spans[-1, 1]) < float(free.spans[-1, 1])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: copy_task_data(0), ValueError, "num_samples must be at least 1; got 0"),
        (lambda: copy_task_data(4, lags=()), ValueError, r"lags must name at least one distance"),
        (lambda: copy_task_data(4, lags=(0, 2)), ValueError, "lags must be at least 1; got 0"),
        (
            lambda: copy_task_data(4, seq_len=8, lags=(1, 8)),
            ValueError,
            r"lags must be below seq_len = 8; got \(1, 8\)",
        ),
        (lambda: copy_task_data(4, vocab_size=1), ValueError, "vocab_size must be at least 2"),
        (
            lambda: train_adaptive_span("data"),  # type: ignore[arg-type]
            TypeError,
            "data must be a CopyTaskData; got str",
        ),
        (
            lambda: train_adaptive_span(copy_task_data(8), max_span=12),
            ValueError,
            r"max_span must exceed every lag of data, \(1, 12\); got 12",
        ),
        (
            lambda: train_adaptive_span(copy_task_data(8), span_loss_weight=-1.0),
            ValueError,
            "span_loss_weight must be at least 0; got -1.0",
        ),
        (
            lambda: train_adaptive_span(copy_task_data(8), span_loss_weight=True),
            TypeError,
            "span_loss_weight must be a number; got bool",
        ),
        (lambda: train_adaptive_span(copy_task_data(8), lr=0.0), ValueError, "lr must be positive"),
        (lambda: train_adaptive_span(copy_task_data(8), steps=0), ValueError, "steps must be at"),
        (
            lambda: train_adaptive_span(copy_task_data(2), test_fraction=0.1),
            ValueError,
            (
                r"test_fraction must leave at least one training and one test sequence of N = 2; "
                r"got 0.1 \(0 test sequences\)"
            ),
        ),
        (
            lambda: train_adaptive_span(copy_task_data(8), test_fraction=None),  # type: ignore[arg-type]
            TypeError,
            "test_fraction must be a number; got NoneType",
        ),
        (
            lambda: SpanModel(4, 2, 8)(torch.full((2, 5), 4)),
            ValueError,
            r"tokens must hold token ids in \[0, vocab_size\) = \[0, 4\); got values from 4 to 4",
        ),
    ],
)
def test_task_errors(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]
