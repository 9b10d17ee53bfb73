"""scaled_dot_product_attention and DotProductAttention against PyTorch's own function."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from attention_book import AttentionOutput, DotProductAttention, scaled_dot_product_attention

FAST = settings(max_examples=40, deadline=None)


def reference(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """PyTorch's function; is_causal is ANDed into an explicit mask, empty rows give zeros."""
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    if is_causal and mask is not None:
        mask = mask & torch.ones(num_queries, num_keys, dtype=torch.bool).tril()
        is_causal = False
    expected = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=is_causal, scale=scale
    )
    if mask is not None:
        expected = torch.where(mask.any(-1, keepdim=True), expected, 0.0)
    return expected


@dataclass(frozen=True)
class Case:
    """One random attention problem."""

    batch: tuple[int, ...]
    num_queries: int
    num_keys: int
    features: int
    value_features: int
    mask_shape: tuple[int, ...] | None
    is_causal: bool
    scale: float | None
    seed: int

    def inputs(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        generator = torch.Generator().manual_seed(self.seed)
        batch = self.batch
        query = torch.randn(
            *batch, self.num_queries, self.features, generator=generator, dtype=dtype
        )
        key = torch.randn(*batch, self.num_keys, self.features, generator=generator, dtype=dtype)
        value = torch.randn(
            *batch, self.num_keys, self.value_features, generator=generator, dtype=dtype
        )
        mask = None
        if self.mask_shape is not None:
            mask = torch.rand(self.mask_shape, generator=generator) < 0.7
        return query, key, value, mask


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Random shapes with extra batch dims, L != S, E != Ev, broadcast masks, odd sizes."""
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    num_queries, num_keys = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    mask_shape = None
    if draw(st.booleans()):
        # Each dim of the scores is kept or set to 1; leading dims may also be dropped.
        kept = [size if draw(st.booleans()) else 1 for size in (*batch, num_queries, num_keys)]
        mask_shape = tuple(kept[draw(st.integers(0, len(batch))) :])
    return Case(
        batch=batch,
        num_queries=num_queries,
        num_keys=num_keys,
        features=draw(st.integers(1, 5)),
        value_features=draw(st.integers(1, 5)),
        mask_shape=mask_shape,
        is_causal=draw(st.booleans()),
        scale=draw(st.one_of(st.none(), st.floats(0.1, 2.0))),
        seed=draw(st.integers(0, 2**16)),
    )


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@FAST
@given(case=cases())
def test_matches_pytorch(case: Case, dtype: torch.dtype, need_weights: bool) -> None:
    query, key, value, mask = case.inputs(dtype)
    result = scaled_dot_product_attention(
        query,
        key,
        value,
        mask,
        is_causal=case.is_causal,
        scale=case.scale,
        need_weights=need_weights,
    )
    expected = reference(query, key, value, mask, is_causal=case.is_causal, scale=case.scale)
    torch.testing.assert_close(result.output, expected)
    if need_weights:
        assert result.weights is not None
        assert result.weights.shape == (*expected.shape[:-1], key.shape[-2])
        torch.testing.assert_close(result.output, result.weights @ value)
    else:
        assert result.weights is None


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize(("num_queries", "num_keys"), [(3, 5), (5, 3), (4, 4), (1, 7)])
def test_is_causal_matches_pytorch_when_l_differs_from_s(
    num_queries: int, num_keys: int, need_weights: bool
) -> None:
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 3, num_queries, 4, generator=generator, dtype=torch.float64)
    key = torch.randn(2, 3, num_keys, 4, generator=generator, dtype=torch.float64)
    value = torch.randn(2, 3, num_keys, 6, generator=generator, dtype=torch.float64)
    ours = scaled_dot_product_attention(
        query, key, value, is_causal=True, need_weights=need_weights
    )
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True)
    torch.testing.assert_close(ours.output, expected)


@pytest.mark.parametrize("need_weights", [True, False])
def test_is_causal_and_mask_and_valid_lens_combine_by_and(need_weights: bool) -> None:
    generator = torch.Generator().manual_seed(2)
    query = torch.randn(2, 4, 5, 3, generator=generator, dtype=torch.float64)  # (N, H, L, E)
    key = torch.randn(2, 4, 6, 3, generator=generator, dtype=torch.float64)
    value = torch.randn(2, 4, 6, 2, generator=generator, dtype=torch.float64)
    mask = torch.rand(2, 1, 5, 6, generator=generator) < 0.8
    valid_lens = torch.tensor([6, 2])
    lens_mask = (torch.arange(6) < valid_lens[:, None]).reshape(2, 1, 1, 6)
    causal = torch.ones(5, 6, dtype=torch.bool).tril()
    ours = scaled_dot_product_attention(
        query,
        key,
        value,
        mask,
        valid_lens=valid_lens,
        is_causal=True,
        need_weights=need_weights,
    )
    expected = reference(query, key, value, mask & lens_mask & causal)
    torch.testing.assert_close(ours.output, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("need_weights", [True, False])
def test_valid_lens_per_query_broadcasts_over_heads(need_weights: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(3, 2, 4, 5, generator=generator)  # (N, H, L, E)
    key = torch.randn(3, 2, 6, 5, generator=generator)
    value = torch.randn(3, 2, 6, 7, generator=generator)
    valid_lens = torch.tensor([[1, 2, 3, 4], [6, 6, 0, 1], [0, 0, 0, 0]])  # (N, L)
    mask = (torch.arange(6) < valid_lens[..., None])[:, None]  # (N, 1, L, S)
    ours = scaled_dot_product_attention(
        query, key, value, valid_lens=valid_lens, need_weights=need_weights
    )
    torch.testing.assert_close(ours.output, reference(query, key, value, mask))
    assert torch.equal(ours.output[2], torch.zeros(2, 4, 7))  # nothing to attend to


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_rows_give_zeros(need_weights: bool, dtype: torch.dtype) -> None:
    query, key, value = (
        torch.randn(2, 3, 4, dtype=dtype),
        torch.randn(2, 5, 4, dtype=dtype),
        torch.randn(2, 5, 6, dtype=dtype),
    )
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False
    mask[1] = False
    output, weights = scaled_dot_product_attention(
        query, key, value, mask, need_weights=need_weights
    )
    assert not output.isnan().any()
    assert torch.equal(output[0, 1], torch.zeros(6, dtype=dtype))
    assert torch.equal(output[1], torch.zeros(3, 6, dtype=dtype))
    torch.testing.assert_close(output[0, [0, 2]], reference(query, key, value, mask)[0, [0, 2]])
    if need_weights:
        assert weights is not None
        assert torch.equal(weights[1], torch.zeros(3, 5, dtype=dtype))


def test_hand_computed_example_of_the_book() -> None:
    X = torch.tensor([[1.0, 2, 1, 2, 1], [1, 1, 1, 2, 1], [3, 2, 1, 1, 1]])
    output, weights = scaled_dot_product_attention(X, X, X, scale=1.0)
    expected = torch.tensor(
        [[1.94, 1.94, 1, 1.53, 1], [1.84, 1.84, 1, 1.58, 1], [2.98, 2, 1, 1.01, 1]]
    )
    torch.testing.assert_close(output, expected, rtol=0, atol=0.01)
    expected_weights = torch.tensor(
        [[0.468, 0.063, 0.468], [0.422, 0.155, 0.422], [0.0067, 0.0009, 0.9924]]
    )
    assert weights is not None
    torch.testing.assert_close(weights, expected_weights, rtol=0, atol=1e-3)


def test_default_scale_is_one_over_sqrt_e() -> None:
    query, key, value = torch.randn(2, 3, 9), torch.randn(2, 4, 9), torch.randn(2, 4, 2)
    default = scaled_dot_product_attention(query, key, value).output
    explicit = scaled_dot_product_attention(query, key, value, scale=1 / math.sqrt(9)).output
    torch.testing.assert_close(default, explicit)
    assert not torch.allclose(
        default, scaled_dot_product_attention(query, key, value, scale=1.0).output
    )


def test_dropout_weights_are_the_ones_applied() -> None:
    torch.manual_seed(0)
    query, key, value = torch.randn(4, 8, 5), torch.randn(4, 9, 5), torch.randn(4, 9, 3)
    clean = scaled_dot_product_attention(query, key, value).weights
    output, weights = scaled_dot_product_attention(query, key, value, dropout_p=0.5)
    assert clean is not None
    assert weights is not None
    torch.testing.assert_close(output, weights @ value)
    dropped = weights == 0
    assert 0 < dropped.float().mean() < 1
    torch.testing.assert_close(weights[~dropped], clean[~dropped] / 0.5)


def test_inputs_are_not_mutated() -> None:
    query, key, value = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    mask, valid_lens = torch.rand(2, 3, 5) > 0.3, torch.tensor([3, 5])
    copies = [t.clone() for t in (query, key, value, mask, valid_lens)]
    for need_weights in (True, False):
        scaled_dot_product_attention(
            query, key, value, mask, valid_lens=valid_lens, need_weights=need_weights
        )
    for original, copy in zip((query, key, value, mask, valid_lens), copies, strict=True):
        assert torch.equal(original, copy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_never_nan(dtype: torch.dtype) -> None:
    query = torch.tensor([[[100.0, -100.0], [1.0, 1.0]]], dtype=dtype)
    key = torch.tensor([[[100.0, 100.0], [-100.0, 100.0], [1.0, 0.0]]], dtype=dtype)
    value = torch.randn(1, 3, 2).to(dtype)
    mask = torch.tensor([[[True, True, False], [False, False, False]]])
    output, weights = scaled_dot_product_attention(query, key, value, mask)
    assert weights is not None
    assert output.dtype == dtype
    assert torch.isfinite(output).all()
    assert torch.isfinite(weights).all()
    assert torch.equal(weights[0, 1], torch.zeros(3, dtype=dtype))


def test_gradcheck_in_float64() -> None:
    generator = torch.Generator().manual_seed(4)
    query, key, value = (
        torch.randn(2, s, e, generator=generator, dtype=torch.float64, requires_grad=True)
        for s, e in ((3, 4), (5, 4), (5, 2))
    )
    mask = torch.rand(2, 3, 5, generator=generator) < 0.6
    mask[0, 0] = False  # a fully masked row must have finite (zero) gradients too

    def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return scaled_dot_product_attention(q, k, v, mask, is_causal=True).output

    assert torch.autograd.gradcheck(attention, (query, key, value))
    module = DotProductAttention()
    assert torch.autograd.gradcheck(
        lambda q, k, v: module(q, k, v, valid_lens=torch.tensor([2, 4])).output, (query, key, value)
    )


class TestDotProductAttention:
    def test_eval_mode_is_deterministic_and_matches_function(self) -> None:
        module = DotProductAttention(dropout=0.5, scale=0.3).eval()
        query, key, value = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
        result = module(query, key, value, valid_lens=torch.tensor([2, 5]), is_causal=True)
        assert isinstance(result, AttentionOutput)
        expected = scaled_dot_product_attention(
            query, key, value, valid_lens=torch.tensor([2, 5]), is_causal=True, scale=0.3
        )
        torch.testing.assert_close(result.output, expected.output)
        fast = module(query, key, value, need_weights=False)
        assert fast.weights is None

    def test_training_mode_applies_dropout(self) -> None:
        torch.manual_seed(0)
        module = DotProductAttention(dropout=0.5).train()
        query, key, value = torch.randn(3, 6, 4), torch.randn(3, 7, 4), torch.randn(3, 7, 2)
        output, weights = module(query, key, value)
        assert weights is not None
        assert (weights == 0).any()
        torch.testing.assert_close(output, weights @ value)

    def test_has_no_parameters_and_a_repr(self) -> None:
        module = DotProductAttention(0.1, scale=2.0)
        assert list(module.parameters()) == []
        assert "dropout=0.1, scale=2.0" in repr(module)
