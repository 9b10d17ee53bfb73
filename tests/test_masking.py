"""masked_softmax, valid_lens_to_mask and causal_mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from attention_book import causal_mask, masked_softmax, valid_lens_to_mask

FAST = settings(max_examples=40, deadline=None)


def row_by_row(scores: Tensor, mask: Tensor) -> Tensor:
    """Reference: a plain softmax over the allowed entries of each row, zeros elsewhere."""
    mask = mask.expand(scores.shape)
    flat_scores, flat_mask = (
        scores.reshape(-1, scores.shape[-1]),
        mask.reshape(-1, scores.shape[-1]),
    )
    expected = torch.zeros_like(flat_scores)
    for row in range(flat_scores.shape[0]):
        allowed = flat_mask[row]
        if allowed.any():
            expected[row, allowed] = torch.softmax(flat_scores[row, allowed], dim=0)
    return expected.reshape(scores.shape)


@FAST
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    broadcast=st.booleans(),
)
def test_matches_row_by_row_softmax(shape: list[int], seed: int, broadcast: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(shape, generator=generator, dtype=torch.float64) * 5
    mask_shape = [1 if broadcast and i % 2 == 0 else size for i, size in enumerate(shape)]
    mask = torch.rand(mask_shape, generator=generator) < 0.6
    weights = masked_softmax(scores, mask)
    torch.testing.assert_close(weights, row_by_row(scores, mask), rtol=0, atol=1e-12)
    assert (weights >= 0).all()
    assert torch.equal(weights[~mask.expand(shape)], torch.zeros_like(weights[~mask.expand(shape)]))
    sums = weights.sum(-1)
    has_key = mask.expand(shape).any(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert torch.equal(sums[~has_key], torch.zeros_like(sums[~has_key]))


def test_without_mask_is_plain_softmax() -> None:
    scores = torch.randn(2, 3, 4)
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, dim=-1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_never_nan_and_large_scores_stay_finite(dtype: torch.dtype) -> None:
    scores = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    expected = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 0]], dtype=dtype)
    assert torch.equal(weights, expected)
    unmasked = masked_softmax(scores[:2])
    assert torch.isfinite(unmasked).all()


def test_valid_lens_one_per_row_and_one_per_query() -> None:
    scores = torch.zeros(2, 3, 4)
    per_row = masked_softmax(scores, valid_lens=torch.tensor([1, 4]))
    assert torch.equal(per_row[0], torch.tensor([[1.0, 0, 0, 0]] * 3))
    torch.testing.assert_close(per_row[1], torch.full((3, 4), 0.25))
    per_query = masked_softmax(scores, valid_lens=torch.tensor([[0, 1, 2], [4, 4, 4]]))
    assert torch.equal(per_query[0], torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0, 0]]))


def test_valid_lens_broadcasts_over_the_dims_between_n_and_l() -> None:
    scores = torch.randn(2, 3, 4, 5, 6)  # (N, A, B, L, S)
    valid_lens = torch.tensor([[1, 2, 3, 4, 5], [6, 0, 6, 0, 6]])  # (N, L)
    mask = (torch.arange(6) < valid_lens[..., None])[:, None, None]  # (N, 1, 1, L, S)
    torch.testing.assert_close(
        masked_softmax(scores, valid_lens=valid_lens), masked_softmax(scores, mask)
    )


def test_attn_mask_and_valid_lens_combine_by_and() -> None:
    scores = torch.randn(2, 3, 5)
    mask = torch.rand(2, 3, 5) < 0.7
    valid_lens = torch.tensor([2, 4])
    both = mask & (torch.arange(5) < valid_lens[:, None, None])
    torch.testing.assert_close(
        masked_softmax(scores, mask, valid_lens=valid_lens), row_by_row(scores, both)
    )


def test_one_dimensional_scores() -> None:
    weights = masked_softmax(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, False, True]))
    e1, e3 = math.exp(1.0), math.exp(3.0)
    torch.testing.assert_close(weights, torch.tensor([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)]))


def test_inputs_are_not_mutated_and_gradients_are_finite() -> None:
    scores = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.rand(2, 3, 4) < 0.5
    mask[0, 0] = False
    scores_copy, mask_copy = scores.detach().clone(), mask.clone()
    weights = masked_softmax(scores, mask)
    (weights * torch.randn(2, 3, 4)).sum().backward()  # type: ignore[no-untyped-call]
    assert torch.equal(scores.detach(), scores_copy)
    assert torch.equal(mask, mask_copy)
    assert scores.grad is not None
    assert torch.isfinite(scores.grad).all()
    assert torch.equal(scores.grad[~mask], torch.zeros_like(scores.grad[~mask]))


def test_gradcheck_in_float64() -> None:
    scores = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 3, 5) < 0.6
    mask[1, 2] = False
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, mask), (scores,))
    assert torch.autograd.gradcheck(
        lambda s: masked_softmax(s, valid_lens=torch.tensor([[1, 0, 5], [2, 3, 4]])), (scores,)
    )


class TestValidLensToMask:
    def test_one_dimensional_lens(self) -> None:
        mask = valid_lens_to_mask(torch.tensor([0, 2, 3]), 3)
        assert mask.dtype == torch.bool
        assert mask.shape == (3, 1, 3)
        assert mask.squeeze(1).tolist() == [
            [False, False, False],
            [True, True, False],
            [True, True, True],
        ]

    def test_one_dimensional_lens_with_num_queries(self) -> None:
        mask = valid_lens_to_mask(torch.tensor([1, 2]), 3, num_queries=4)
        assert mask.shape == (2, 4, 3)
        assert torch.equal(mask, valid_lens_to_mask(torch.tensor([1, 2]), 3).expand(2, 4, 3))
        mask[0, 0, 2] = True  # a real tensor, not a broadcast view
        assert not mask[0, 1, 2]

    def test_empty_batch(self) -> None:
        assert valid_lens_to_mask(torch.zeros(0, dtype=torch.int64), 3).shape == (0, 1, 3)

    def test_two_dimensional_lens(self) -> None:
        mask = valid_lens_to_mask(torch.tensor([[1, 2], [0, 3]]), 3, num_queries=2)
        assert mask.shape == (2, 2, 3)
        assert mask.tolist() == [
            [[True, False, False], [True, True, False]],
            [[False, False, False], [True, True, True]],
        ]


class TestCausalMask:
    @pytest.mark.parametrize(("num_queries", "num_keys"), [(4, 4), (2, 5), (5, 2), (1, 1), (0, 3)])
    def test_is_lower_triangular_top_left(self, num_queries: int, num_keys: int) -> None:
        mask = causal_mask(num_queries, num_keys)
        assert mask.shape == (num_queries, num_keys)
        for i in range(num_queries):
            for j in range(num_keys):
                assert bool(mask[i, j]) == (j <= i)

    def test_default_is_square(self) -> None:
        assert torch.equal(causal_mask(3), causal_mask(3, 3))

    @pytest.mark.parametrize(("num_queries", "num_keys"), [(3, 6), (6, 3)])
    def test_aligned_like_pytorchs_is_causal(self, num_queries: int, num_keys: int) -> None:
        query = torch.randn(2, num_queries, 4, dtype=torch.float64)
        key, value = (
            torch.randn(2, num_keys, 4, dtype=torch.float64),
            torch.randn(2, num_keys, 3, dtype=torch.float64),
        )
        torch.testing.assert_close(
            F.scaled_dot_product_attention(
                query, key, value, attn_mask=causal_mask(num_queries, num_keys)
            ),
            F.scaled_dot_product_attention(query, key, value, is_causal=True),
        )

    def test_device_argument(self) -> None:
        assert causal_mask(2, device="cpu").device.type == "cpu"
