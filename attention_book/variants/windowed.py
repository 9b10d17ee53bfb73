r"""Sliding-window attention that never builds the ``(L, S)`` score matrix.

:func:`~attention_book.variants.pattern_attention` with
:func:`~attention_book.variants.sliding_window` computes every query-key score and then masks
most of them away, so its time and memory grow like :math:`L \cdot S`. Here each query is
scored only against its own window of ``W = before + 1 + after`` keys: the keys are padded by
``before`` positions on the left and cut into overlapping windows with ``unfold`` (a view, no
copy), so the scores have shape ``(..., L, W)`` and the cost grows like :math:`L \cdot W`.
:func:`band_to_dense` scatters such banded weights back into the ``(L, S)`` matrix, to compare
them with the dense ones.

Queries and keys are counted from the same start (top-left aligned), as in
:func:`~attention_book.variants.sliding_window`: column ``k`` of query ``i``'s window is key
``j = i - before + k``, and a column whose key lies outside ``0..S-1`` is padding, with
weight exactly 0.

Shapes: ``N`` batch (any leading dims ``...``, broadcast between the inputs), ``L`` queries,
``S`` keys and values, ``E`` query/key features, ``Ev`` value features, ``W`` the window
``before + 1 + after``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book._checks import (
    check_attention_inputs,
    check_float,
    check_int,
    check_ndim,
    fmt_shape,
)
from attention_book.masking import masked_softmax
from attention_book.output import AttentionOutput

__all__ = ["band_to_dense", "sliding_window_attention", "window_key_indices"]


def window_key_indices(
    L: int,
    S: int,
    before: int,
    after: int = 0,
    *,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The key behind each column of the banded weights, and whether that key exists.

    .. math::

        j_{ik} = i - \text{before} + k, \qquad
        \text{valid}_{ik} = [\, 0 \le j_{ik} < S \,], \qquad k = 0, \dots, W - 1

    Args:
        L: Number of queries.
        S: Number of keys.
        before: Keys to the left of the query (``0`` or more).
        after: Keys to the right of the query (``0`` or more).
        device: Where to create the tensors.

    Returns:
        ``index (L, W)`` (int64; may be negative or ``>= S`` where invalid) and
        ``valid (L, W)`` (bool, True = a real key).

    Raises:
        TypeError: If a size is not an int.
        ValueError: If ``L`` or ``S`` is below 1, or ``before`` or ``after`` is negative.

    Example:
        >>> index, valid = window_key_indices(4, 4, before=2)
        >>> index
        tensor([[-2, -1,  0],
                [-1,  0,  1],
                [ 0,  1,  2],
                [ 1,  2,  3]])
        >>> valid.sum(dim=-1)  # keys per query: the window is cut at the start
        tensor([1, 2, 3, 3])
    """
    check_int("L", L, minimum=1)
    check_int("S", S, minimum=1)
    check_int("before", before, minimum=0)
    check_int("after", after, minimum=0)
    queries = torch.arange(L, device=device)[:, None]  # (L, 1)
    offsets = torch.arange(before + 1 + after, device=device) - before  # (W,)
    index = queries + offsets  # (L, 1) + (W,) -> (L, W)
    return index, (index >= 0) & (index < S)


def sliding_window_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    before: int,
    after: int = 0,
    *,
    scale: float | None = None,
) -> AttentionOutput:
    r"""Scaled dot-product attention of each query over its own window of keys, banded.

    .. math::

        \alpha_{ik} = \operatorname{softmax}_k\!\left(
        \frac{\mathbf q_i^\top \mathbf k_{i - \text{before} + k}}{\sqrt E}\right),
        \qquad
        \mathbf o_i = \sum_{k=0}^{W-1} \alpha_{ik}\, \mathbf v_{i - \text{before} + k}

    with the softmax over the columns ``k`` whose key exists. The result equals
    ``pattern_attention(query, key, value, sliding_window(before, after))`` (weights
    scattered back by :func:`band_to_dense`), but the scores and weights have shape
    ``(..., L, W)`` instead of ``(..., L, S)``. A query with no key in its window
    (possible when ``S < L``) gets zero weights and a zero output.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        before: Keys to the left of each query (``0`` or more).
        after: Keys to the right of each query (``0`` or more; ``0`` is causal).
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (..., L, Ev)`` and the banded
        ``weights (..., L, W)``: column ``k`` of row ``i`` belongs to key
        ``i - before + k`` (see :func:`window_key_indices`) and is exactly 0 where that key
        does not exist.

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, or a size is not
            an int.
        ValueError: If the shapes do not fit together or ``before`` or ``after`` is
            negative.

    Example:
        >>> query = key = value = torch.ones(1, 4, 2)  # (N, L, E)
        >>> output, weights = sliding_window_attention(query, key, value, before=2)
        >>> weights[0]  # (L, W): column k is key i - 2 + k
        tensor([[0.0000, 0.0000, 1.0000],
                [0.0000, 0.5000, 0.5000],
                [0.3333, 0.3333, 0.3333],
                [0.3333, 0.3333, 0.3333]])
    """
    query, key, value, _ = check_attention_inputs(query, key, value)
    check_int("before", before, minimum=0)
    check_int("after", after, minimum=0)
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    width = before + 1 + after
    if scale is None:
        scale = query.shape[-1] ** -0.5
    # pad so that window i (keys i - before .. i + after) exists for every query i < L
    right = max(0, num_queries + after - num_keys)
    padded_key = F.pad(key, (0, 0, before, right))  # (..., before + S + right, E)
    padded_value = F.pad(value, (0, 0, before, right))  # (..., before + S + right, Ev)
    # overlapping windows as a view: (..., S', E) -> (..., L, E, W)
    key_windows = padded_key.unfold(-2, width, 1)[..., :num_queries, :, :]
    value_windows = padded_value.unfold(-2, width, 1)[..., :num_queries, :, :]
    # (..., L, 1, E) @ (..., L, E, W) -> (..., L, 1, W) -> (..., L, W)
    scores = (query.unsqueeze(-2) @ key_windows).squeeze(-2) * scale
    _, valid = window_key_indices(num_queries, num_keys, before, after, device=query.device)
    weights = masked_softmax(scores, valid)  # padding columns get exactly 0
    # (..., L, Ev, W) @ (..., L, W, 1) -> (..., L, Ev, 1) -> (..., L, Ev)
    output = (value_windows @ weights.unsqueeze(-1)).squeeze(-1)
    return AttentionOutput(output, weights)


def band_to_dense(weights: Tensor, num_keys: int, before: int, after: int = 0) -> Tensor:
    r"""Scatter banded weights ``(..., L, W)`` into the dense ``(..., L, S)`` matrix.

    .. math::

        A_{i,\, i - \text{before} + k} = \alpha_{ik} \quad \text{where the key exists;}
        \qquad A_{ij} = 0 \text{ elsewhere}

    Args:
        weights: ``(..., L, W)`` with ``W = before + 1 + after``, as returned by
            :func:`sliding_window_attention`.
        num_keys: ``S``, the number of keys.
        before: Keys to the left of each query, as given to the attention.
        after: Keys to the right of each query, as given to the attention.

    Returns:
        ``(..., L, S)``, same dtype and device as ``weights``.

    Raises:
        TypeError: If ``weights`` is not floating point or a size is not an int.
        ValueError: If ``weights`` has fewer than 2 dims or its last dim is not
            ``before + 1 + after``, or a size is out of range.

    Example:
        >>> band = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.25, 0.75]])  # (L, W) = (3, 2)
        >>> band_to_dense(band, 3, before=1)
        tensor([[1.0000, 0.0000, 0.0000],
                [0.5000, 0.5000, 0.0000],
                [0.0000, 0.2500, 0.7500]])
    """
    weights = check_float("weights", weights)
    check_ndim("weights", weights, 2, "(..., L, W)")
    check_int("num_keys", num_keys, minimum=1)
    check_int("before", before, minimum=0)
    check_int("after", after, minimum=0)
    width = before + 1 + after
    if weights.shape[-1] != width:
        msg = (
            f"weights must have W = before + 1 + after = {width} columns (..., L, W); "
            f"got shape {fmt_shape(weights.shape)}"
        )
        raise ValueError(msg)
    num_queries = weights.shape[-2]
    index, valid = window_key_indices(num_queries, num_keys, before, after, device=weights.device)
    # one spare column S collects the padding, then is cut off
    target = torch.where(valid, index, num_keys)  # (L, W)
    dense = weights.new_zeros((*weights.shape[:-1], num_keys + 1))  # (..., L, S + 1)
    dense = dense.scatter(-1, target.expand(weights.shape), weights)
    return dense[..., :num_keys]
