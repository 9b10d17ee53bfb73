"""sliding_window_attention (banded) against dense attention with the sliding_window pattern."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book.variants import (
    band_to_dense,
    pattern_attention,
    sliding_window,
    sliding_window_attention,
    window_key_indices,
)


def dense_window_mask(num_queries: int, num_keys: int, before: int, after: int) -> Tensor:
    """Hand-built (L, S) mask: i - before <= j <= i + after."""
    i = torch.arange(num_queries)[:, None]
    j = torch.arange(num_keys)[None, :]
    return (j >= i - before) & (j <= i + after)


def banded(
    query: Tensor, key: Tensor, value: Tensor, before: int, after: int = 0, **options: float
) -> tuple[Tensor, Tensor]:
    """sliding_window_attention, with the weights it always returns typed as a Tensor."""
    output, weights = sliding_window_attention(query, key, value, before, after, **options)
    assert weights is not None
    return output, weights


def dense(
    query: Tensor, key: Tensor, value: Tensor, before: int, after: int
) -> tuple[Tensor, Tensor]:
    """pattern_attention with the sliding_window pattern: the (..., L, S) reference."""
    output, weights = pattern_attention(query, key, value, sliding_window(before, after))
    assert weights is not None
    return output, weights


def inputs(
    batch: tuple[int, ...], num_queries: int, num_keys: int, features: int, value_features: int
) -> tuple[Tensor, Tensor, Tensor]:
    query = torch.randn(*batch, num_queries, features, dtype=torch.float64)
    key = torch.randn(*batch, num_keys, features, dtype=torch.float64)
    value = torch.randn(*batch, num_keys, value_features, dtype=torch.float64)
    return query, key, value


CASES = [
    # (num_queries, num_keys, before, after)
    (1, 1, 0, 0),
    (1, 1, 3, 2),
    (5, 5, 0, 0),
    (5, 5, 2, 0),
    (7, 7, 3, 1),
    (13, 13, 4, 0),
    (13, 13, 20, 20),  # window wider than the sequence: full attention
    (7, 5, 1, 2),  # more queries than keys: the last queries see nothing
    (5, 9, 2, 3),  # more keys than queries
    (97, 97, 5, 0),
]


@pytest.mark.parametrize(("num_queries", "num_keys", "before", "after"), CASES)
def test_equals_pattern_attention(num_queries: int, num_keys: int, before: int, after: int) -> None:
    query, key, value = inputs((2, 3), num_queries, num_keys, 4, 5)  # (N, H, L or S, E or Ev)
    expected, expected_weights = dense(query, key, value, before, after)
    output, weights = banded(query, key, value, before, after)
    assert weights.shape == (2, 3, num_queries, before + 1 + after)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(band_to_dense(weights, num_keys, before, after), expected_weights)


@pytest.mark.parametrize(("num_queries", "num_keys", "before", "after"), CASES)
def test_equals_pytorch_with_a_hand_built_mask(
    num_queries: int, num_keys: int, before: int, after: int
) -> None:
    query, key, value = inputs((3,), num_queries, num_keys, 6, 2)
    mask = dense_window_mask(num_queries, num_keys, before, after)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.7)
    expected = torch.where(mask.any(-1, keepdim=True), expected, 0.0)  # empty rows: zeros
    output, _ = banded(query, key, value, before, after, scale=0.7)
    torch.testing.assert_close(output, expected)


def test_float32_default_tolerances() -> None:
    query, key, value = (x.float() for x in inputs((2, 1), 11, 11, 8, 3))
    expected, _ = dense(query, key, value, 3, 1)
    output, weights = banded(query, key, value, 3, 1)
    assert output.dtype == weights.dtype == torch.float32
    torch.testing.assert_close(output, expected)


def test_weights_rows_sum_to_one_and_padding_is_exactly_zero() -> None:
    query, key, value = inputs((2,), 9, 9, 4, 4)
    _, weights = banded(query, key, value, before=3, after=2)
    _, valid = window_key_indices(9, 9, 3, 2)
    assert bool((weights >= 0).all())
    assert bool((weights[:, ~valid] == 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 9, dtype=torch.float64))


def test_a_query_without_keys_gets_zeros_not_nan() -> None:
    query, key, value = inputs((1,), 6, 2, 3, 3)  # queries 2.. see no key with before=0
    output, weights = banded(query, key, value, before=0)
    assert not output.isnan().any()
    assert bool((output[0, 2:] == 0).all())
    assert bool((weights[0, 2:] == 0).all())


def test_batch_dims_broadcast() -> None:
    query = torch.randn(2, 1, 7, 4, dtype=torch.float64)
    key = torch.randn(1, 3, 7, 4, dtype=torch.float64)
    value = torch.randn(7, 5, dtype=torch.float64)
    expected, _ = dense(
        query.expand(2, 3, 7, 4), key.expand(2, 3, 7, 4), value.expand(2, 3, 7, 5), 2, 1
    )
    output, weights = banded(query, key, value, 2, 1)
    assert output.shape == (2, 3, 7, 5)
    assert weights.shape == (2, 3, 7, 4)
    torch.testing.assert_close(output, expected)


def test_inputs_are_not_modified() -> None:
    query, key, value = inputs((2,), 5, 5, 3, 3)
    copies = [x.clone() for x in (query, key, value)]
    sliding_window_attention(query, key, value, 2, 2)
    for original, copy in zip((query, key, value), copies, strict=True):
        assert torch.equal(original, copy)


def test_gradcheck() -> None:
    query, key, value = (x.requires_grad_() for x in inputs((2,), 6, 6, 3, 2))
    assert torch.autograd.gradcheck(
        lambda q, k, v: sliding_window_attention(q, k, v, 2, 1).output, (query, key, value)
    )


def test_gradients_equal_dense() -> None:
    query, key, value = inputs((2, 1), 7, 7, 3, 2)  # pattern_attention takes (N, H, L, E)
    query, key, value = (x.requires_grad_() for x in (query, key, value))
    expected = torch.autograd.grad(dense(query, key, value, 3, 0)[0].sum(), (query, key, value))
    found = torch.autograd.grad(banded(query, key, value, 3)[0].sum(), (query, key, value))
    for e, f in zip(expected, found, strict=True):
        torch.testing.assert_close(f, e)


def test_scores_are_banded_not_square() -> None:
    query, key, value = inputs((1,), 200, 200, 2, 2)
    _, weights = banded(query, key, value, before=4)
    assert weights.shape == (1, 200, 5)


def test_window_key_indices() -> None:
    index, valid = window_key_indices(3, 2, before=1, after=1)
    assert index.tolist() == [[-1, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert valid.tolist() == [[False, True, True], [True, True, False], [True, False, False]]
    assert index.dtype == torch.int64
    assert valid.dtype == torch.bool


def test_band_to_dense_puts_each_column_on_its_key() -> None:
    band = torch.arange(1.0, 13.0).reshape(4, 3)  # (L, W) = (4, 3), before=1, after=1
    dense = band_to_dense(band, 4, before=1, after=1)
    expected = torch.tensor(
        [[2.0, 3, 0, 0], [4, 5, 6, 0], [0, 7, 8, 9], [0, 0, 10, 11]]
    )  # column k of row i -> key i - 1 + k; out-of-range columns (1 and 12) dropped
    assert torch.equal(dense, expected)


def test_errors_of_sliding_window_attention() -> None:
    query, key, value = inputs((1,), 4, 4, 3, 3)
    with pytest.raises(ValueError, match="before must be at least 0; got -1"):
        sliding_window_attention(query, key, value, -1)
    with pytest.raises(ValueError, match="after must be at least 0; got -2"):
        sliding_window_attention(query, key, value, 1, -2)
    with pytest.raises(TypeError, match="before must be an int; got float"):
        sliding_window_attention(query, key, value, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        sliding_window_attention(query.long(), key, value, 1)
    with pytest.raises(TypeError, match=r"key must have the dtype of query \(torch.float64\)"):
        sliding_window_attention(query, key.float(), value, 1)
    with pytest.raises(ValueError, match=r"key must have E = 3 features like query"):
        sliding_window_attention(query, key[..., :2], value, 1)
    with pytest.raises(ValueError, match=r"value must have S = 4 rows like key"):
        sliding_window_attention(query, key, value[:, :3], 1)


def test_errors_of_band_to_dense() -> None:
    band = torch.zeros(4, 3)
    with pytest.raises(
        ValueError,
        match=r"weights must have W = before \+ 1 \+ after = 4 columns .* got shape \(4, 3\)",
    ):
        band_to_dense(band, 4, before=3)
    with pytest.raises(ValueError, match=r"weights must have at least 2 dims \(\.\.\., L, W\)"):
        band_to_dense(torch.zeros(3), 4, before=2)
    with pytest.raises(TypeError, match="weights must be a floating-point tensor"):
        band_to_dense(band.long(), 4, before=2)
    with pytest.raises(ValueError, match="num_keys must be at least 1; got 0"):
        band_to_dense(band, 0, before=2)


def test_errors_of_window_key_indices() -> None:
    with pytest.raises(ValueError, match="L must be at least 1; got 0"):
        window_key_indices(0, 3, 1)
    with pytest.raises(ValueError, match="S must be at least 1; got 0"):
        window_key_indices(3, 0, 1)
    with pytest.raises(ValueError, match="after must be at least 0; got -1"):
        window_key_indices(3, 3, 1, -1)
