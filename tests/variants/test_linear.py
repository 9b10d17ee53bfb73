"""Linear attention and Performer against explicit (L, S) formulas and softmax attention."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from attention_book import scaled_dot_product_attention
from attention_book.variants import (
    LinearAttentionState,
    elu_feature_map,
    linear_attention,
    linear_attention_step,
    orthogonal_gaussian,
    performer_attention,
    positive_random_features,
)

D64 = torch.float64


def randn(*shape: int, scale: float = 1.0, dtype: torch.dtype = D64) -> Tensor:
    return torch.randn(*shape, dtype=dtype) * scale


def explicit(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    phi: Callable[[Tensor], Tensor],
    *,
    causal: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    """The (L, S) formula: A = phi(Q) phi(K)^T (lower triangle if causal), A V / (A 1 + eps)."""
    weights = phi(query) @ phi(key).transpose(-2, -1)  # (..., L, S)
    if causal:
        weights = weights.tril()
    return weights @ value / (weights.sum(dim=-1, keepdim=True) + eps)


def stepwise(query: Tensor, key: Tensor, value: Tensor, **options: Any) -> Tensor:
    """Run linear_attention_step over the positions, one at a time."""
    state: LinearAttentionState | None = None
    outputs = []
    for t in range(query.shape[-2]):
        position = slice(t, t + 1)
        output, state = linear_attention_step(
            query[..., position, :],
            key[..., position, :],
            value[..., position, :],
            state,
            **options,
        )
        outputs.append(output)
    return torch.cat(outputs, dim=-2)


def doubled(x: Tensor) -> Tensor:
    """A feature map with F = 2E: (exp(x), exp(-x)), whose kernel is 2 cosh-like."""
    return torch.cat([x.exp(), (-x).exp()], dim=-1)


def prf_kernel(projection: Tensor) -> Callable[[Tensor], Tensor]:
    """positive_random_features as a feature map."""
    return lambda x: positive_random_features(x, projection)


# --- elu_feature_map ---


def test_elu_feature_map_is_elu_plus_one_and_positive() -> None:
    x = torch.tensor([-30.0, -2.0, -0.5, 0.0, 0.5, 3.0])
    expected = torch.tensor([math.exp(-30.0), math.exp(-2.0), math.exp(-0.5), 1.0, 1.5, 4.0])
    torch.testing.assert_close(elu_feature_map(x), expected)
    torch.testing.assert_close(elu_feature_map(x), F.elu(x) + 1)
    assert bool((elu_feature_map(x) >= 0).all())
    assert bool((elu_feature_map(x.double()) > 0).all())  # float32 loses e^-30 next to 1


# --- linear_attention: the parallel form ---

SHAPES = [
    # (query batch, key/value batch, L, S, E, Ev)
    ((), (), 1, 1, 1, 1),
    ((), (), 5, 7, 3, 2),
    ((2,), (2,), 7, 5, 4, 6),
    ((2, 3), (1, 3), 13, 1, 5, 7),
    ((3, 1), (4,), 5, 13, 2, 1),
]


@pytest.mark.parametrize(("q_batch", "kv_batch", "L", "S", "E", "Ev"), SHAPES)
@pytest.mark.parametrize("phi", [elu_feature_map, doubled], ids=["elu", "doubled"])
def test_linear_attention_equals_the_explicit_formula(
    q_batch: tuple[int, ...],
    kv_batch: tuple[int, ...],
    L: int,
    S: int,
    E: int,
    Ev: int,
    phi: Callable[[Tensor], Tensor],
) -> None:
    query, key, value = randn(*q_batch, L, E), randn(*kv_batch, S, E), randn(*kv_batch, S, Ev)
    actual = linear_attention(query, key, value, feature_map=phi)
    torch.testing.assert_close(actual, explicit(query, key, value, phi))
    batch = (torch.zeros(q_batch) + torch.zeros(kv_batch)).shape
    assert actual.shape == (*batch, L, Ev)


@pytest.mark.parametrize("L", [1, 5, 13, 128, 129, 300])
def test_causal_linear_attention_equals_the_explicit_formula(L: int) -> None:
    query, key, value = randn(2, L, 3), randn(2, L, 3), randn(2, L, 4)
    for phi in (elu_feature_map, doubled):
        actual = linear_attention(query, key, value, feature_map=phi, causal=True)
        torch.testing.assert_close(actual, explicit(query, key, value, phi, causal=True))


def test_causal_linear_attention_broadcasts_batch_dims() -> None:
    query, key, value = randn(2, 3, 9, 4), randn(3, 9, 4), randn(1, 1, 9, 5)
    actual = linear_attention(query, key, value, causal=True)
    assert actual.shape == (2, 3, 9, 5)
    expected = explicit(query, key, value, elu_feature_map, causal=True)
    torch.testing.assert_close(actual, expected)


def test_eps_enters_the_denominator_only() -> None:
    query, key, value = randn(5, 3), randn(5, 3), randn(5, 2)
    for eps in (0.0, 0.5):
        actual = linear_attention(query, key, value, eps=eps)
        torch.testing.assert_close(actual, explicit(query, key, value, elu_feature_map, eps=eps))


def test_with_a_constant_feature_map_the_output_is_the_mean_of_the_values() -> None:
    query, key, value = randn(6, 3), randn(6, 3), randn(6, 2)
    ones: Callable[[Tensor], Tensor] = lambda x: torch.ones_like(x[..., :1])
    actual = linear_attention(query, key, value, feature_map=ones, causal=True, eps=0.0)
    counts = torch.arange(1, 7, dtype=D64)[:, None]
    torch.testing.assert_close(actual, value.cumsum(dim=0) / counts)


def test_linear_attention_keeps_the_inputs() -> None:
    query, key, value = randn(7, 3), randn(7, 3), randn(7, 2)
    copies = [t.clone() for t in (query, key, value)]
    linear_attention(query, key, value, causal=True)
    for tensor, copy in zip((query, key, value), copies, strict=True):
        assert torch.equal(tensor, copy)


def test_linear_attention_in_float32_matches_float64() -> None:
    query, key, value = randn(2, 200, 8), randn(2, 200, 8), randn(2, 200, 8)
    for causal in (False, True):
        expected = linear_attention(query, key, value, causal=causal)
        actual = linear_attention(query.float(), key.float(), value.float(), causal=causal)
        assert actual.dtype == torch.float32
        torch.testing.assert_close(actual, expected.float())


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_gradients(causal: bool) -> None:
    query, key, value = (randn(2, 5, 3).requires_grad_() for _ in range(3))

    def fn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return linear_attention(q, k, v, causal=causal)

    assert torch.autograd.gradcheck(fn, (query, key, value))


def test_causal_linear_attention_does_not_look_ahead() -> None:
    query, key, value = randn(1, 200, 4), randn(1, 200, 4), randn(1, 200, 3)
    before = linear_attention(query, key, value, causal=True)
    key, value = key.clone(), value.clone()
    key[:, -1] += 5.0
    value[:, -1] *= -10.0
    after = linear_attention(query, key, value, causal=True)
    assert torch.equal(after[:, :-1], before[:, :-1])
    assert not torch.allclose(after[:, -1], before[:, -1])


# --- linear_attention_step: the recurrent form ---


@pytest.mark.parametrize("L", [1, 7, 130])
def test_running_the_step_equals_the_causal_parallel_form(L: int) -> None:
    query, key, value = randn(2, 3, L, 4), randn(2, 3, L, 4), randn(2, 3, L, 5)
    for phi in (elu_feature_map, doubled):
        expected = linear_attention(query, key, value, feature_map=phi, causal=True)
        torch.testing.assert_close(stepwise(query, key, value, feature_map=phi), expected)


def test_step_state_holds_the_sums_and_none_is_zeros() -> None:
    query, key, value = randn(2, 1, 3), randn(2, 1, 3), randn(2, 1, 4)
    output, state = linear_attention_step(query, key, value)
    phi_k = elu_feature_map(key)[:, 0]  # (N, F)
    torch.testing.assert_close(state.kv, phi_k[:, :, None] * value[:, 0, None, :])
    torch.testing.assert_close(state.k_sum, phi_k)
    zeros = LinearAttentionState(torch.zeros(2, 3, 4, dtype=D64), torch.zeros(2, 3, dtype=D64))
    output_zeros, state_zeros = linear_attention_step(query, key, value, zeros)
    torch.testing.assert_close(output_zeros, output)
    torch.testing.assert_close(state_zeros.kv, state.kv)
    assert output.shape == (2, 1, 4)


def test_step_state_is_the_size_of_the_features_not_of_the_sequence() -> None:
    query, key, value = randn(50, 1, 3), randn(50, 1, 3), randn(50, 1, 2)
    state = None
    for t in range(50):
        _, state = linear_attention_step(query[t], key[t], value[t], state, feature_map=doubled)
    assert state is not None
    assert state.kv.shape == (6, 2)
    assert state.k_sum.shape == (6,)
    torch.testing.assert_close(state.k_sum, doubled(key[:, 0]).sum(dim=0))


# --- never an (L, S) tensor ---


class LargestTensor(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Record the number of elements of the largest tensor any operation returns."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.largest = 0

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        for item in result if isinstance(result, tuple | list) else [result]:
            if isinstance(item, Tensor):
                self.largest = max(self.largest, item.numel())
        return result


@pytest.mark.parametrize("causal", [False, True])
def test_long_sequences_never_build_a_queries_by_keys_tensor(causal: bool) -> None:
    L, E = 20_000, 8  # an (L, S) float32 tensor would take 1.6 GB
    query, key, value = (randn(1, L, E, dtype=torch.float32) for _ in range(3))
    projection = orthogonal_gaussian(16, E)
    with LargestTensor() as mode:
        output = linear_attention(query, key, value, causal=causal)
        performer = performer_attention(query, key, value, projection, causal=causal)
    assert output.shape == performer.shape == (1, L, E)
    # features (L, F) and the causal form's (C, C) triangles, C = 64: at most 64 L elements,
    # where an (L, S) matrix would hold 20000 L
    assert mode.largest <= 100 * L
    assert mode.largest > 0


# --- orthogonal_gaussian ---


def test_orthogonal_gaussian_rows_are_orthogonal_within_blocks_only() -> None:
    projection = orthogonal_gaussian(13, 5, generator=torch.Generator().manual_seed(0), dtype=D64)
    assert projection.shape == (13, 5)
    gram = projection @ projection.T  # (13, 13)
    block = torch.arange(13) // 5  # rows 0-4, 5-9, 10-12
    blocks = block[:, None] == block[None, :]  # (13, 13): same block
    off_diagonal = blocks & ~torch.eye(13, dtype=torch.bool)
    torch.testing.assert_close(gram[off_diagonal], torch.zeros(int(off_diagonal.sum()), dtype=D64))
    assert bool((gram[~blocks].abs() > 1e-3).all())  # across blocks: independent
    assert bool((gram.diagonal() > 0).all())


def test_orthogonal_gaussian_is_deterministic_for_a_generator() -> None:
    first = orthogonal_gaussian(10, 4, generator=torch.Generator().manual_seed(7))
    again = orthogonal_gaussian(10, 4, generator=torch.Generator().manual_seed(7))
    other = orthogonal_gaussian(10, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert first.dtype == torch.get_default_dtype()


def test_orthogonal_gaussian_rows_are_standard_normal() -> None:
    dim, blocks = 4, 10_000
    projection = orthogonal_gaussian(
        dim * blocks, dim, generator=torch.Generator().manual_seed(0), dtype=D64
    )
    chi_mean = math.sqrt(2) * math.gamma((dim + 1) / 2) / math.gamma(dim / 2)
    # every place in the block (the sign fix after QR matters for the first one)
    for rows in [projection, *projection.view(blocks, dim, dim).unbind(dim=1)]:
        count = rows.shape[0]
        mean = rows.mean(dim=0)
        covariance = rows.T @ rows / count
        assert float(mean.abs().max()) < 5 / math.sqrt(count)
        assert float((covariance - torch.eye(dim, dtype=D64)).abs().max()) < 8 / math.sqrt(count)
        assert abs(float(rows.norm(dim=-1).mean()) - chi_mean) < 3 / math.sqrt(count)


# --- positive_random_features ---


def test_positive_random_features_is_the_formula() -> None:
    x, projection = randn(2, 3, 4), randn(6, 4)
    actual = positive_random_features(x, projection)
    assert actual.shape == (2, 3, 6)
    for index in [(0, 0), (1, 2)]:
        row = x[index]
        for r in range(6):
            expected = math.exp(float(projection[r] @ row) - float(row @ row) / 2) / math.sqrt(6)
            assert math.isclose(float(actual[(*index, r)]), expected, rel_tol=1e-12)
    assert bool((actual > 0).all())


def test_random_features_estimate_exp_of_the_dot_product_without_bias() -> None:
    x, y = torch.tensor([0.3, -0.5, 0.2, 0.4], dtype=D64), torch.tensor([0.6, 0.1, -0.3, 0.5])
    y = y.to(D64)
    generator = torch.Generator().manual_seed(0)
    estimates = torch.stack(
        [
            positive_random_features(x, w) @ positive_random_features(y, w)
            for w in (
                orthogonal_gaussian(64, 4, generator=generator, dtype=D64) for _ in range(2000)
            )
        ]
    )
    standard_error = float(estimates.std()) / math.sqrt(len(estimates))
    assert abs(float(estimates.mean()) - math.exp(float(x @ y))) < 4 * standard_error
    assert standard_error < 0.01  # a test that can tell a bias of a few percent


# --- performer_attention ---


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("L", "S"), [(1, 1), (5, 5), (7, 13), (140, 140)])
def test_performer_is_linear_attention_with_random_features(causal: bool, L: int, S: int) -> None:
    if causal and L != S:
        return
    query, key, value = randn(2, L, 6), randn(2, S, 6), randn(2, S, 3)
    projection = orthogonal_gaussian(32, 6, dtype=D64)
    actual = performer_attention(query, key, value, projection, causal=causal)
    scale = 6**-0.25
    expected = linear_attention(
        query * scale, key * scale, value, feature_map=prf_kernel(projection), causal=causal, eps=0
    )
    torch.testing.assert_close(actual, expected)


def performer_error(num_features: int) -> float:
    """Mean absolute error against softmax attention, averaged over four projections."""
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 64, 16, generator=generator, dtype=D64) for _ in range(3))
    query, key = (
        query / 2,
        key / 2,
    )  # moderate norms: the estimator's variance grows like exp|q+k|^2
    exact = scaled_dot_product_attention(query, key, value).output
    errors = []
    for seed in range(4):
        w = orthogonal_gaussian(
            num_features, 16, generator=torch.Generator().manual_seed(seed), dtype=D64
        )
        errors.append(float((performer_attention(query, key, value, w) - exact).abs().mean()))
    return sum(errors) / len(errors)


def test_performer_error_falls_as_the_number_of_features_grows() -> None:
    errors = [performer_error(m) for m in (16, 256, 1024)]
    assert errors[1] < errors[0] / 2
    assert errors[2] < errors[1] / 1.5


def leaky_performer(query: Tensor, key: Tensor, value: Tensor, projection: Tensor) -> Tensor:
    """The popular stabiliser: key features divided by their maximum over ALL keys (leaks)."""
    scale = query.shape[-1] ** -0.25

    def log_features(x: Tensor) -> Tensor:
        return x @ projection.T - x.square().sum(dim=-1, keepdim=True) / 2

    log_q, log_k = log_features(query * scale), log_features(key * scale)
    phi_q = torch.exp(log_q - log_q.amax(dim=-1, keepdim=True))
    phi_k = torch.exp(log_k - log_k.amax(dim=(-2, -1), keepdim=True))  # over every key
    identity: Callable[[Tensor], Tensor] = lambda x: x
    return linear_attention(phi_q, phi_k, value, feature_map=identity, causal=True)


def last_key_perturbed() -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """float32 inputs, and a key and value whose last key has the largest feature of all.

    A key's log-feature ``w_r k' - |k'|^2 / 2`` is largest, ``|w_r|^2 / 2``, at ``k' = w_r``.
    """
    query, key, value = (randn(1, 50, 64, scale=5.0, dtype=torch.float32) for _ in range(3))
    projection = orthogonal_gaussian(64, 64)
    longest = projection[projection.norm(dim=-1).argmax()]
    perturbed_key, perturbed_value = key.clone(), value.clone()
    perturbed_key[:, -1] = longest * 64**0.25
    perturbed_value[:, -1] += 100.0
    return query, key, value, projection, perturbed_key, perturbed_value


def test_causal_performer_does_not_leak_the_last_key() -> None:
    query, key, value, projection, perturbed_key, perturbed_value = last_key_perturbed()
    before = performer_attention(query, key, value, projection, causal=True)
    after = performer_attention(query, perturbed_key, perturbed_value, projection, causal=True)
    assert torch.equal(after[:, :-1], before[:, :-1])
    assert not torch.allclose(after[:, -1], before[:, -1])


def test_the_leak_test_catches_a_maximum_over_all_keys() -> None:
    query, key, value, projection, perturbed_key, perturbed_value = last_key_perturbed()
    before = leaky_performer(query, key, value, projection)
    after = leaky_performer(query, perturbed_key, perturbed_value, projection)
    # the largest key feature grows by e^50: the earlier keys' features underflow to 0
    assert not torch.allclose(after[:, :-1], before[:, :-1], atol=0.1, rtol=0.1)


@pytest.mark.parametrize("scale", [5.0, 10.0])
@pytest.mark.parametrize("causal", [False, True])
def test_performer_stays_finite_for_large_inputs_in_float32(scale: float, causal: bool) -> None:
    query, key, value = (randn(2, 40, 64, scale=scale, dtype=torch.float32) for _ in range(3))
    output = performer_attention(query, key, value, orthogonal_gaussian(128, 64), causal=causal)
    assert bool(torch.isfinite(output).all())


def test_performer_in_float32_matches_float64_for_moderate_inputs() -> None:
    query, key, value = (randn(2, 40, 64, scale=3.0) for _ in range(3))
    projection = orthogonal_gaussian(128, 64, dtype=D64)
    for causal in (False, True):
        expected = performer_attention(query, key, value, projection, causal=causal)
        args = (t.float() for t in (query, key, value, projection))
        actual = performer_attention(*args, causal=causal)
        torch.testing.assert_close(actual, expected.float(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_performer_gradients(causal: bool) -> None:
    query, key, value = (randn(1, 4, 3, scale=0.5).requires_grad_() for _ in range(3))
    projection = orthogonal_gaussian(8, 3, dtype=D64)

    def fn(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return performer_attention(q, k, v, projection, causal=causal)

    assert torch.autograd.gradcheck(fn, (query, key, value))


# --- bad input ---


def test_bad_input_to_linear_attention() -> None:
    query, key, value = randn(3, 4), randn(5, 4), randn(5, 2)
    with pytest.raises(
        ValueError, match=r"causal needs as many keys as queries \(L == S\); got L = 3 and S = 5"
    ):
        linear_attention(query, key, value, causal=True)
    with pytest.raises(ValueError, match=r"the same number of features F; got 8 for query and 4"):
        linear_attention(
            query, key, value, feature_map=lambda x: doubled(x) if x.shape[0] == 3 else x
        )
    with pytest.raises(ValueError, match=r"key must have E = 4 features"):
        linear_attention(query, randn(5, 3), value)
    with pytest.raises(ValueError, match=r"eps must be at least 0; got -1.0"):
        linear_attention(query, key, value, eps=-1.0)
    with pytest.raises(
        TypeError, match=r"feature_map must be a callable phi\(x\) -> Tensor; got int"
    ):
        linear_attention(query, key, value, feature_map=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"key must have the dtype of query"):
        linear_attention(query, key.float(), value)


def test_bad_input_to_linear_attention_step() -> None:
    query, key, value = randn(2, 1, 3), randn(2, 1, 3), randn(2, 1, 4)
    with pytest.raises(
        ValueError, match=r"query must hold one position \(\.\.\., 1, E\); got \(2, 2, 3\)"
    ):
        linear_attention_step(randn(2, 2, 3), key, value)
    with pytest.raises(ValueError, match=r"key must hold one position .*; got \(2, 2, 3\)"):
        linear_attention_step(query, randn(2, 2, 3), randn(2, 2, 4))
    _, state = linear_attention_step(query, key, value)
    with pytest.raises(
        ValueError,
        match=r"state.kv must have shape \(\.\.\., F, Ev\) = \(\.\.\., 3, 2\); got \(2, 3, 4\)",
    ):
        linear_attention_step(query, key, value[..., :2], state)
    with pytest.raises(
        ValueError, match=r"state.k_sum must have shape \(\.\.\., F\) = \(\.\.\., 3\); got \(2, 5\)"
    ):
        linear_attention_step(query, key, value, LinearAttentionState(state.kv, randn(2, 5)))
    with pytest.raises(
        TypeError, match=r"state must be a LinearAttentionState\(kv, k_sum\) or None; got Tensor"
    ):
        linear_attention_step(query, key, value, state.kv)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"state.kv must have the dtype of query \(torch.float64\); got torch.float32",
    ):
        linear_attention_step(
            query, key, value, LinearAttentionState(state.kv.float(), state.k_sum)
        )


def test_bad_input_to_random_features_and_performer() -> None:
    query, key, value = randn(5, 8), randn(5, 8), randn(5, 2)
    with pytest.raises(
        ValueError,
        match=r"projection must have shape \(m, E\) with E = 8 like query \(5, 8\); got \(16, 4\)",
    ):
        performer_attention(query, key, value, randn(16, 4))
    with pytest.raises(ValueError, match=r"projection must have 2 dims \(m, E\); got shape \(8,\)"):
        performer_attention(query, key, value, randn(8))
    with pytest.raises(
        TypeError, match=r"projection must have the dtype of query \(torch.float64\)"
    ):
        performer_attention(query, key, value, randn(16, 8).float())
    with pytest.raises(
        ValueError, match=r"causal needs as many keys as queries \(L == S\); got L = 2 and S = 5"
    ):
        performer_attention(query[:2], key, value, randn(16, 8), causal=True)
    with pytest.raises(
        ValueError,
        match=r"projection must have shape \(m, E\) with E = 8 like x \(5, 8\); got \(3, 5\)",
    ):
        positive_random_features(query, randn(3, 5))
    with pytest.raises(
        TypeError, match=r"x must be a floating-point tensor; got dtype torch.int64"
    ):
        positive_random_features(torch.ones(3, dtype=torch.int64), randn(2, 3))


def test_bad_input_to_orthogonal_gaussian() -> None:
    with pytest.raises(ValueError, match=r"num_features must be at least 1; got 0"):
        orthogonal_gaussian(0, 4)
    with pytest.raises(ValueError, match=r"dim must be at least 1; got -2"):
        orthogonal_gaussian(4, -2)
    with pytest.raises(TypeError, match=r"dim must be an int; got float"):
        orthogonal_gaussian(4, 2.0)  # type: ignore[arg-type]
