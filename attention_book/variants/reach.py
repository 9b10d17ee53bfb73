r"""How far information travels through stacked layers that share one attention pattern.

A layer lets position ``i`` read the positions its mask allows, and the residual path keeps
what ``i`` already had, so one layer is the boolean matrix :math:`A = M \vee I`. After ``k``
layers position ``i`` has read from position ``j`` when the ``k``-th boolean power
:math:`A^k` is True at ``(i, j)``: a sparse pattern that sees few keys per layer can still
reach every position after a few layers.

Example:
    >>> from attention_book.variants import sliding_window
    >>> from torch.nn.attention.flex_attention import create_mask
    >>> mask = create_mask(sliding_window(2), 1, 1, 16, 16, device="cpu")[0, 0]
    >>> layers_to_reach(mask, source=0, target=15)
    8
"""

from __future__ import annotations

import torch
from torch import Tensor

from attention_book._checks import check_int, check_position, check_square_bool_mask

__all__ = ["layers_to_reach", "receptive_field"]


def _one_layer(mask: Tensor) -> Tensor:
    """``A = M or I`` as float 0/1, so a matmul counts paths exactly (counts stay below 2^24)."""
    identity = torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    return (mask | identity).float()  # (L, L)


def receptive_field(mask: Tensor, num_layers: int) -> Tensor:
    r"""Which input positions each position has read from after 1, 2, ... stacked layers.

    .. math::

        R_1 = A = M \vee I, \qquad R_{k+1} = A R_k \quad\text{(boolean product)}

    :math:`R_k[i, j]` is True when, after ``k`` layers with the pattern ``mask``, position
    ``i`` holds information from input position ``j``. The identity counts (the residual
    path): a position always reaches itself.

    Args:
        mask: Boolean ``(L, L)``, True = query ``i`` may read key ``j`` (one layer's pattern;
            ``create_mask(mask_mod, 1, 1, L, L)[0, 0]`` turns a pattern into one).
        num_layers: How many layers to stack (``1`` or more).

    Returns:
        Bool ``(num_layers, L, L)``; entry ``k - 1`` is :math:`R_k`.

    Raises:
        TypeError: If ``mask`` is not a boolean tensor or ``num_layers`` not an int.
        ValueError: If ``mask`` is not square or ``num_layers`` is below 1.

    Example:
        >>> mask = torch.ones(4, 4, dtype=torch.bool).tril().triu(-1)  # i reads i - 1 and i
        >>> receptive_field(mask, 2).int()
        tensor([[[1, 0, 0, 0],
                 [1, 1, 0, 0],
                 [0, 1, 1, 0],
                 [0, 0, 1, 1]],
        <BLANKLINE>
                [[1, 0, 0, 0],
                 [1, 1, 0, 0],
                 [1, 1, 1, 0],
                 [0, 1, 1, 1]]], dtype=torch.int32)
    """
    mask = check_square_bool_mask("mask", mask)
    check_int("num_layers", num_layers, minimum=1)
    step = _one_layer(mask)  # (L, L)
    reach = step
    fields = [reach > 0]
    for _ in range(num_layers - 1):
        reach = ((step @ reach) > 0).float()  # (L, L) @ (L, L) -> (L, L)
        fields.append(reach > 0)
    return torch.stack(fields)  # (num_layers, L, L)


def layers_to_reach(
    mask: Tensor, source: int = 0, target: int = -1, *, max_layers: int | None = None
) -> int | None:
    r"""The fewest stacked layers after which position ``target`` has read from ``source``.

    .. math::

        k^\star = \min \{\, k \ge 0 : A^k[\text{target}, \text{source}] \,\},
        \qquad A = M \vee I

    A breadth-first search over the pattern's graph: each layer moves information from
    every position it has reached to the queries that may read them. ``source == target``
    needs 0 layers.

    Args:
        mask: Boolean ``(L, L)``, True = query ``i`` may read key ``j``.
        source: Where the information starts, in ``[-L, L)`` (negative counts from the end).
        target: Where it must arrive, in ``[-L, L)``.
        max_layers: Give up after this many layers (``0`` or more); defaults to ``L - 1``,
            enough for any pattern that reaches at all.

    Returns:
        The number of layers, or ``None`` if ``target`` is not reached within ``max_layers``.

    Raises:
        TypeError: If ``mask`` is not a boolean tensor or a position is not an int.
        ValueError: If ``mask`` is not square, a position is out of range or ``max_layers``
            is negative.

    Example:
        >>> causal = torch.ones(5, 5, dtype=torch.bool).tril()
        >>> layers_to_reach(causal), layers_to_reach(causal, source=-1, target=0)
        (1, None)
    """
    mask = check_square_bool_mask("mask", mask)
    size = mask.shape[0]
    source = check_position("source", source, size)
    target = check_position("target", target, size)
    if max_layers is None:
        max_layers = size - 1
    check_int("max_layers", max_layers, minimum=0)
    step = _one_layer(mask)  # (L, L)
    reached = torch.zeros(size, device=mask.device)  # (L,): 1 where the information is
    reached[source] = 1.0
    for layers in range(max_layers + 1):
        if reached[target] > 0:
            return layers
        grown = ((step @ reached) > 0).float()  # (L, L) @ (L,) -> (L,)
        if torch.equal(grown, reached):
            return None  # nothing new: the target is never reached
        reached = grown
    return None
