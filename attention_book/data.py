"""The toy data set of kernel regression: noisy samples of a smooth curve on [0, 5)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from attention_book._checks import check_float, check_int

__all__ = ["KernelRegressionData", "kernel_regression_data", "true_function"]


def true_function(x: Tensor) -> Tensor:
    r"""The curve the regression tries to recover, element-wise.

    .. math::

        f(x) = 2 \sin x + x^{0.8}

    Args:
        x: Non-negative inputs, any shape (``x^0.8`` is NaN for negative ``x``).

    Returns:
        Same shape as ``x``.

    Example:
        >>> true_function(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 2.6829])
    """
    x = check_float("x", x)
    return 2 * torch.sin(x) + x**0.8


class KernelRegressionData(NamedTuple):
    """Training pairs, test inputs and the noise-free curve at the test inputs.

    Attributes:
        x_train: ``(n_train,)`` inputs, uniform on ``[0, 5)``, sorted.
        y_train: ``(n_train,)`` targets, ``true_function(x_train)`` plus Gaussian noise.
        x_test: ``(50,)`` test inputs ``0, 0.1, ..., 4.9``.
        y_truth: ``(50,)`` ``true_function(x_test)``, without noise.

    Example:
        >>> x_train, y_train, x_test, y_truth = kernel_regression_data(n_train=10)
        >>> x_train.shape, x_test.shape
        (torch.Size([10]), torch.Size([50]))
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_truth: Tensor


def kernel_regression_data(
    n_train: int = 50, *, noise_std: float = 0.5, seed: int = 0
) -> KernelRegressionData:
    r"""Draw the kernel-regression data set, reproducibly and without touching the global RNG.

    .. math::

        x_i \sim U[0, 5), \qquad y_i = 2 \sin x_i + x_i^{0.8} + \epsilon_i,
        \qquad \epsilon_i \sim \mathcal N(0, \sigma^2)

    Args:
        n_train: Number of training pairs.
        noise_std: :math:`\sigma`, the standard deviation of the noise.
        seed: Seed of the local ``torch.Generator``; the same seed gives the same data.

    Returns:
        :class:`KernelRegressionData` (float32 tensors).

    Raises:
        ValueError: If ``n_train < 1`` or ``noise_std < 0``.

    Example:
        >>> data = kernel_regression_data()
        >>> data.x_train.shape, data.x_test.shape
        (torch.Size([50]), torch.Size([50]))
        >>> bool((data.x_train[:-1] <= data.x_train[1:]).all())
        True
    """
    check_int("n_train", n_train, minimum=1)
    if not noise_std >= 0:
        msg = f"noise_std must be non-negative; got {noise_std}"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    x_train = torch.sort(torch.rand(n_train, generator=generator) * 5).values
    noise = torch.randn(n_train, generator=generator) * noise_std
    y_train = true_function(x_train) + noise
    x_test = torch.arange(0, 5, 0.1)
    return KernelRegressionData(x_train, y_train, x_test, true_function(x_test))
