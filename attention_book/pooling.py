"""Attention pooling without learning: kernels and Nadaraya-Watson regression."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from attention_book._checks import check_float, check_same_dtype, fmt_shape
from attention_book.output import AttentionOutput

__all__ = [
    "KERNELS",
    "KernelName",
    "boxcar_kernel",
    "epanechnikov_kernel",
    "gaussian_kernel",
    "nadaraya_watson",
    "triangular_kernel",
]

#: The names :func:`nadaraya_watson` accepts for ``kernel``.
KernelName = Literal["gaussian", "boxcar", "epanechnikov", "triangular"]


def gaussian_kernel(u: Tensor) -> Tensor:
    r"""The standard normal density, element-wise.

    .. math::

        K(u) = \frac{1}{\sqrt{2\pi}} e^{-u^2/2}

    Args:
        u: Any shape.

    Returns:
        Same shape as ``u``.

    Example:
        >>> gaussian_kernel(torch.tensor([0.0, 1.0]))
        tensor([0.3989, 0.2420])
    """
    return torch.exp(-(u**2) / 2) / math.sqrt(2 * math.pi)


def boxcar_kernel(u: Tensor) -> Tensor:
    r"""The uniform (boxcar) density on ``[-1, 1]``, element-wise.

    .. math::

        K(u) = \tfrac12 \, \mathbf 1[|u| \le 1]

    Args:
        u: Any shape.

    Returns:
        Same shape as ``u``.

    Example:
        >>> boxcar_kernel(torch.tensor([0.0, 1.0, 1.5]))
        tensor([0.5000, 0.5000, 0.0000])
    """
    return torch.where(u.abs() <= 1, 0.5, 0.0).to(u.dtype)


def epanechnikov_kernel(u: Tensor) -> Tensor:
    r"""The Epanechnikov density (the parabola), element-wise.

    .. math::

        K(u) = \tfrac34 (1 - u^2) \, \mathbf 1[|u| \le 1]

    Not to be confused with the triangular kernel :math:`1 - |u|`
    (:func:`triangular_kernel`), which one well-known text labels "Epanechnikov".

    Args:
        u: Any shape.

    Returns:
        Same shape as ``u``.

    Example:
        >>> epanechnikov_kernel(torch.tensor([0.0, 0.5, 2.0]))
        tensor([0.7500, 0.5625, 0.0000])
    """
    return 0.75 * (1 - u**2).clamp(min=0)


def triangular_kernel(u: Tensor) -> Tensor:
    r"""The triangular density, element-wise.

    .. math::

        K(u) = (1 - |u|) \, \mathbf 1[|u| \le 1]

    Args:
        u: Any shape.

    Returns:
        Same shape as ``u``.

    Example:
        >>> triangular_kernel(torch.tensor([0.0, 0.5, 2.0]))
        tensor([1.0000, 0.5000, 0.0000])
    """
    return (1 - u.abs()).clamp(min=0)


#: The four named kernels, by the name :func:`nadaraya_watson` accepts.
KERNELS: dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": gaussian_kernel,
    "boxcar": boxcar_kernel,
    "epanechnikov": epanechnikov_kernel,
    "triangular": triangular_kernel,
}


def nadaraya_watson(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    kernel: KernelName | Callable[[Tensor], Tensor] = "gaussian",
    bandwidth: float = 1.0,
) -> AttentionOutput:
    r"""Nadaraya-Watson kernel regression: each query averages the values of nearby keys.

    .. math::

        f(q) = \sum_{i=1}^{S} \frac{K\big((q - k_i)/h\big)}
        {\sum_{j=1}^{S} K\big((q - k_j)/h\big)} \, v_i

    This is attention pooling with weights from a fixed kernel. A query with no key inside
    a compact kernel's support gets all-zero weights and output 0 (the package's rule for
    rows with nothing to attend to), never NaN. The Gaussian kernel is normalised in the log
    domain, as ``softmax(-u^2 / 2)``, so a very small ``bandwidth`` still returns the value
    of the nearest key instead of underflowing to zeros.

    Args:
        query: ``(L,)`` query points.
        key: ``(S,)`` key points (the training inputs).
        value: ``(S,)`` or ``(S, Ev)`` values (the training targets).
        kernel: One of ``"gaussian"``, ``"boxcar"``, ``"epanechnikov"``, ``"triangular"``,
            or any callable ``kernel(u) -> Tensor`` applied element-wise, non-negative.
        bandwidth: :math:`h > 0`, the width of the kernel.

    Returns:
        :class:`AttentionOutput` with ``output (L,)`` or ``(L, Ev)`` and ``weights (L, S)``.

    Raises:
        TypeError: If a tensor is not floating point or the dtypes differ.
        ValueError: If a shape is wrong, ``kernel`` is an unknown name or ``bandwidth`` is
            not positive.

    Example:
        >>> key = torch.tensor([0.0, 1.0, 2.0])
        >>> value = torch.tensor([0.0, 10.0, 20.0])
        >>> output, weights = nadaraya_watson(
        ...     torch.tensor([0.5, 9.0]), key, value, kernel="boxcar", bandwidth=0.6
        ... )
        >>> output  # 9.0 has no key within 0.6: output 0, not NaN
        tensor([5., 0.])
    """
    query, key, value = (
        check_float(n, t) for n, t in (("query", query), ("key", key), ("value", value))
    )
    check_same_dtype("key", key, "query", query)
    check_same_dtype("value", value, "query", query)
    if query.ndim != 1 or key.ndim != 1:
        msg = (
            f"query and key must be 1-D, (L,) and (S,); got query of shape "
            f"{fmt_shape(query.shape)} and key of shape {fmt_shape(key.shape)}"
        )
        raise ValueError(msg)
    if value.ndim not in (1, 2) or value.shape[0] != key.shape[0]:
        num_keys = key.shape[0]
        msg = (
            f"value must have shape (S,) = ({num_keys},) or (S, Ev) = ({num_keys}, Ev); "
            f"got {fmt_shape(value.shape)}"
        )
        raise ValueError(msg)
    if not bandwidth > 0:
        msg = f"bandwidth must be positive; got {bandwidth}"
        raise ValueError(msg)
    if isinstance(kernel, str) and kernel not in KERNELS:
        msg = f"kernel must be one of {', '.join(map(repr, KERNELS))} or a callable; got {kernel!r}"
        raise ValueError(msg)

    u = (query[:, None] - key[None, :]) / bandwidth  # (L, 1) - (1, S) -> (L, S)
    if isinstance(kernel, str) and kernel == "gaussian":
        weights = torch.softmax(-(u**2) / 2, dim=-1)  # the 1/sqrt(2 pi) cancels
    else:
        kernel_fn = KERNELS[kernel] if isinstance(kernel, str) else kernel
        density = kernel_fn(u)  # (L, S)
        total = density.sum(dim=-1, keepdim=True)  # (L, 1)
        # A row with no key in the support has total 0: divide by 1 there, its weights are 0.
        weights = density / torch.where(total > 0, total, torch.ones_like(total))
    output = weights @ value  # (L, S) @ (S,) -> (L,), or (L, S) @ (S, Ev) -> (L, Ev)
    return AttentionOutput(output, weights)
