"""Positional information against independent references.

sinusoidal_positions and PositionalEncoding against the formula written with math;
rotary_embedding and RotaryEmbedding against complex multiplication in float64 (Meta's
formulation of RoPE), the two pair conventions against each other, and the properties
that make rotary embeddings useful; LearnedPositionalEmbedding against x + P[:L].
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from attention_book import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RotaryEmbedding,
    get_device,
    rotary_embedding,
    sinusoidal_positions,
)


def formula(num_positions: int, dim: int) -> torch.Tensor:
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    for i in range(num_positions):
        for column in range(dim):
            two_j = column - column % 2
            angle = i / 10000 ** (two_j / dim)
            table[i, column] = math.sin(angle) if column % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize(("num_positions", "dim"), [(1, 1), (7, 4), (9, 5), (30, 32), (4, 0)])
def test_matches_the_formula(num_positions: int, dim: int) -> None:
    table = sinusoidal_positions(num_positions, dim, dtype=torch.float64)
    assert table.shape == (num_positions, dim)
    torch.testing.assert_close(table, formula(num_positions, dim), rtol=0, atol=1e-12)


def test_default_dtype_and_float32_values() -> None:
    table = sinusoidal_positions(10, 6)
    assert table.dtype == torch.get_default_dtype()
    torch.testing.assert_close(table, formula(10, 6).float())


def test_odd_dim_ends_with_a_sine() -> None:
    table = sinusoidal_positions(5, 3, dtype=torch.float64)
    torch.testing.assert_close(
        table[:, 2], torch.sin(torch.arange(5.0, dtype=torch.float64) / 10000 ** (2 / 3))
    )


class TestPositionalEncoding:
    def test_adds_the_table_and_keeps_it_as_a_buffer(self) -> None:
        module = PositionalEncoding(6, dropout=0.0, max_len=20).eval()
        x = torch.randn(3, 8, 6)
        torch.testing.assert_close(module(x), x + formula(8, 6).float())
        assert "P" in module.state_dict()
        assert dict(module.named_buffers())["P"].shape == (20, 6)
        assert list(module.parameters()) == []
        assert module.double().P.dtype == torch.float64
        assert "max_len=20" in repr(module)

    def test_accepts_length_up_to_max_len_and_keeps_dtype(self) -> None:
        module = PositionalEncoding(4, max_len=5)
        x = torch.zeros(2, 5, 4, dtype=torch.float64)
        out = module(x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out[0], formula(5, 4), rtol=0, atol=1e-6)

    def test_dropout_in_training_only(self) -> None:
        module = PositionalEncoding(16, dropout=0.5)
        x = torch.ones(4, 10, 16)
        out = module.train()(x)
        assert (out == 0).any()
        kept = out != 0
        torch.testing.assert_close(out[kept], ((x + module.P[:10]) * 2)[kept])
        torch.testing.assert_close(module.eval()(x), x + module.P[:10])

    def test_gradcheck_in_float64(self) -> None:
        module = PositionalEncoding(3, max_len=4).double()
        x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(module, (x,))


def rotary_reference(
    x: torch.Tensor, positions: torch.Tensor, *, base: float, interleaved: bool
) -> torch.Tensor:
    """RoPE as complex multiplication in float64: pair i is a complex number times e^{i p θ_i}."""
    x = x.double()
    dim = x.shape[-1]
    half = dim // 2
    theta = torch.tensor([base ** (-2 * i / dim) for i in range(half)], dtype=torch.float64)
    rotation = torch.polar(
        torch.ones(len(positions), half, dtype=torch.float64), positions.double()[:, None] * theta
    )  # (L, E/2) complex
    if interleaved:
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], half, 2).contiguous())
        return torch.view_as_real(pairs * rotation).flatten(-2)
    pairs = torch.complex(x[..., :half], x[..., half:])
    rotated = pairs * rotation
    return torch.cat((rotated.real, rotated.imag), dim=-1)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize(
    ("shape", "base"),
    [((1, 2), 10000.0), ((5, 8), 10000.0), ((2, 3, 7, 6), 100.0), ((97, 64), 500000.0)],
)
def test_rotary_matches_complex_multiplication(
    shape: tuple[int, ...], base: float, interleaved: bool
) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    positions = torch.arange(shape[-2])
    expected = rotary_reference(x, positions, base=base, interleaved=interleaved)
    actual = rotary_embedding(x, base=base, interleaved=interleaved)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    assert torch.equal(rotary_embedding(x, positions, base=base, interleaved=interleaved), actual)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotary_with_given_positions_float32(interleaved: bool) -> None:
    x = torch.randn(3, 6, 8)  # (N, L, E)
    positions = torch.tensor([-2.5, 0.0, 7.0, 1000.0, 3.25, 3.25])  # any real number
    expected = rotary_reference(x, positions, base=10000.0, interleaved=interleaved).float()
    actual = rotary_embedding(x, positions, interleaved=interleaved)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected)
    # rows at the same position get the same rotation; position 0 is the identity
    torch.testing.assert_close(actual[:, 1], x[:, 1])


def test_the_two_conventions_are_one_map_up_to_a_permutation() -> None:
    dim = 10
    x = torch.randn(4, 7, dim, dtype=torch.float64)
    # interleaved pairs (2i, 2i+1) become half-split pairs (i, i + E/2) under this permutation
    perm = torch.cat((torch.arange(0, dim, 2), torch.arange(1, dim, 2)))  # 0, 2, ..., 1, 3, ...
    inverse = torch.argsort(perm)
    interleaved = rotary_embedding(x, interleaved=True)
    half_split = rotary_embedding(x[..., perm], interleaved=False)[..., inverse]
    torch.testing.assert_close(half_split, interleaved, rtol=0, atol=1e-12)
    # ... and the two conventions really differ without the permutation
    assert not torch.allclose(rotary_embedding(x, interleaved=False), interleaved)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotated_dot_products_depend_only_on_the_position_difference(interleaved: bool) -> None:
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def score(m: float, n: float) -> torch.Tensor:
        rq = rotary_embedding(q[None], torch.tensor([m]), interleaved=interleaved)[0]
        rk = rotary_embedding(k[None], torch.tensor([n]), interleaved=interleaved)[0]
        return rq @ rk

    for m, n in [(0, 3), (2, 9), (-4, 4), (1.5, 0.0)]:
        shifted = [score(m + shift, n + shift) for shift in (0.0, 1.0, 17.0, 123.5)]
        for value in shifted[1:]:
            torch.testing.assert_close(value, shifted[0], rtol=0, atol=1e-12)
    # the score does change with the difference (a test that can fail)
    assert not torch.allclose(score(0, 1), score(0, 2))
    torch.testing.assert_close(score(5, 5), q @ k, rtol=0, atol=1e-12)


def test_rotary_keeps_norms_and_gradients() -> None:
    x = torch.randn(2, 9, 12, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(rotary_embedding(x).norm(dim=-1), x.norm(dim=-1))
    assert torch.autograd.gradcheck(lambda t: rotary_embedding(t, interleaved=False), (x,))


def test_rotary_on_the_inputs_device() -> None:
    device = get_device()
    x = torch.randn(2, 5, 8, device=device)
    out = rotary_embedding(x, torch.arange(5, device=device))
    assert out.device == x.device
    expected = rotary_reference(x.cpu(), torch.arange(5), base=10000.0, interleaved=True)
    torch.testing.assert_close(out.cpu(), expected.float())


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: rotary_embedding(torch.randn(4, 5)),
            ValueError,
            "x must have an even number of features E (..., L, E); got E = 5",
        ),
        (
            lambda: rotary_embedding(torch.randn(4)),
            ValueError,
            "x must have at least 2 dims (..., L, E); got shape (4,)",
        ),
        (
            lambda: rotary_embedding(torch.ones(4, 2, dtype=torch.int64)),
            TypeError,
            "x must be a floating-point tensor; got dtype torch.int64",
        ),
        (
            lambda: rotary_embedding(torch.randn(4, 2), torch.arange(3)),
            ValueError,
            "positions must have shape (L,) = (4,), one per row of x; got (3,)",
        ),
        (
            lambda: rotary_embedding(torch.randn(4, 2), torch.ones(4, dtype=torch.bool)),
            TypeError,
            "positions must be a real (integer or floating-point) tensor; got dtype torch.bool",
        ),
        (
            lambda: rotary_embedding(torch.randn(4, 2), [0, 1, 2, 3]),  # type: ignore[arg-type]
            TypeError,
            "positions must be a torch.Tensor; got list",
        ),
        (
            lambda: rotary_embedding(torch.randn(4, 2), base=0.0),
            ValueError,
            "base must be a positive number; got 0.0",
        ),
        (
            lambda: rotary_embedding(torch.randn(4, 2), base="10000"),  # type: ignore[arg-type]
            TypeError,
            "base must be a positive number; got str",
        ),
        (
            lambda: RotaryEmbedding(7),
            ValueError,
            "dim must be even, one pair of features per angle; got dim = 7",
        ),
        (lambda: RotaryEmbedding(0), ValueError, "dim must be at least 2; got 0"),
        (lambda: RotaryEmbedding(4, max_len=0), ValueError, "max_len must be at least 1; got 0"),
        (
            lambda: RotaryEmbedding(4, base=-1.0),
            ValueError,
            "base must be a positive number; got -1.0",
        ),
        (
            lambda: RotaryEmbedding(4)(torch.randn(2, 3, 6)),
            ValueError,
            "x must have dim = 4 features (..., L, 4); got shape (2, 3, 6)",
        ),
        (
            lambda: RotaryEmbedding(4)(torch.randn(3, 4), torch.tensor([0.0, 1, 2])),
            TypeError,
            "positions must be an integer tensor to index the cache; got dtype torch.float32",
        ),
        (
            lambda: RotaryEmbedding(4)(torch.randn(3, 4), torch.tensor([0, -1, 2])),
            ValueError,
            "positions must be non-negative; got -1",
        ),
        (
            lambda: LearnedPositionalEmbedding(4, 3)(torch.randn(2, 5, 3)),
            ValueError,
            "x must have at most max_len = 4 positions (N, L, 3); got L = 5",
        ),
        (
            lambda: LearnedPositionalEmbedding(4, 3)(torch.randn(2, 4, 2)),
            ValueError,
            "x must have dim = 3 features (N, L, 3); got shape (2, 4, 2)",
        ),
        (lambda: LearnedPositionalEmbedding(0, 3), ValueError, "max_len must be at least 1; got 0"),
        (
            lambda: LearnedPositionalEmbedding(4, 3, dropout=1.0),
            ValueError,
            "dropout must lie in [0, 1); got 1.0",
        ),
    ],
)
def test_bad_input_is_named(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()  # type: ignore[operator]


class TestRotaryEmbedding:
    @pytest.mark.parametrize("interleaved", [True, False])
    def test_equals_the_function_and_the_reference(self, interleaved: bool) -> None:
        module = RotaryEmbedding(8, base=1000.0, interleaved=interleaved, max_len=32)
        x = torch.randn(2, 4, 11, 8)  # (N, H, L, E)
        expected = rotary_embedding(x, base=1000.0, interleaved=interleaved)
        torch.testing.assert_close(module(x), expected)
        positions = torch.tensor([5, 0, 31, 2, 2, 9, 1, 30, 7, 3, 4])
        torch.testing.assert_close(
            module(x, positions),
            rotary_reference(x, positions, base=1000.0, interleaved=interleaved).float(),
        )

    def test_cache_is_a_buffer_outside_the_state_dict(self) -> None:
        module = RotaryEmbedding(6, max_len=10)
        assert set(dict(module.named_buffers())) == {"cos", "sin"}
        assert module.cos.shape == module.sin.shape == (10, 3)
        assert list(module.state_dict()) == []
        assert list(module.parameters()) == []
        # a module built with another max_len loads the (empty) state dict strictly
        module.load_state_dict(RotaryEmbedding(6, max_len=99).state_dict(), strict=True)
        assert "max_len=10" in repr(module)
        assert "interleaved=True" in repr(module)

    def test_conversions_rebuild_the_cache_exactly(self) -> None:
        module = RotaryEmbedding(4, base=10.0, max_len=50).double()
        assert module.cos.dtype == torch.float64
        angles = torch.arange(50, dtype=torch.float64)[:, None] * torch.tensor(
            [1.0, 10**-0.5], dtype=torch.float64
        )
        torch.testing.assert_close(module.cos, angles.cos(), rtol=0, atol=1e-15)
        torch.testing.assert_close(module.sin, angles.sin(), rtol=0, atol=1e-15)
        x = torch.randn(3, 50, 4, dtype=torch.float64)
        expected = rotary_reference(x, torch.arange(50), base=10.0, interleaved=True)
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)
        module.float()
        assert module.cos.dtype == torch.float32
        torch.testing.assert_close(module.cos, angles.cos().float(), rtol=0, atol=0)

    def test_other_dtypes_are_computed_afresh(self) -> None:
        module = RotaryEmbedding(8)  # float32 cache
        x = torch.randn(5, 8, dtype=torch.float64)
        expected = rotary_reference(x, torch.arange(5), base=10000.0, interleaved=True)
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)
        assert module.cos.dtype == torch.float32

    def test_positions_beyond_max_len_grow_the_cache(self) -> None:
        module = RotaryEmbedding(4, max_len=3)
        x = torch.randn(2, 7, 4)
        torch.testing.assert_close(module(x), rotary_embedding(x))
        assert module.max_len == 7
        assert module.cos.shape == (7, 2)
        far = torch.tensor([0, 1, 2, 3, 4, 5, 100])
        torch.testing.assert_close(module(x, far), rotary_embedding(x, far))
        assert module.max_len == 101
        assert list(module.state_dict()) == []
        empty = module(torch.randn(2, 0, 4))  # no rows: nothing to rotate, no growth
        assert empty.shape == (2, 0, 4)
        assert module.max_len == 101

    def test_moves_with_the_module(self) -> None:
        device = get_device()
        module = RotaryEmbedding(4, max_len=5).to(device)
        assert module.cos.device.type == device.type
        x = torch.randn(1, 5, 4, device=device)
        torch.testing.assert_close(module(x).cpu(), rotary_embedding(x.cpu()))


class TestLearnedPositionalEmbedding:
    def test_adds_the_first_rows_of_a_learned_table(self) -> None:
        module = LearnedPositionalEmbedding(10, 6)
        assert [name for name, _ in module.named_parameters()] == ["P"]
        assert module.P.shape == (10, 6)
        assert "P" in module.state_dict()
        x = torch.randn(3, 7, 6)
        torch.testing.assert_close(module(x), x + module.P[:7])
        torch.testing.assert_close(module(x[:, :1]), x[:, :1] + module.P[0])
        assert "max_len=10, dim=6" in repr(module)

    def test_only_the_positions_used_receive_gradients(self) -> None:
        module = LearnedPositionalEmbedding(10, 4)
        module(torch.randn(2, 6, 4)).sum().backward()
        assert module.P.grad is not None
        torch.testing.assert_close(module.P.grad[:6], torch.full((6, 4), 2.0))
        assert torch.equal(module.P.grad[6:], torch.zeros(4, 4))

    def test_accepts_max_len_positions_and_drops_out_in_training(self) -> None:
        module = LearnedPositionalEmbedding(5, 16, dropout=0.5)
        x = torch.ones(4, 5, 16)
        out = module.train()(x)
        assert (out == 0).any()
        kept = out != 0
        torch.testing.assert_close(out[kept], ((x + module.P) * 2)[kept])
        torch.testing.assert_close(module.eval()(x), x + module.P)
