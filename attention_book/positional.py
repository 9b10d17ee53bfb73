"""Positional information for attention, which ignores order: sinusoidal, learned and rotary."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_float,
    check_int,
    check_ndim,
    check_probability,
    check_tensor,
    fmt_shape,
)

__all__ = [
    "LearnedPositionalEmbedding",
    "PositionalEncoding",
    "RotaryEmbedding",
    "rotary_embedding",
    "sinusoidal_positions",
]


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


def _check_sequence(x: Tensor, dim: int, max_len: int) -> int:
    """Check that ``x`` is ``(N, L, dim)`` with ``L <= max_len``; return ``L``."""
    check_ndim("x", x, 2, f"(N, L, {dim})")
    num_positions, features = x.shape[-2], x.shape[-1]
    if features != dim:
        msg = f"x must have dim = {dim} features (N, L, {dim}); got shape {fmt_shape(x.shape)}"
        raise ValueError(msg)
    if num_positions > max_len:
        msg = (
            f"x must have at most max_len = {max_len} positions (N, L, {dim}); "
            f"got L = {num_positions}"
        )
        raise ValueError(msg)
    return int(num_positions)


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
        num_positions = _check_sequence(x, self.dim, self.max_len)
        # (N, L, d) + (L, d) -> (N, L, d)
        encoded: Tensor = self.dropout(x + self.P[:num_positions].to(x.dtype))
        return encoded

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"dim={self.dim}, max_len={self.max_len}"


def _check_base(base: float) -> float:
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        msg = f"base must be a positive number; got {type(base).__name__}"
        raise TypeError(msg)
    if not base > 0:
        msg = f"base must be a positive number; got {base}"
        raise ValueError(msg)
    return float(base)


def _rotary_angles(positions: Tensor, dim: int, base: float) -> Tensor:
    """Angles ``p * base^(-2i/dim)``, ``(L,) -> (L, dim/2)``, in float64 (float32 on MPS)."""
    dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    two_i = torch.arange(0, dim, 2, dtype=dtype, device=positions.device)  # (E/2,): 0, 2, 4, ...
    inverse_frequencies = base ** (-two_i / dim)  # (E/2,)
    return positions.to(dtype)[:, None] * inverse_frequencies  # (L, 1) * (E/2,) -> (L, E/2)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, *, interleaved: bool) -> Tensor:
    """Rotate the feature pairs of ``x (..., L, E)`` by the angles of ``cos, sin (L, E/2)``."""
    half = x.shape[-1] // 2
    if interleaved:
        first, second = x[..., 0::2], x[..., 1::2]  # pairs (2i, 2i+1): (..., L, E/2) each
    else:
        first, second = x[..., :half], x[..., half:]  # pairs (i, i + E/2): (..., L, E/2) each
    rotated_first = first * cos - second * sin  # (..., L, E/2) * (L, E/2) -> (..., L, E/2)
    rotated_second = first * sin + second * cos
    if interleaved:
        # two (..., L, E/2) -> (..., L, E/2, 2) -> (..., L, E): back to 0, 1, 2, 3, ...
        return torch.stack((rotated_first, rotated_second), dim=-1).flatten(-2)
    return torch.cat((rotated_first, rotated_second), dim=-1)  # -> (..., L, E)


def _check_rotary_input(x: object, legend: str) -> tuple[Tensor, int, int]:
    checked = check_float("x", x)
    check_ndim("x", checked, 2, legend)
    num_positions, features = checked.shape[-2], checked.shape[-1]
    return checked, num_positions, features


def _check_positions(positions: object, num_positions: int) -> Tensor:
    checked = check_tensor("positions", positions)
    if checked.dtype == torch.bool or checked.is_complex():
        msg = f"positions must be a real (integer or floating-point) tensor; got dtype {checked.dtype}"
        raise TypeError(msg)
    if checked.shape != (num_positions,):
        msg = (
            f"positions must have shape (L,) = ({num_positions},), one per row of x; "
            f"got {fmt_shape(checked.shape)}"
        )
        raise ValueError(msg)
    return checked


def rotary_embedding(
    x: Tensor,
    positions: Tensor | None = None,
    *,
    base: float = 10000.0,
    interleaved: bool = True,
) -> Tensor:
    r"""Rotary position embedding (Su et al., RoFormer): rotate feature pairs by position.

    .. math::

        \begin{pmatrix} y_{p, a_i} \\ y_{p, b_i} \end{pmatrix} =
        \begin{pmatrix} \cos p\theta_i & -\sin p\theta_i \\ \sin p\theta_i & \cos p\theta_i
        \end{pmatrix}
        \begin{pmatrix} x_{p, a_i} \\ x_{p, b_i} \end{pmatrix}, \qquad
        \theta_i = \text{base}^{-2i/E}, \quad i = 0, \dots, E/2 - 1

    Row ``p`` of ``x`` is split into ``E/2`` pairs of features and pair ``i`` is turned by
    the angle :math:`p\theta_i`. Rotating queries and keys this way makes their dot
    product depend on the positions only through their difference:
    :math:`\langle R_p \mathbf q, R_{p'} \mathbf k\rangle = \langle \mathbf q,
    R_{p'-p} \mathbf k\rangle`. The rotation keeps every norm.

    Two conventions for the pairs are in use, and they are the same map up to a fixed
    permutation of the features: ``interleaved=True`` pairs :math:`(a_i, b_i) = (2i, 2i+1)`,
    as the paper and Meta's LLaMA code do; ``interleaved=False`` pairs
    :math:`(a_i, b_i) = (i, i + E/2)`, as GPT-NeoX and Hugging Face do. With the
    permutation :math:`\pi = (0, 2, 4, \dots, E-2, 1, 3, \dots, E-1)`,
    ``rotary_embedding(x, interleaved=True) == rotary_embedding(x[..., π],
    interleaved=False)[..., π⁻¹]``. Weights trained under one convention work under the
    other once the query and key projections' output features are permuted by
    :math:`\pi`.

    The angles are computed in float64 (float32 on Apple's MPS, which lacks float64) and
    the cosines and sines converted to ``x``'s dtype.

    Args:
        x: ``(..., L, E)`` with an even number of features ``E``.
        positions: ``(L,)``, the position of each row, integer or floating point (any real
            number, negative ones included); defaults to ``0, 1, ..., L-1``.
        base: The base of the geometric sequence of frequencies, 10000 in the paper.
        interleaved: Pair features ``(2i, 2i+1)`` (True) or ``(i, i + E/2)`` (False).

    Returns:
        ``(..., L, E)``, same dtype and device as ``x``.

    Raises:
        TypeError: If ``x`` is not floating point or ``positions`` is not a real tensor.
        ValueError: If ``E`` is odd, ``positions`` is not ``(L,)`` or ``base <= 0``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).repeat(3, 1)  # (L, E) = (3, 4)
        >>> rotary_embedding(x, base=100.0)  # pair 0 turns by p rad, pair 1 by p/10 rad
        tensor([[ 1.0000,  0.0000,  1.0000,  0.0000],
                [ 0.5403,  0.8415,  0.9950,  0.0998],
                [-0.4161,  0.9093,  0.9801,  0.1987]])
    """
    x, num_positions, features = _check_rotary_input(x, "(..., L, E)")
    if features % 2 != 0:
        msg = f"x must have an even number of features E (..., L, E); got E = {features}"
        raise ValueError(msg)
    base = _check_base(base)
    if positions is None:
        positions = torch.arange(num_positions, device=x.device)
    positions = _check_positions(positions, num_positions).to(x.device)
    angles = _rotary_angles(positions, features, base)  # (L, E/2)
    return _rotate(x, angles.cos().to(x.dtype), angles.sin().to(x.dtype), interleaved=interleaved)


class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding as a module, with the cosines and sines cached.

    .. math::

        \operatorname{RoPE}(\mathbf x_p) = R_{p} \mathbf x_p, \qquad
        R_p = \operatorname{diag}\!\left(\begin{pmatrix} \cos p\theta_i & -\sin p\theta_i
        \\ \sin p\theta_i & \cos p\theta_i \end{pmatrix}\right)_{i < E/2}, \quad
        \theta_i = \text{base}^{-2i/E}

    Computes what :func:`rotary_embedding` computes (see there for the two pair
    conventions), reading the cosines and sines of positions ``0 .. max_len - 1`` from
    the buffers ``cos`` and ``sin`` ``(max_len, dim/2)``. The buffers are not saved in the
    ``state_dict`` (they follow from the options); they move with ``.to(device)``, and any
    such conversion rebuilds them from float64 in the new dtype, so a ``.double()`` module
    is exact to float64. Positions at or beyond ``max_len`` grow the cache to the largest
    position asked for: ``max_len`` is a size hint, not a limit. An input whose dtype or
    device differs from the buffers' gets its table computed afresh, as the function does.

    :class:`MultiHeadAttention` applies it to each head's queries and keys (``rotary=``).

    Args:
        dim: ``E``, features per row (per head in attention); must be even.
        base: The base of the geometric sequence of frequencies.
        interleaved: Pair features ``(2i, 2i+1)`` (True) or ``(i, i + E/2)`` (False).
        max_len: Positions cached at construction.

    Raises:
        ValueError: If ``dim`` is odd or smaller than 2, ``max_len < 1`` or ``base <= 0``.

    Example:
        >>> rope = RotaryEmbedding(4, base=100.0, max_len=8)
        >>> x = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]]).repeat(1, 3, 1)  # (N, L, E) = (1, 3, 4)
        >>> torch.equal(rope(x), rotary_embedding(x, base=100.0))
        True
        >>> list(rope.state_dict()), tuple(rope.cos.shape)
        ([], (8, 2))
    """

    cos: Tensor
    sin: Tensor

    def __init__(
        self,
        dim: int,
        *,
        base: float = 10000.0,
        interleaved: bool = True,
        max_len: int = 4096,
    ) -> None:
        super().__init__()
        check_int("dim", dim, minimum=2)
        if dim % 2 != 0:
            msg = f"dim must be even, one pair of features per angle; got dim = {dim}"
            raise ValueError(msg)
        check_int("max_len", max_len, minimum=1)
        self.dim, self.base, self.interleaved = dim, _check_base(base), interleaved
        self.register_buffer("cos", torch.empty(0, dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(0, dim // 2), persistent=False)
        self._build(max_len)

    @property
    def max_len(self) -> int:
        """Number of positions in the cache now (it grows on demand)."""
        return int(self.cos.shape[0])

    def _build(self, num_positions: int) -> None:
        """Fill the cache for positions ``0 .. num_positions - 1`` in the buffers' dtype and device."""
        device, dtype = self.cos.device, self.cos.dtype
        positions = torch.arange(num_positions, device="cpu")
        angles = _rotary_angles(positions, self.dim, self.base)  # float64 (P, E/2)
        self.cos = angles.cos().to(dtype).to(device)
        self.sin = angles.sin().to(dtype).to(device)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> RotaryEmbedding:
        # .to(), .double(), .cuda() ... convert the buffers; rebuild them from float64 so
        # that a float64 module holds float64-exact cosines and sines.
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        self._build(self.max_len)
        return self

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x (..., L, dim)``; row ``j`` sits at ``positions[j]`` (default ``j``).

        Args:
            x: ``(..., L, dim)``, e.g. ``(N, H, L, dim)`` for the queries of ``H`` heads.
            positions: Integer ``(L,)``, non-negative; defaults to ``0, 1, ..., L-1``.

        Returns:
            ``(..., L, dim)``, same dtype as ``x``.

        Raises:
            TypeError: If ``x`` is not floating point or ``positions`` is not an integer
                tensor.
            ValueError: If ``x`` does not end in ``dim`` features, or ``positions`` is not
                ``(L,)`` or has a negative entry.
        """
        x, num_positions, features = _check_rotary_input(x, f"(..., L, {self.dim})")
        if features != self.dim:
            msg = f"x must have dim = {self.dim} features (..., L, {self.dim}); got shape {fmt_shape(x.shape)}"
            raise ValueError(msg)
        needed = num_positions  # positions 0..L-1: no look at the values (no GPU sync)
        if positions is not None:
            positions = _check_positions(positions, num_positions)
            if positions.is_floating_point():
                msg = (
                    "positions must be an integer tensor to index the cache; "
                    f"got dtype {positions.dtype}"
                )
                raise TypeError(msg)
            if num_positions > 0 and int(positions.min()) < 0:
                msg = f"positions must be non-negative; got {int(positions.min())}"
                raise ValueError(msg)
            needed = int(positions.max()) + 1 if num_positions > 0 else 0
        if x.dtype != self.cos.dtype or x.device != self.cos.device:
            return rotary_embedding(x, positions, base=self.base, interleaved=self.interleaved)
        if needed > self.max_len:
            self._build(needed)
        if positions is None:
            cos, sin = self.cos[:num_positions], self.sin[:num_positions]  # (L, dim/2) each
        else:
            positions = positions.to(self.cos.device)
            cos, sin = self.cos[positions], self.sin[positions]  # (L, dim/2) each
        return _rotate(x, cos, sin, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return (
            f"dim={self.dim}, base={self.base}, interleaved={self.interleaved}, "
            f"max_len={self.max_len}"
        )


class LearnedPositionalEmbedding(nn.Module):
    r"""Add a learned vector per position, as BERT and GPT-2 do, then apply dropout.

    .. math::

        \mathbf Y = \operatorname{dropout}(\mathbf X + \mathbf P_{:L}), \qquad
        \mathbf P \in \mathbb R^{\text{max\_len} \times d} \text{ learned}

    Unlike the sinusoidal table of :class:`PositionalEncoding`, ``P`` is a parameter,
    initialised from :math:`\mathcal N(0, 0.02^2)`, and a position never seen in training
    has a vector that training never moved: the embedding cannot reach beyond ``max_len``.

    Args:
        max_len: Number of positions with a vector.
        dim: ``d``, features per position.
        dropout: Dropout probability applied after the addition, in training mode.

    Raises:
        ValueError: If a size is smaller than 1 or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> embedding = LearnedPositionalEmbedding(max_len=10, dim=4)
        >>> x = torch.zeros(2, 3, 4)
        >>> torch.equal(embedding(x), embedding.P[:3].expand(2, 3, 4))
        True
        >>> tuple(embedding.P.shape)
        (10, 4)
    """

    def __init__(self, max_len: int, dim: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        check_int("max_len", max_len, minimum=1)
        check_int("dim", dim, minimum=1)
        check_probability("dropout", dropout)
        self.max_len, self.dim = max_len, dim
        self.P = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Add the vectors of positions ``0 .. L-1`` to ``x (N, L, dim)`` (or ``(..., L, dim)``).

        Returns:
            ``(N, L, dim)``.

        Raises:
            TypeError: If ``x`` is not floating point.
            ValueError: If ``x`` does not end in ``dim`` features or ``L > max_len``.
        """
        x = check_float("x", x)
        num_positions = _check_sequence(x, self.dim, self.max_len)
        # (N, L, d) + (L, d) -> (N, L, d)
        embedded: Tensor = self.dropout(x + self.P[:num_positions])
        return embedded

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"max_len={self.max_len}, dim={self.dim}"
