r"""Attention patterns: which keys each query may look at, as FlexAttention mask functions.

A pattern is a :data:`MaskMod`, the callable ``mask_mod(b, h, q_idx, kv_idx) -> Tensor`` that
:mod:`torch.nn.attention.flex_attention` takes: a boolean, True = query ``q_idx`` may attend
to key ``kv_idx`` (in batch row ``b``, head ``h``). Queries and keys are counted from
the same start (top-left aligned, like ``is_causal=True`` in PyTorch), so query ``i`` and key
``i`` are the same position when ``L == S``. Every pattern here works unchanged with PyTorch's
``create_mask`` (a dense ``(N, H, L, S)`` mask), ``create_block_mask`` (the block-sparse form
``flex_attention`` skips empty blocks with), ``and_masks`` and ``or_masks``, and with
:func:`pattern_attention`, the package's attention with a pattern. :func:`draw_pattern` prints
one as rows of ``█`` (may attend) and ``·`` (masked).

Example:
    >>> from torch.nn.attention.flex_attention import and_masks
    >>> print(draw_pattern(and_masks(causal(), sliding_window(1, 1)), 4))
    █···
    ██··
    ·██·
    ··██
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from torch import Tensor
from torch.nn.attention.flex_attention import create_mask

from attention_book._checks import (
    check_attention_inputs,
    check_callable,
    check_exact_ndim,
    check_int,
)
from attention_book.output import AttentionOutput
from attention_book.scoring import scaled_dot_product_attention

__all__ = [
    "MaskMod",
    "blocked_window",
    "causal",
    "dilated_sliding_window",
    "draw_pattern",
    "mask_density",
    "pattern_attention",
    "sliding_window",
]

#: A mask function ``mask_mod(b, h, q_idx, kv_idx) -> Tensor`` (bool, True = may attend),
#: the type ``torch.nn.attention.flex_attention`` takes.
MaskMod: TypeAlias = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

_SIGNATURE = "mask_mod(b, h, q_idx, kv_idx) -> Tensor"


def _dense(mask_mod: MaskMod, num_queries: int, num_keys: int | None) -> Tensor:
    """Checked ``(L, S)`` mask of batch row 0 and head 0, on the CPU."""
    check_callable("mask_mod", mask_mod, _SIGNATURE)
    check_int("L", num_queries, minimum=1)
    num_keys = num_queries if num_keys is None else check_int("S", num_keys, minimum=1)
    return create_mask(mask_mod, 1, 1, num_queries, num_keys, device="cpu")[0, 0]


def draw_pattern(mask_mod: MaskMod, L: int, S: int | None = None) -> str:
    r"""Draw a pattern as text: one row per query, ``█`` where it may attend, ``·`` where not.

    .. math::

        \text{cell}_{ij} = █ \text{ if } \operatorname{mask\_mod}(0, 0, i, j) \text{ else } ·

    Args:
        mask_mod: The pattern (batch row 0 and head 0 are drawn).
        L: Number of queries (rows).
        S: Number of keys (columns); defaults to ``L``.

    Returns:
        ``L`` lines of ``S`` characters, joined by newlines.

    Raises:
        TypeError: If ``mask_mod`` is not callable or a size is not an int.
        ValueError: If a size is below 1.

    Example:
        >>> print(draw_pattern(causal(), 3, 5))
        █····
        ██···
        ███··
    """
    mask = _dense(mask_mod, L, S)
    rows = ("".join("█" if allowed else "·" for allowed in row) for row in mask.tolist())
    return "\n".join(rows)


def mask_density(mask_mod: MaskMod, L: int, S: int | None = None) -> float:
    r"""The fraction of query-key pairs a pattern lets attend (batch row 0, head 0).

    .. math::

        \rho = \frac{1}{L S} \sum_{i=0}^{L-1} \sum_{j=0}^{S-1} m_{ij}

    Args:
        mask_mod: The pattern.
        L: Number of queries.
        S: Number of keys; defaults to ``L``.

    Returns:
        A float in ``[0, 1]``; causal attention approaches ``1/2`` as ``L`` grows.

    Raises:
        TypeError: If ``mask_mod`` is not callable or a size is not an int.
        ValueError: If a size is below 1.

    Example:
        >>> mask_density(causal(), 4)
        0.625
    """
    return float(_dense(mask_mod, L, S).double().mean())


def causal() -> MaskMod:
    r"""Query ``i`` sees keys ``0..i``: top-left aligned, as ``is_causal=True`` in PyTorch.

    .. math::

        m_{ij} = [\, j \le i \,]

    Returns:
        The mask function.

    Example:
        >>> print(draw_pattern(causal(), 5))
        █····
        ██···
        ███··
        ████·
        █████
    """

    def causal_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return kv_idx <= q_idx

    return causal_mask


def sliding_window(before: int, after: int = 0) -> MaskMod:
    r"""Query ``i`` sees keys ``i - before`` to ``i + after``: ``before + 1 + after`` keys, exactly.

    .. math::

        m_{ij} = [\, i - \text{before} \le j \le i + \text{after} \,]

    Near the ends of the sequence the window is cut, so fewer keys are seen there. With
    ``after=0`` the window is causal (Mistral's sliding window); Longformer's window is
    two-sided, ``sliding_window(w // 2, w // 2)``. Unlike :func:`blocked_window`, every query
    away from the start sees exactly ``before + 1`` keys.

    Args:
        before: Keys to the left of the query (``0`` or more).
        after: Keys to the right of the query (``0`` or more).

    Returns:
        The mask function.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If ``before`` or ``after`` is negative.

    Example:
        >>> print(draw_pattern(sliding_window(2), 6))
        █·····
        ██····
        ███···
        ·███··
        ··███·
        ···███
    """
    check_int("before", before, minimum=0)
    check_int("after", after, minimum=0)

    def window_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx >= q_idx - before) & (kv_idx <= q_idx + after)

    return window_mask


def blocked_window(window: int, *, causal: bool = True) -> MaskMod:
    r"""Query ``i`` sees the whole of its own block of ``window`` keys and of the block before.

    .. math::

        m_{ij} = \left[\, \lfloor i/w \rfloor - 1 \le \lfloor j/w \rfloor \le \lfloor i/w \rfloor
        \,\right] \wedge [\, j \le i \text{ if causal} \,]

    This is how a blocked local attention computes its window (lucidrains' ``local-attention``
    with ``look_backward=1``, ``look_forward=0`` and its default ``exact_windowsize=False``): the
    sequence is cut into blocks of ``w = window`` positions, and the window moves a block at a
    time. With ``causal=True`` a query away from the first block therefore sees between ``w + 1``
    keys (first in its block) and ``2w`` keys (last in its block), where
    :func:`sliding_window` ``(w)`` sees exactly ``w + 1``. With ``causal=False`` it sees both
    blocks whole, ``2w`` keys (that library's non-causal default also adds the next block).

    Args:
        window: The block size ``w`` (``1`` or more).
        causal: Also require ``j <= i``.

    Returns:
        The mask function.

    Raises:
        TypeError: If ``window`` is not an int.
        ValueError: If ``window`` is below 1.

    Example:
        >>> print(draw_pattern(blocked_window(2), 6))
        █·····
        ██····
        ███···
        ████··
        ··███·
        ··████
    """
    check_int("window", window, minimum=1)

    def blocked_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        block_gap = q_idx // window - kv_idx // window
        allowed = (block_gap >= 0) & (block_gap <= 1)
        return allowed & (kv_idx <= q_idx) if causal else allowed

    return blocked_mask


def dilated_sliding_window(before: int, after: int, dilation: int) -> MaskMod:
    r"""Like :func:`sliding_window`, but only every ``dilation``-th key, counted from the query.

    .. math::

        m_{ij} = [\, i - \text{before} \le j \le i + \text{after} \,]
        \wedge [\, (i - j) \bmod \text{dilation} = 0 \,]

    ``before`` and ``after`` are distances in positions, so a query sees
    ``before // dilation + 1 + after // dilation`` keys away from the ends (Longformer's
    dilated windows widen the reach of a layer without more keys).

    Args:
        before: Distance to the leftmost key (``0`` or more).
        after: Distance to the rightmost key (``0`` or more).
        dilation: Gap between the keys seen (``1`` is :func:`sliding_window`).

    Returns:
        The mask function.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If ``before`` or ``after`` is negative or ``dilation`` is below 1.

    Example:
        >>> print(draw_pattern(dilated_sliding_window(4, 0, 2), 6))
        █·····
        ·█····
        █·█···
        ·█·█··
        █·█·█·
        ·█·█·█
    """
    check_int("before", before, minimum=0)
    check_int("after", after, minimum=0)
    check_int("dilation", dilation, minimum=1)
    window = sliding_window(before, after)

    def dilated_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return window(b, h, q_idx, kv_idx) & ((q_idx - kv_idx) % dilation == 0)

    return dilated_mask


def pattern_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask_mod: MaskMod,
    *,
    scale: float | None = None,
    need_weights: bool = True,
) -> AttentionOutput:
    r"""Scaled dot-product attention restricted to a pattern.

    .. math::

        \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{E}} \text{ masked by } m\right) V,
        \qquad m_{ij} = \operatorname{mask\_mod}(n, h, i, j)

    The pattern is materialised with ``create_mask(mask_mod, N, H, L, S)`` and handed to
    :func:`~attention_book.scaled_dot_product_attention`, so a query with no allowed key gets
    zero weights and a zero output. The output equals PyTorch's
    ``flex_attention(query, key, value, block_mask=create_block_mask(mask_mod, ...))``, which
    also gives a zero output for such a query (its log-sum-exp is ``-inf`` there), and
    ``F.scaled_dot_product_attention`` with the ``create_mask`` mask. This readable path
    builds the full ``(N, H, L, S)`` mask; ``flex_attention`` under ``torch.compile`` is the
    fast path that skips the empty blocks.

    Args:
        query: ``(N, H, L, E)``.
        key: ``(N, H, S, E)``.
        value: ``(N, H, S, Ev)``.
        mask_mod: The pattern, True = may attend.
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.
        need_weights: Return the ``(N, H, L, S)`` weights; ``False`` takes the fused path.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (N, H, L, Ev)`` and
        ``weights (N, H, L, S)`` (``None`` when ``need_weights=False``).

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, or ``mask_mod`` is
            not callable.
        ValueError: If an input does not have 4 dims or the shapes do not fit together (and
            whatever the pattern raises, e.g. :func:`random_keys` beyond its ``max_len``).

    Example:
        >>> import torch
        >>> query = key = value = torch.ones(1, 1, 3, 2)
        >>> pattern_attention(query, key, value, causal()).weights[0, 0]
        tensor([[1.0000, 0.0000, 0.0000],
                [0.5000, 0.5000, 0.0000],
                [0.3333, 0.3333, 0.3333]])
    """
    query, key, value, batch = check_attention_inputs(query, key, value)
    check_exact_ndim("query", query, 4, "(N, H, L, E)")
    check_exact_ndim("key", key, 4, "(N, H, S, E)")
    check_exact_ndim("value", value, 4, "(N, H, S, Ev)")
    check_callable("mask_mod", mask_mod, _SIGNATURE)
    num_batch, num_heads = batch
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    mask = create_mask(mask_mod, num_batch, num_heads, num_queries, num_keys, device=query.device)
    return scaled_dot_product_attention(
        query, key, value, mask, scale=scale, need_weights=need_weights
    )
