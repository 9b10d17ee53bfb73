"""The kernel-regression data set: its numbers, its determinism, its manners with the RNG."""

from __future__ import annotations

import math

import torch

from attention_book import KernelRegressionData, kernel_regression_data, true_function


def test_shapes_range_and_order() -> None:
    data = kernel_regression_data()
    assert isinstance(data, KernelRegressionData)
    assert data.x_train.shape == data.y_train.shape == (50,)
    assert (data.x_train >= 0).all()
    assert (data.x_train < 5).all()
    assert torch.equal(data.x_train, data.x_train.sort().values)
    assert torch.equal(data.x_test, torch.arange(0, 5, 0.1))
    assert data.x_test.shape == (50,)
    torch.testing.assert_close(data.y_truth, true_function(data.x_test))


def test_stays_in_range_for_many_seeds_and_sizes() -> None:
    for seed in range(20):
        x_train = kernel_regression_data(200, seed=seed).x_train
        assert x_train.min() >= 0
        assert x_train.max() < 5


def test_deterministic_per_seed() -> None:
    first, again, other = (
        kernel_regression_data(seed=1),
        kernel_regression_data(seed=1),
        kernel_regression_data(seed=2),
    )
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.x_train, other.x_train)


def test_does_not_touch_the_global_rng() -> None:
    state = torch.random.get_rng_state()
    kernel_regression_data(n_train=30, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_noise() -> None:
    clean = kernel_regression_data(noise_std=0.0)
    torch.testing.assert_close(clean.y_train, true_function(clean.x_train))
    noisy = kernel_regression_data(n_train=5000, noise_std=0.5)
    residual = noisy.y_train - true_function(noisy.x_train)
    assert abs(residual.std().item() - 0.5) < 0.03
    assert abs(residual.mean().item()) < 0.03


def test_true_function() -> None:
    x = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    expected = [2 * math.sin(v) + v**0.8 for v in x.tolist()]
    torch.testing.assert_close(true_function(x), torch.tensor(expected, dtype=torch.float64))
