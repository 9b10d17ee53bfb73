"""top_k_attention, sparsemax and sparsemax_attention against plain references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book import scaled_dot_product_attention
from attention_book.variants import sparsemax, sparsemax_attention, top_k_attention

SIZES = [(1, 1), (1, 5), (5, 1), (7, 13), (13, 7)]  # (L, S), odd and L != S


def inputs(
    batch: tuple[int, ...], num_queries: int, num_keys: int, *, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(*batch, num_queries, 3, generator=generator, dtype=torch.float64)
    key = torch.randn(*batch, num_keys, 3, generator=generator, dtype=torch.float64)
    value = torch.randn(*batch, num_keys, 5, generator=generator, dtype=torch.float64)
    return query, key, value


def random_mask(shape: tuple[int, ...], *, seed: int = 1) -> Tensor:
    """A random mask with one fully masked row (the first) when there are rows to spare."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=generator) < 0.6
    if shape[-2] > 1:
        mask[..., 0, :] = False
    return mask


def top_k_reference(scores: Tensor, k: int, mask: Tensor) -> Tensor:
    """Row by row: sort the allowed keys by (score descending, index ascending), keep k."""
    flat_scores = scores.reshape(-1, scores.shape[-1])
    flat_mask = mask.expand(scores.shape).reshape(-1, scores.shape[-1])
    weights = torch.zeros_like(flat_scores)
    for row in range(flat_scores.shape[0]):
        allowed = [j for j in range(flat_scores.shape[1]) if flat_mask[row, j]]
        kept = sorted(allowed, key=lambda j: (-float(flat_scores[row, j]), j))[:k]
        if kept:
            weights[row, kept] = torch.softmax(flat_scores[row, kept], dim=0)
    return weights.reshape(scores.shape)


def bisection_sparsemax(z: Tensor) -> Tensor:
    """Projection onto the simplex found by bisection on tau: sum(max(z - tau, 0)) = 1."""
    low = z.min(dim=-1, keepdim=True).values - 1.0
    high = z.max(dim=-1, keepdim=True).values
    for _ in range(200):
        tau = (low + high) / 2
        too_low = (z - tau).clamp(min=0).sum(dim=-1, keepdim=True) > 1
        low, high = torch.where(too_low, tau, low), torch.where(too_low, high, tau)
    return (z - (low + high) / 2).clamp(min=0)


# --- top_k_attention ---


@pytest.mark.parametrize(("num_queries", "num_keys"), SIZES)
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_top_k_matches_row_by_row_reference(num_queries: int, num_keys: int, k: int) -> None:
    query, key, value = inputs((2,), num_queries, num_keys)
    mask = random_mask((2, num_queries, num_keys))
    output, weights = top_k_attention(query, key, value, k, mask)
    scores = query @ key.transpose(-2, -1) / math.sqrt(3)
    expected = top_k_reference(scores, k, mask)
    assert weights is not None
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(output, expected @ value)
    kept = (weights > 0).sum(dim=-1)
    torch.testing.assert_close(kept, mask.sum(dim=-1).clamp(max=k))


@pytest.mark.parametrize(("num_queries", "num_keys"), SIZES)
def test_top_k_with_k_at_least_s_is_full_attention(num_queries: int, num_keys: int) -> None:
    query, key, value = inputs((3,), num_queries, num_keys)
    for k in (num_keys, num_keys + 4):
        output, weights = top_k_attention(query, key, value, k, scale=0.7)
        expected = scaled_dot_product_attention(query, key, value, scale=0.7)
        torch.testing.assert_close(weights, expected.weights)
        torch.testing.assert_close(
            output, F.scaled_dot_product_attention(query, key, value, scale=0.7)
        )


def test_top_k_breaks_ties_toward_the_lower_key_index() -> None:
    # scores 3, 5, 5, 5, 1: the three tied 5s compete for two places
    key = torch.tensor([[3.0], [5.0], [5.0], [5.0], [1.0]])
    query, value = torch.ones(1, 1), torch.eye(5)
    _, weights = top_k_attention(query, key, value, 2, scale=1.0)
    assert weights is not None
    torch.testing.assert_close(weights, torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]]))
    # a masked tied key gives its place to the next one
    mask = torch.tensor([True, False, True, True, True])
    _, weights = top_k_attention(query, key, value, 2, mask, scale=1.0)
    assert weights is not None
    torch.testing.assert_close(weights, torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0]]))
    # all scores tied: the first k keys, whatever k and S (torch.topk and an unstable sort
    # pick other keys here)
    for num_keys in (7, 20, 100):
        for k in (1, 3, 4):
            _, weights = top_k_attention(
                torch.zeros(1, 2), torch.ones(num_keys, 2), torch.eye(num_keys), k
            )
            assert weights is not None
            torch.testing.assert_close(weights[0, :k], torch.full((k,), 1 / k))
            assert weights[0, k:].eq(0).all()


def test_top_k_masked_and_empty_rows_are_exact_zeros_without_nan() -> None:
    query, key, value = inputs((2,), 5, 7)
    mask = random_mask((2, 5, 7))
    output, weights = top_k_attention(query.float() * 1e4, key.float(), value.float(), 3, mask)
    assert weights is not None
    assert weights.isfinite().all()
    assert output.isfinite().all()
    assert weights[~mask].eq(0).all()
    assert weights[:, 0].eq(0).all()
    assert output[:, 0].eq(0).all()
    sums = weights.sum(dim=-1)
    torch.testing.assert_close(sums[mask.any(dim=-1)], torch.ones_like(sums[mask.any(dim=-1)]))


def test_top_k_broadcasts_batch_dims_and_masks() -> None:
    query, _, _ = inputs((2, 1), 5, 7)
    _, key, value = inputs((3,), 5, 7, seed=3)
    mask = random_mask((1, 3, 1, 7))[..., 0:1, :].expand(1, 3, 5, 7)
    output, weights = top_k_attention(query, key, value, 2, mask[0, :, :1])
    assert output.shape == (2, 3, 5, 5)
    assert weights is not None
    assert weights.shape == (2, 3, 5, 7)
    scores = query @ key.transpose(-2, -1) / math.sqrt(3)  # (2, 3, 5, 7)
    torch.testing.assert_close(weights, top_k_reference(scores, 2, mask[0, :, :1]))


def test_top_k_gradients_and_inputs_untouched() -> None:
    query, key, value = inputs((2,), 5, 7)
    mask = random_mask((2, 5, 7))
    copies = [t.clone() for t in (query, key, value, mask)]
    for tensor in (query, key, value):
        tensor.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: top_k_attention(q, k, v, 3, mask).output, (query, key, value)
    )
    for tensor, copy in zip((query, key, value, mask), copies, strict=True):
        assert torch.equal(tensor.detach(), copy)


def test_top_k_errors() -> None:
    query, key, value = inputs((2,), 5, 7)
    with pytest.raises(ValueError, match=r"k must be at least 1; got 0"):
        top_k_attention(query, key, value, 0)
    with pytest.raises(ValueError, match=r"k must be at least 1; got -3"):
        top_k_attention(query, key, value, -3)
    with pytest.raises(TypeError, match=r"k must be an int; got float"):
        top_k_attention(query, key, value, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"attn_mask must broadcast to \(N, L, S\) = \(2, 5, 7\)"):
        top_k_attention(query, key, value, 2, torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"attn_mask must be a boolean tensor"):
        top_k_attention(query, key, value, 2, torch.ones(5, 7))
    with pytest.raises(ValueError, match=r"value must have S = 7 rows"):
        top_k_attention(query, key, value[:, :3], 2)
    with pytest.raises(TypeError, match=r"key must have the dtype of query"):
        top_k_attention(query, key.float(), value, 2)


# --- sparsemax ---


def test_sparsemax_matches_the_entmax_package() -> None:
    entmax = pytest.importorskip("entmax", reason="entmax is the reference implementation")
    scores = torch.randn(4, 6, 13, dtype=torch.float64) * 3
    for dim in (-1, 0, 1):
        expected = entmax.sparsemax(scores, dim=dim)
        torch.testing.assert_close(sparsemax(scores, dim=dim), expected)


@pytest.mark.parametrize("size", [1, 2, 5, 13])
@pytest.mark.parametrize("spread", [0.1, 1.0, 10.0])
def test_sparsemax_is_the_projection_onto_the_simplex(size: int, spread: float) -> None:
    z = torch.randn(50, size, dtype=torch.float64) * spread
    p = sparsemax(z)
    torch.testing.assert_close(p, bisection_sparsemax(z))
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(dim=-1), torch.ones(50, dtype=torch.float64))
    # KKT: p = max(z - tau, 0) with one tau per row, read off the support
    support = p > 0
    tau = ((z - p) * support).sum(dim=-1, keepdim=True) / support.sum(dim=-1, keepdim=True)
    torch.testing.assert_close(p, (z - tau).clamp(min=0))
    # no point of the simplex is closer to z
    others = torch.distributions.Dirichlet(torch.ones(size, dtype=torch.float64)).sample((50,))
    assert ((others - z).square().sum(-1) >= (p - z).square().sum(-1) - 1e-12).all()


def test_sparsemax_gives_exact_zeros_and_ignores_a_constant() -> None:
    z = torch.tensor([[3.0, 1.0, 0.2, -2.0], [0.0, 0.0, 0.0, 0.0]])
    p = sparsemax(z)
    assert p[0].tolist() == [1.0, 0.0, 0.0, 0.0]  # a gap of 2 leaves one key
    assert p[1].tolist() == [0.25] * 4
    torch.testing.assert_close(sparsemax(z + 123.0), p)
    z = torch.randn(7, 13, dtype=torch.float64)
    torch.testing.assert_close(sparsemax(z - 5.5), sparsemax(z))
    assert (sparsemax(z * 4) == 0).any()


def test_sparsemax_along_any_dim() -> None:
    z = torch.randn(3, 5, 7, dtype=torch.float64)
    for dim in (0, 1, 2, -2):
        expected = bisection_sparsemax(z.movedim(dim, -1)).movedim(-1, dim)
        torch.testing.assert_close(sparsemax(z, dim=dim), expected)


def test_sparsemax_gradient() -> None:
    z = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sparsemax, (z,))
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=0), (z,))
    # the Jacobian is diag(s) - s s^T / k, s the support's indicator
    row = torch.tensor([0.9, 0.5, 0.45, -1.0, 0.1], dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(sparsemax, row)  # type: ignore[no-untyped-call]
    s = (sparsemax(row) > 0).double()
    torch.testing.assert_close(jacobian, torch.diag(s) - torch.outer(s, s) / s.sum())


def test_sparsemax_with_a_mask() -> None:
    z = torch.randn(4, 5, 7, dtype=torch.float64)
    mask = random_mask((4, 5, 7))
    p = sparsemax(z, attn_mask=mask)
    expected = torch.zeros_like(z)
    for i in range(4):
        for j in range(5):
            if mask[i, j].any():
                expected[i, j, mask[i, j]] = bisection_sparsemax(z[i, j, mask[i, j]])
    torch.testing.assert_close(p, expected)
    assert p[:, 0].eq(0).all()
    z.requires_grad_(True)
    (sparsemax(z * 1e4, attn_mask=mask) * torch.randn(4, 5, 7)).sum().backward()  # type: ignore[no-untyped-call]
    assert z.grad is not None
    assert z.grad.isfinite().all()
    assert z.grad[~mask].eq(0).all()
    # along dim 0 a mask is applied the same way
    p0 = sparsemax(z.detach(), dim=0, attn_mask=mask)
    assert p0[~mask].eq(0).all()
    sums = p0.sum(dim=0)
    torch.testing.assert_close(sums, mask.any(dim=0).double())


def test_sparsemax_large_scores_and_empty_dims() -> None:
    for dtype in (torch.float32, torch.float64):
        z = torch.tensor([[1e4, -1e4, 1e4 - 0.5], [-1e4, -1e4, -1e4]], dtype=dtype)
        p = sparsemax(z)
        torch.testing.assert_close(p, torch.tensor([[0.75, 0.0, 0.25], [1 / 3] * 3], dtype=dtype))
    assert sparsemax(torch.zeros(3, 0)).shape == (3, 0)


def test_sparsemax_errors() -> None:
    with pytest.raises(
        TypeError, match=r"scores must be a floating-point tensor; got dtype torch.int64"
    ):
        sparsemax(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"scores must have at least 1 dim; got a 0-dim tensor"):
        sparsemax(torch.tensor(1.0))
    with pytest.raises(
        ValueError, match=r"dim must lie in \[-2, 1\] for a tensor with 2 dims; got 2"
    ):
        sparsemax(torch.zeros(2, 3), dim=2)
    with pytest.raises(
        ValueError, match=r"dim must lie in \[-2, 1\] for a tensor with 2 dims; got -3"
    ):
        sparsemax(torch.zeros(2, 3), dim=-3)
    with pytest.raises(
        ValueError, match=r"attn_mask must broadcast to \(L, S\) = \(2, 3\); got \(4,\)"
    ):
        sparsemax(torch.zeros(2, 3), attn_mask=torch.ones(4, dtype=torch.bool))


# --- sparsemax_attention ---


@pytest.mark.parametrize(("num_queries", "num_keys"), SIZES)
def test_sparsemax_attention_matches_sparsemax_of_the_scores(
    num_queries: int, num_keys: int
) -> None:
    query, key, value = inputs((2,), num_queries, num_keys)
    mask = random_mask((2, num_queries, num_keys))
    output, weights = sparsemax_attention(query * 3, key, value, mask)
    scores = (query * 3) @ key.transpose(-2, -1) / math.sqrt(3)
    expected = sparsemax(scores, attn_mask=mask)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(output, expected @ value)
    if num_queries > 1:  # random_mask leaves the first query without a key
        assert output[:, 0].eq(0).all()
    output, weights = sparsemax_attention(query, key, value, scale=2.0)
    torch.testing.assert_close(weights, sparsemax((query * 2.0) @ key.transpose(-2, -1)))
    assert torch.autograd.gradcheck(
        lambda q: sparsemax_attention(q, key, value, mask).output, (query.requires_grad_(True),)
    )


def test_sparsemax_attention_errors() -> None:
    query, key, value = inputs((2,), 5, 7)
    with pytest.raises(ValueError, match=r"key must have E = 3 features"):
        sparsemax_attention(query, key[..., :2], value)
    with pytest.raises(ValueError, match=r"attn_mask must broadcast"):
        sparsemax_attention(query, key, value, torch.ones(3, 5, 7, dtype=torch.bool))
