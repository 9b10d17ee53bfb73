"""Scaled dot-product attention: a readable path that returns the weights, and a fused one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_attention_inputs, check_probability
from attention_book.masking import _combine_masks, _softmax_with_mask
from attention_book.output import AttentionOutput

__all__ = ["DotProductAttention", "scaled_dot_product_attention"]


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    valid_lens: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    need_weights: bool = True,
) -> AttentionOutput:
    r"""Pool the values with softmax weights of the scaled query-key dot products.

    .. math::

        \operatorname{Attention}(Q, K, V) =
        \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{E}}\right) V

    The output equals ``torch.nn.functional.scaled_dot_product_attention`` for every
    combination of the arguments below, except that a query with no key to attend to gets
    an output row of zeros (this package's rule). With ``need_weights=True`` (the default)
    the weights are computed step by step and returned; with ``need_weights=False`` the
    call goes to PyTorch's fused kernel and ``weights`` is ``None``.

    Shapes: ``N`` batch (any number of leading batch dims ``...``, broadcast between the
    inputs), ``L`` queries, ``S`` keys and values, ``E`` query/key features, ``Ev`` value
    features.

    ``attn_mask``, ``valid_lens`` and ``is_causal`` may be given together: they combine by
    AND (PyTorch refuses ``is_causal`` with a mask; this function accepts it).

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: Boolean, True = may attend (PyTorch's polarity), broadcasting to the
            scores' shape ``(..., L, S)``.
        valid_lens: Integer ``(N,)`` or ``(N, L)``: each batch row (or query) may see its
            first ``valid_lens`` keys; ``N`` is the leading batch dim and the counts
            broadcast over the dims between ``N`` and ``L`` (heads, for example).
        dropout_p: Probability of dropping a weight; applied whenever it is positive (as in
            PyTorch's function; modules pass 0 in eval mode). The returned weights are the
            dropped-out ones, so ``output == weights @ value``.
        is_causal: Let query ``i`` see keys ``0..i`` only (top-left aligned when ``L != S``).
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.
        need_weights: Return the ``(..., L, S)`` weights; ``False`` takes the fused path.

    Returns:
        :class:`AttentionOutput` with ``output (..., L, Ev)`` and ``weights (..., L, S)``
        (``None`` when ``need_weights=False``).

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, or ``attn_mask``
            is not boolean.
        ValueError: If the shapes do not fit together, ``attn_mask`` does not broadcast,
            ``valid_lens`` is invalid or ``dropout_p`` is outside ``[0, 1)``.

    Example:
        >>> X = torch.tensor([[1.0, 2, 1, 2, 1], [1, 1, 1, 2, 1], [3, 2, 1, 1, 1]])
        >>> output, weights = scaled_dot_product_attention(X, X, X, scale=1.0)
        >>> weights.sum(dim=-1)
        tensor([1., 1., 1.])
        >>> output.round(decimals=2)
        tensor([[1.9400, 1.9400, 1.0000, 1.5300, 1.0000],
                [1.8400, 1.8400, 1.0000, 1.5800, 1.0000],
                [2.9800, 2.0000, 1.0000, 1.0100, 1.0000]])
    """
    query, key, value, batch = check_attention_inputs(query, key, value)
    check_probability("dropout_p", dropout_p)
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    if not need_weights and attn_mask is None and valid_lens is None:
        # Fast path without a mask: PyTorch's fused kernel, nothing built here. Its
        # is_causal is top-left aligned like ours and leaves no query without a key.
        output = F.scaled_dot_product_attention(
            query, key, value, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return AttentionOutput(output, None)

    mask = _combine_masks(
        (*batch, num_queries, num_keys),
        attn_mask,
        valid_lens,
        is_causal=is_causal,
        device=query.device,
    )
    if not need_weights:
        output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale
        )
        # PyTorch may return NaN for a query with no key; our rule is zeros.
        has_key = None if mask is None else mask.any(dim=-1, keepdim=True)  # (..., L, 1)
        if has_key is not None and not bool(has_key.all()):
            output = torch.where(has_key, output, 0.0)
        return AttentionOutput(output, None)

    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, E) @ (..., E, S) -> (..., L, S)
    weights = _softmax_with_mask(scores, mask)  # (..., L, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


class DotProductAttention(nn.Module):
    r"""Scaled dot-product attention as a module, with dropout on the weights in training.

    .. math::

        \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{E}}\right) V

    It has no parameters; it calls :func:`scaled_dot_product_attention` with
    ``dropout_p=dropout`` in training mode and ``0`` in eval mode.

    Args:
        dropout: Probability of dropping an attention weight during training.
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.

    Raises:
        ValueError: If ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> attention = DotProductAttention()
        >>> query, key, value = torch.ones(2, 1, 4), torch.ones(2, 6, 4), torch.randn(2, 6, 3)
        >>> output, weights = attention(query, key, value, valid_lens=torch.tensor([2, 6]))
        >>> output.shape, weights.shape
        (torch.Size([2, 1, 3]), torch.Size([2, 1, 6]))
        >>> weights[0]
        tensor([[0.5000, 0.5000, 0.0000, 0.0000, 0.0000, 0.0000]])
    """

    def __init__(self, dropout: float = 0.0, *, scale: float | None = None) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        self.dropout = dropout
        self.scale = scale

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None = None,
        *,
        valid_lens: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = True,
    ) -> AttentionOutput:
        """Attend from ``query (..., L, E)`` to ``key (..., S, E)`` and ``value (..., S, Ev)``.

        Masks are as in :func:`scaled_dot_product_attention`. Returns an
        :class:`AttentionOutput` with ``output (..., L, Ev)`` and ``weights (..., L, S)``.
        """
        return scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask,
            valid_lens=valid_lens,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            scale=self.scale,
            need_weights=need_weights,
        )

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"dropout={self.dropout}, scale={self.scale}"
