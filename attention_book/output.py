"""The value every attention function and module returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["AttentionOutput"]


class AttentionOutput(NamedTuple):
    """What attention computes: the pooled values and the weights that pooled them.

    The weights are the ones applied to the values (after dropout, if any), so
    ``output == weights @ value`` always holds. Unpack it like a tuple
    (``output, weights = attention(...)``) or use the field names.

    Attributes:
        output: ``(..., L, Ev)``, the attention-weighted sum of the values.
        weights: ``(..., L, S)``, or ``None`` when a function was asked not to return them
            (``need_weights=False``).

    Example:
        >>> import torch
        >>> result = AttentionOutput(torch.ones(1, 2), None)
        >>> output, weights = result
        >>> output.shape, weights
        (torch.Size([1, 2]), None)
    """

    output: Tensor
    weights: Tensor | None
