"""Kernels and Nadaraya-Watson regression (attention pooling without parameters)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from attention_book import (
    KERNELS,
    boxcar_kernel,
    epanechnikov_kernel,
    gaussian_kernel,
    nadaraya_watson,
    triangular_kernel,
)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_integrate_to_one_and_are_symmetric(name: str) -> None:
    u = torch.linspace(-8, 8, 160_001, dtype=torch.float64)
    density = KERNELS[name](u)
    assert (density >= 0).all()
    torch.testing.assert_close(torch.trapezoid(density, u).item(), 1.0, rtol=0, atol=1e-4)
    torch.testing.assert_close(density, density.flip(0))


def test_kernel_values_and_names() -> None:
    u = torch.tensor([0.0, 0.5, 1.0, 1.5, -0.5], dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_kernel(u),
        torch.tensor(
            [math.exp(-x * x / 2) / math.sqrt(2 * math.pi) for x in u.tolist()], dtype=torch.float64
        ),
    )
    assert boxcar_kernel(u).tolist() == [0.5, 0.5, 0.5, 0.0, 0.5]
    # Epanechnikov is the parabola 3/4 (1 - u^2); the triangle 1 - |u| is another kernel.
    assert epanechnikov_kernel(u).tolist() == [0.75, 0.5625, 0.0, 0.0, 0.5625]
    assert triangular_kernel(u).tolist() == [1.0, 0.5, 0.0, 0.0, 0.5]
    assert boxcar_kernel(u.float()).dtype == torch.float32


def explicit(
    query: Tensor, key: Tensor, value: Tensor, kernel_fn: object, bandwidth: float
) -> Tensor:
    """The formula, one query at a time."""
    rows = []
    for q in query.tolist():
        k = kernel_fn((q - key) / bandwidth)  # type: ignore[operator]
        rows.append((k * value).sum() / k.sum())
    return torch.stack(rows)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_matches_the_formula(name: str) -> None:
    key = torch.linspace(0, 5, 23, dtype=torch.float64)
    value = torch.sin(key)
    query = torch.tensor([0.1, 1.7, 2.5, 4.9], dtype=torch.float64)
    output, weights = nadaraya_watson(query, key, value, kernel=name, bandwidth=0.7)  # type: ignore[arg-type]
    assert weights is not None
    assert weights.shape == (4, 23)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(output, explicit(query, key, value, KERNELS[name], 0.7))


def test_callable_kernel_and_vector_values() -> None:
    key = torch.linspace(0, 1, 5)
    value = torch.stack([key, 2 * key], dim=1)  # (S, Ev)
    query = torch.tensor([0.3, 0.6])

    def cosine(u: Tensor) -> Tensor:
        return torch.where(u.abs() <= 1, torch.cos(math.pi * u / 2), 0.0)

    output, _ = nadaraya_watson(query, key, value, kernel=cosine, bandwidth=0.5)
    assert output.shape == (2, 2)
    torch.testing.assert_close(output[:, 0], explicit(query, key, key, cosine, 0.5))
    torch.testing.assert_close(output[:, 1], 2 * output[:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_very_narrow_gaussian_returns_the_nearest_target(dtype: torch.dtype) -> None:
    key = torch.tensor([0.0, 1.0, 2.0, 3.5], dtype=dtype)
    value = torch.tensor([10.0, 11.0, 12.0, 13.0], dtype=dtype)
    query = torch.tensor([0.2, 1.45, 2.9, 100.0], dtype=dtype)
    output, _ = nadaraya_watson(query, key, value, bandwidth=1e-3)
    torch.testing.assert_close(output, torch.tensor([10.0, 11.0, 13.0, 13.0], dtype=dtype))


@pytest.mark.parametrize("name", ["boxcar", "epanechnikov", "triangular"])
def test_compact_kernel_without_keys_in_support_gives_zeros_not_nan(name: str) -> None:
    key = torch.tensor([0.0, 1.0], dtype=torch.float64)
    value = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    query = torch.tensor([0.1, 5.0], dtype=torch.float64, requires_grad=True)
    output, weights = nadaraya_watson(query, key, value, kernel=name, bandwidth=0.5)  # type: ignore[arg-type]
    assert weights is not None
    assert torch.equal(weights[1], torch.zeros(2, dtype=torch.float64))
    assert output[1].item() == 0.0
    assert output[0].item() == 3.0
    output.sum().backward()  # type: ignore[no-untyped-call]
    assert value.grad is not None
    assert value.grad.tolist() == [1.0, 0.0]
    assert query.grad is None or torch.isfinite(query.grad).all()


def test_wider_bandwidth_gives_smoother_weights() -> None:
    key = torch.linspace(0, 5, 50)
    query = torch.tensor([2.5])
    narrow = nadaraya_watson(query, key, key, bandwidth=0.1).weights
    wide = nadaraya_watson(query, key, key, bandwidth=2.0).weights
    assert narrow is not None
    assert wide is not None
    assert narrow.max() > wide.max()


def test_gradcheck_in_float64() -> None:
    key = torch.linspace(0, 1, 6, dtype=torch.float64, requires_grad=True)
    value = torch.randn(6, dtype=torch.float64, requires_grad=True)
    query = torch.tensor([0.2, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: nadaraya_watson(q, k, v, bandwidth=0.3).output, (query, key, value)
    )
    assert torch.autograd.gradcheck(
        lambda q, k, v: nadaraya_watson(q, k, v, kernel="epanechnikov", bandwidth=0.45).output,
        (query, key, value),
    )
