"""Sinusoidal positional encoding: tell attention, which ignores order, where each token sits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attention_book._checks import check_float, check_int, check_ndim, check_probability, fmt_shape

__all__ = ["PositionalEncoding", "sinusoidal_positions"]


def sinusoidal_positions(
    num_positions: int, dim: int, *, dtype: torch.dtype | None = None
) -> Tensor:
    r"""The table of sines and cosines of Vaswani et al. (2017), one row per position.

    .. math::

        P_{i, 2j} = \sin\!\left(\frac{i}{10000^{2j/d}}\right), \qquad
        P_{i, 2j+1} = \cos\!\left(\frac{i}{10000^{2j/d}}\right)

    An odd ``dim`` works: the last column is a sine.

    Args:
        num_positions: Number of rows, positions ``0 .. num_positions - 1``.
        dim: ``d``, number of columns.
        dtype: Floating-point dtype of the result; defaults to ``torch.get_default_dtype()``.
            The table is computed in float64 and then converted.

    Returns:
        ``(num_positions, dim)``.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is negative.

    Example:
        >>> sinusoidal_positions(3, 4)
        tensor([[ 0.0000,  1.0000,  0.0000,  1.0000],
                [ 0.8415,  0.5403,  0.0100,  0.9999],
                [ 0.9093, -0.4161,  0.0200,  0.9998]])
    """
    check_int("num_positions", num_positions, minimum=0)
    check_int("dim", dim, minimum=0)
    positions = torch.arange(num_positions, dtype=torch.float64)  # (P,)
    two_j = torch.arange(0, dim, 2, dtype=torch.float64)  # (ceil(d/2),): 0, 2, 4, ...
    # (P, 1) / (ceil(d/2),) -> (P, ceil(d/2))
    angles = positions[:, None] / 10000.0 ** (two_j / dim)
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)  # columns 0, 2, 4, ...
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])  # columns 1, 3, 5, ...
    return table.to(torch.get_default_dtype() if dtype is None else dtype)


class PositionalEncoding(nn.Module):
    r"""Add the sinusoidal table to a sequence of embeddings, then apply dropout.

    .. math::

        \mathbf Y = \operatorname{dropout}(\mathbf X + \mathbf P_{:L})

    The table ``P`` of shape ``(max_len, dim)`` is a registered buffer: it moves with
    ``.to(device)`` and is saved in the ``state_dict``, but it is not a parameter.

    Args:
        dim: Features per position, ``d``.
        dropout: Dropout probability applied after the addition, in training mode.
        max_len: Longest sequence the table covers.

    Raises:
        ValueError: If a size is smaller than 1 or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> encoding = PositionalEncoding(dim=4).eval()
        >>> encoding(torch.zeros(1, 2, 4))
        tensor([[[0.0000, 1.0000, 0.0000, 1.0000],
                 [0.8415, 0.5403, 0.0100, 0.9999]]])
    """

    P: Tensor

    def __init__(self, dim: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        check_int("dim", dim, minimum=1)
        check_int("max_len", max_len, minimum=1)
        check_probability("dropout", dropout)
        self.dim, self.max_len = dim, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("P", sinusoidal_positions(max_len, dim))

    def forward(self, x: Tensor) -> Tensor:
        """Add positions ``0 .. L-1`` to ``x (N, L, dim)`` (any leading dims ``(..., L, dim)``).

        Returns:
            ``(N, L, dim)``, same dtype as ``x``.

        Raises:
            TypeError: If ``x`` is not floating point.
            ValueError: If ``x`` does not end in ``dim`` features or ``L > max_len``.
        """
        x = check_float("x", x)
        check_ndim("x", x, 2, f"(N, L, {self.dim})")
        num_positions, features = x.shape[-2], x.shape[-1]
        if features != self.dim:
            msg = f"x must have dim = {self.dim} features (N, L, {self.dim}); got shape {fmt_shape(x.shape)}"
            raise ValueError(msg)
        if num_positions > self.max_len:
            msg = (
                f"x must have at most max_len = {self.max_len} positions (N, L, {self.dim}); "
                f"got L = {num_positions}"
            )
            raise ValueError(msg)
        # (N, L, d) + (L, d) -> (N, L, d)
        encoded: Tensor = self.dropout(x + self.P[:num_positions].to(x.dtype))
        return encoded

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"dim={self.dim}, max_len={self.max_len}"
