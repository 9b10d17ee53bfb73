"""Additive attention: a one-hidden-layer network scores each query-key pair."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_attention_inputs, check_int, check_probability, fmt_shape
from attention_book.masking import _combine_masks, _softmax_with_mask
from attention_book.output import AttentionOutput

__all__ = ["AdditiveAttention"]


class AdditiveAttention(nn.Module):
    r"""Additive (Bahdanau) attention, for queries and keys of different sizes.

    .. math::

        a(\mathbf q, \mathbf k) = \mathbf w_v^\top \tanh(\mathbf W_q \mathbf q
        + \mathbf W_k \mathbf k)

    The scores go through :func:`masked_softmax` and the weights pool the values. The three
    bias-free ``nn.Linear`` submodules are named after the formula: ``W_q``
    (``query_size -> num_hiddens``), ``W_k`` (``key_size -> num_hiddens``) and ``w_v``
    (``num_hiddens -> 1``).

    Memory: ``forward`` builds the feature tensor :math:`\tanh(W_q q + W_k k)` of shape
    ``(N, L, S, num_hiddens)``, one hidden vector per query-key pair, so memory grows as
    ``N * L * S * num_hiddens`` (dot-product attention needs only ``N * L * S``).

    Args:
        query_size: Features of a query, ``Eq``.
        key_size: Features of a key, ``Ek``.
        num_hiddens: Width ``h`` of the hidden layer.
        dropout: Probability of dropping an attention weight during training.

    Raises:
        ValueError: If a size is smaller than 1 or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> attention = AdditiveAttention(query_size=20, key_size=2, num_hiddens=8)
        >>> query, key = torch.randn(2, 1, 20), torch.ones(2, 10, 2)
        >>> value = torch.arange(40.0).reshape(1, 10, 4).repeat(2, 1, 1)
        >>> output, weights = attention(query, key, value, valid_lens=torch.tensor([2, 6]))
        >>> output.shape, weights.shape
        (torch.Size([2, 1, 4]), torch.Size([2, 1, 10]))
        >>> weights.detach()[1, 0, 4:8]  # equal keys: equal weights over the 6 valid ones
        tensor([0.1667, 0.1667, 0.0000, 0.0000])
    """

    def __init__(
        self, query_size: int, key_size: int, num_hiddens: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_int("query_size", query_size, minimum=1)
        check_int("key_size", key_size, minimum=1)
        check_int("num_hiddens", num_hiddens, minimum=1)
        check_probability("dropout", dropout)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None = None,
        *,
        valid_lens: Tensor | None = None,
    ) -> AttentionOutput:
        """Attend from ``query (..., L, Eq)`` to ``key (..., S, Ek)`` and ``value (..., S, Ev)``.

        ``attn_mask`` (boolean, True = may attend, broadcasting to ``(..., L, S)``) and
        ``valid_lens`` (``(N,)`` or ``(N, L)``) combine by AND, as in
        :func:`scaled_dot_product_attention`.

        Returns:
            :class:`AttentionOutput` with ``output (..., L, Ev)`` and ``weights (..., L, S)``.

        Raises:
            TypeError: If an input is not floating point or the mask is not boolean.
            ValueError: If a shape does not fit.
        """
        query, key, value, batch = check_attention_inputs(query, key, value, match_features=False)
        for name, tensor, size, letters in (
            ("query", query, self.W_q.in_features, "L"),
            ("key", key, self.W_k.in_features, "S"),
        ):
            if tensor.shape[-1] != size:
                msg = (
                    f"{name} must have {name}_size = {size} features (..., {letters}, {size}); "
                    f"got shape {fmt_shape(tensor.shape)}"
                )
                raise ValueError(msg)
        num_queries, num_keys = query.shape[-2], key.shape[-2]
        mask = _combine_masks(
            (*batch, num_queries, num_keys),
            attn_mask,
            valid_lens,
            is_causal=False,
            device=query.device,
        )
        q = self.W_q(query)  # (..., L, Eq) -> (..., L, h)
        k = self.W_k(key)  # (..., S, Ek) -> (..., S, h)
        # (..., L, 1, h) + (..., 1, S, h) -> (..., L, S, h): one hidden vector per pair
        features = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))
        scores = self.w_v(features).squeeze(-1)  # (..., L, S, h) -> (..., L, S, 1) -> (..., L, S)
        weights = _softmax_with_mask(scores, mask)
        if self.training and self.dropout > 0.0:
            weights = F.dropout(weights, p=self.dropout)
        output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
        return AttentionOutput(output, weights)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"dropout={self.dropout}"
