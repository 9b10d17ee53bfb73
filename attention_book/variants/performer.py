r"""Performer: softmax attention estimated with positive random features, linear in length.

Softmax attention's kernel :math:`\exp(\mathbf q^\top \mathbf k / \sqrt E)` is the
expectation of a dot product of positive random features (FAVOR+, Choromanski et al. 2021):

.. math::

    \phi(\mathbf x)_r = \frac{1}{\sqrt m}
    \exp\!\left(\mathbf w_r^\top \mathbf x - \frac{\lVert \mathbf x \rVert^2}{2}\right),
    \qquad
    \mathbb E\!\left[\phi(\mathbf x)^\top \phi(\mathbf y)\right] = \exp(\mathbf x^\top \mathbf y)

With these features in place of the softmax, :func:`performer_attention` is the linear
attention of :mod:`attention_book.variants.linear`: work linear in the length, an error that
falls like :math:`1/\sqrt m` in the number of features ``m``. :func:`orthogonal_gaussian`
draws the projections :math:`\mathbf w_r`, orthogonal in blocks, which lowers the error
against i.i.d. Gaussian rows.

Shapes: ``N`` batch (any leading dims ``...``, broadcast between the inputs), ``L`` queries,
``S`` keys and values, ``E`` query/key features, ``Ev`` value features, ``m`` random
features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book._checks import (
    check_attention_inputs,
    check_exact_ndim,
    check_float,
    check_int,
    check_same_dtype,
    fmt_shape,
)
from attention_book.variants.linear import _check_causal, _sums

__all__ = ["orthogonal_gaussian", "performer_attention", "positive_random_features"]


def orthogonal_gaussian(
    num_features: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Random projections whose rows are orthogonal in blocks of ``dim`` and each ``N(0, I)``.

    .. math::

        \mathbf w_r = \rho_r\, \mathbf u_r, \qquad
        \rho_r \sim \chi(d), \qquad
        (\mathbf u_{bd+1}, \dots, \mathbf u_{bd+d}) \text{ the rows of a uniform random
        orthogonal matrix}

    Each block of ``dim`` rows comes from the QR decomposition of a Gaussian ``(d, d)``
    matrix, with the signs of ``Q``'s columns fixed by the signs of ``R``'s diagonal (so
    ``Q`` is uniform on the orthogonal group). The row norms are drawn from the norms of
    Gaussian vectors, so each row alone is ``N(0, I)`` as in an i.i.d. projection, while
    rows in the same block never point the same way (Choromanski et al. 2021).

    Args:
        num_features: ``m``, the number of rows (``1`` or more); the last block is cut.
        dim: ``d``, the size of each row (``1`` or more).
        generator: Random generator, for reproducible draws.
        dtype: Floating dtype of the result; PyTorch's default if ``None``.

    Returns:
        ``(m, d)``.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is below 1.

    Example:
        >>> w = orthogonal_gaussian(6, 3, generator=torch.Generator().manual_seed(0))
        >>> w.shape
        torch.Size([6, 3])
        >>> gram = w[:3] @ w[:3].T  # one block: off the diagonal, zero
        >>> bool((gram - torch.diag(gram.diag())).abs().max() < 1e-5)
        True
    """
    check_int("num_features", num_features, minimum=1)
    check_int("dim", dim, minimum=1)
    num_blocks = -(-num_features // dim)
    gaussian = torch.randn(num_blocks, dim, dim, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(gaussian)  # (B, d, d) each
    signs = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0)  # (B, d)
    directions = (q * signs[:, None, :]).transpose(-2, -1)  # Q's columns as rows: orthonormal
    gaussian = torch.randn(num_blocks, dim, dim, generator=generator, dtype=dtype)
    norms: Tensor = torch.linalg.vector_norm(gaussian, dim=-1)  # (B, d): chi(d) norms
    rows: Tensor = directions * norms[..., None]  # (B, d, d)
    return rows.reshape(num_blocks * dim, dim)[:num_features]  # (B * d, d) -> (m, d)


def _check_projection(projection: object, x: Tensor, name: str) -> Tensor:
    """Check ``projection (m, E)`` against ``x (..., E)``; return it."""
    w = check_float("projection", projection)
    check_same_dtype("projection", w, name, x)
    check_exact_ndim("projection", w, 2, "(m, E)")
    if w.shape[-1] != x.shape[-1]:
        msg = (
            f"projection must have shape (m, E) with E = {x.shape[-1]} like {name} "
            f"{fmt_shape(x.shape)}; got {fmt_shape(w.shape)}"
        )
        raise ValueError(msg)
    return w


def _log_features(x: Tensor, projection: Tensor) -> Tensor:
    r""":math:`\mathbf w_r^\top \mathbf x - \lVert \mathbf x \rVert^2 / 2`: ``(..., E) -> (..., m)``."""
    return x @ projection.T - x.square().sum(dim=-1, keepdim=True) / 2  # (..., E) @ (E, m)


def positive_random_features(x: Tensor, projection: Tensor) -> Tensor:
    r"""Positive random features whose dot products estimate :math:`\exp(\mathbf x^\top \mathbf y)`.

    .. math::

        \phi(\mathbf x)_r = \frac{1}{\sqrt m}
        \exp\!\left(\mathbf w_r^\top \mathbf x - \frac{\lVert \mathbf x \rVert^2}{2}\right),
        \qquad
        \mathbb E_{\mathbf w \sim N(0, I)}\!\left[\phi(\mathbf x)^\top \phi(\mathbf y)\right]
        = \exp(\mathbf x^\top \mathbf y)

    (FAVOR+, Choromanski et al. 2021.) Every feature is positive, so the estimated weights
    are never negative. This is the plain formula; :func:`performer_attention` computes the
    same features with a guard against overflow.

    Args:
        x: ``(..., E)``.
        projection: ``(m, E)``, rows :math:`\mathbf w_r`, e.g. from :func:`orthogonal_gaussian`.

    Returns:
        ``(..., m)``.

    Raises:
        TypeError: If an input is not floating point or the dtypes differ.
        ValueError: If ``projection`` is not ``(m, E)`` with ``x``'s ``E``.

    Example:
        >>> x = torch.tensor([0.5, -0.5])
        >>> w = orthogonal_gaussian(20000, 2, generator=torch.Generator().manual_seed(0))
        >>> phi = positive_random_features(x, w)
        >>> phi.shape, round(float(phi @ phi), 1), round(float(torch.exp(x @ x)), 1)
        (torch.Size([20000]), 1.6, 1.6)
    """
    x = check_float("x", x)
    projection = _check_projection(projection, x, "x")
    return torch.exp(_log_features(x, projection)) / math.sqrt(projection.shape[0])


def performer_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    projection: Tensor,
    *,
    causal: bool = False,
) -> Tensor:
    r"""Softmax attention estimated with positive random features, in time linear in ``L``.

    .. math::

        \mathbf o_i \approx
        \frac{\sum_j \phi(\mathbf q_i')^\top \phi(\mathbf k_j')\, \mathbf v_j}
             {\sum_j \phi(\mathbf q_i')^\top \phi(\mathbf k_j')},
        \qquad \mathbf q' = \frac{\mathbf q}{E^{1/4}}, \quad \mathbf k' = \frac{\mathbf k}{E^{1/4}}

    with :math:`\phi` = :func:`positive_random_features`, so that
    :math:`\phi(\mathbf q')^\top \phi(\mathbf k')` estimates
    :math:`\exp(\mathbf q^\top \mathbf k / \sqrt E)`: :func:`linear_attention` with the
    softmax kernel's random features (Performer, Choromanski et al. 2021). The error against
    softmax attention falls like :math:`1/\sqrt m` as the number of features ``m`` grows.

    Against overflow, each query's features are divided by their own largest entry (the
    factor cancels between numerator and denominator). Keys get no such treatment: a factor
    that depends on other keys (the maximum over all keys, as a popular implementation
    takes) would let the last key change the first output in causal mode. A key's features
    are at most :math:`\exp(\lVert \mathbf w_r \rVert^2 / 2)` whatever the key (complete the
    square), finite in float32 for ``E`` up to about 100; very large keys give features that
    round to 0, and a query whose features all meet zeros gets output 0.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        projection: ``(m, E)``, e.g. ``orthogonal_gaussian(m, E)``.
        causal: Query ``i`` sees keys ``0..i`` only; needs ``L == S``.

    Returns:
        ``(..., L, Ev)``.

    Raises:
        TypeError: If an input is not floating point or the dtypes differ.
        ValueError: If the shapes do not fit together, ``projection`` is not ``(m, E)``, or
            ``causal`` comes with ``L != S``.

    Example:
        >>> from attention_book import scaled_dot_product_attention
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k, v = (torch.randn(1, 8, 4, generator=g) / 2 for _ in range(3))
        >>> exact = scaled_dot_product_attention(q, k, v).output
        >>> for m in (16, 4096):
        ...     w = orthogonal_gaussian(m, 4, generator=g)
        ...     print(m, bool((performer_attention(q, k, v, w) - exact).abs().max() < 0.05))
        16 False
        4096 True
    """
    query, key, value, _ = check_attention_inputs(query, key, value)
    projection = _check_projection(projection, query, "query")
    _check_causal(query, key, causal)
    scale = query.shape[-1] ** -0.25
    log_q = _log_features(query * scale, projection)  # (..., L, m)
    log_q = log_q - log_q.amax(dim=-1, keepdim=True).detach()  # its own row only: cancels
    phi_q, phi_k = torch.exp(log_q), torch.exp(_log_features(key * scale, projection))
    numerator, denominator = _sums(phi_q, phi_k, value, causal=causal)  # 1/sqrt(m) cancels
    # features are positive: a zero denominator means a zero numerator, and output 0
    return numerator / torch.where(denominator > 0, denominator, 1.0)
