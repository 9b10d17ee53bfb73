"""sinusoidal_positions and PositionalEncoding against the formula written with math."""

from __future__ import annotations

import math

import pytest
import torch

from attention_book import PositionalEncoding, sinusoidal_positions


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
