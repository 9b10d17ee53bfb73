r"""Luong's local attention: a window of source positions around a centre :math:`p_t`.

Global attention scores every source position at every step. Local attention (Luong et al.,
2015) first chooses a centre :math:`p_t` and only looks at the :math:`2D + 1` positions
around it. The centre is either the step itself (*local-m*, monotonic, :math:`p_t = t`)
or predicted from the decoder's state (*local-p*), which then favours the positions near
the centre with a Gaussian of width :math:`\sigma = D / 2`:

.. math::

    p_t = S \cdot \operatorname{sigmoid}\!\left(\mathbf v_p^\top \tanh(W_p \mathbf h_t)\right)

:class:`LocalAttention` plugs into the Part II decoder
(``AttentionDecoder(..., query="current", attention=LocalAttention(...))``), and
:func:`local_positions` reads the centres :math:`p_t` of a trained model for a plot.

Shapes: ``N`` batch (any leading dims ``...``), ``T`` queries (the decoder's steps), ``S``
source positions, ``H`` the query's features (the decoder's hidden size), ``D_k`` the
encoder's features (``encoder_size``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, cast, get_args

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_attention_inputs,
    check_bool_mask,
    check_choice,
    check_float,
    check_int,
    check_ndim,
    check_tensor,
    fmt_shape,
)
from attention_book.masking import masked_softmax
from attention_book.output import AttentionOutput

__all__ = [
    "LocalAttention",
    "LocalPositionName",
    "LocalPositions",
    "LocalScoreName",
    "local_positions",
]

#: How :class:`LocalAttention` places its window: Luong's local-p and local-m.
LocalPositionName = Literal["predictive", "monotonic"]
#: The scores of :class:`LocalAttention`: :math:`\mathbf h_t^\top \bar{\mathbf h}_s` and
#: :math:`\mathbf h_t^\top W_a \bar{\mathbf h}_s`.
LocalScoreName = Literal["dot", "general"]


class LocalAttention(nn.Module):
    r"""Attend inside a window of half-width ``D`` around a centre (local-p adds a Gaussian).

    .. math::

        a_t(s) = \operatorname{softmax}_{|s - p_t| \le D}\!\big(\operatorname{score}(
        \mathbf h_t, \bar{\mathbf h}_s)\big)
        \exp\!\left(-\frac{(s - p_t)^2}{2\sigma^2}\right), \qquad \sigma = \frac{D}{2},
        \qquad \mathbf c_t = \sum_s a_t(s)\, \bar{\mathbf h}_s

    The softmax runs over the valid source positions ``s`` (0-based) with
    :math:`|s - p_t| \le D`; the others get weight exactly 0. As in Luong et al. (2015) the
    Gaussian factor belongs to local-p only, and the product is **not** renormalised, so a
    row of local-p sums to less than 1; local-m's weights are the softmax inside the window
    alone (rows sum to 1). In both, ``output == weights @ value`` exactly. The centre is

    - ``position="predictive"`` (local-p):
      :math:`p_t = S_n \operatorname{sigmoid}(\mathbf v_p^\top \tanh(W_p \mathbf h_t))`,
      where :math:`S_n` is the number of valid source positions of the row (from the mask),
      so :math:`p_t \in [0, S_n]`; gradients reach :math:`W_p` and :math:`\mathbf v_p`
      through the Gaussian (the window's edges are steps and pass none);
    - ``position="monotonic"`` (local-m): :math:`p_t = \min(t, S_n)` for query ``t``
      (0-based), so every query must be given at once, in order (the decoder's
      ``query="current"``). The cap keeps a target longer than its source on the last
      position instead of an empty window.

    The score is ``"general"`` :math:`\mathbf h_t^\top W_a \bar{\mathbf h}_s` or ``"dot"``
    :math:`\mathbf h_t^\top \bar{\mathbf h}_s`. Like the decoder's built-in scorers the
    module works in two calls: ``prepare(keys)`` once per sentence (it applies
    :math:`W_a`), then ``forward(query, prepare(keys), values, attn_mask)``.

    Args:
        hidden_size: ``H``, the query's features (the decoder's hidden size).
        encoder_size: ``D_k``, the features of the encoder's states (keys and values).
        half_window: ``D``, at least 1: the window is :math:`[p_t - D, p_t + D]`.
        position: ``"predictive"`` (local-p) or ``"monotonic"`` (local-m).
        score: ``"general"`` or ``"dot"`` (needs ``encoder_size == hidden_size``).

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size (``half_window`` included) is smaller than 1, ``position``
            or ``score`` is unknown, or ``score="dot"`` with ``encoder_size != hidden_size``.

    Example:
        >>> attention = LocalAttention(4, 6, half_window=1)
        >>> query, keys = torch.randn(2, 3, 4), torch.randn(2, 7, 6)  # (N, T, H), (N, S, D_k)
        >>> mask = torch.arange(7) < torch.tensor([[7], [5]])[:, None]  # (N, 1, S)
        >>> context, weights = attention(query, attention.prepare(keys), keys, mask)
        >>> context.shape, weights.shape
        (torch.Size([2, 3, 6]), torch.Size([2, 3, 7]))
        >>> p = attention.positions(query, mask)  # (N, T), each in [0, S_n]
        >>> bool((p[1] <= 5).all()), int((weights[1] > 0).sum(-1).max()) <= 3  # 2D + 1 keys
        (True, True)
    """

    def __init__(
        self,
        hidden_size: int,
        encoder_size: int,
        half_window: int,
        *,
        position: LocalPositionName = "predictive",
        score: LocalScoreName = "general",
    ) -> None:
        super().__init__()
        check_int("hidden_size", hidden_size, minimum=1)
        check_int("encoder_size", encoder_size, minimum=1)
        check_int("half_window", half_window, minimum=1)
        check_choice("position", position, get_args(LocalPositionName))
        check_choice("score", score, get_args(LocalScoreName))
        if score == "dot" and encoder_size != hidden_size:
            msg = (
                f"encoder_size must equal hidden_size = {hidden_size} for score='dot' "
                f"(a dot product needs equal sizes); got encoder_size = {encoder_size}"
            )
            raise ValueError(msg)
        self.hidden_size, self.encoder_size = hidden_size, encoder_size
        self.half_window, self.position, self.score = half_window, position, score
        self.W_a = nn.Linear(encoder_size, hidden_size, bias=False) if score == "general" else None
        predictive = position == "predictive"
        self.W_p = nn.Linear(hidden_size, hidden_size, bias=False) if predictive else None
        self.v_p = nn.Linear(hidden_size, 1, bias=False) if predictive else None

    def prepare(self, keys: Tensor) -> Tensor:
        """Project the encoder's states ``(..., S, D_k)`` once per sentence: ``W_a`` or nothing.

        Returns ``(..., S, H)``, the keys ``forward`` expects.
        """
        keys = check_float("keys", keys)
        if keys.ndim < 2 or keys.shape[-1] != self.encoder_size:
            msg = (
                f"keys must have shape (..., S, D_k) with D_k = encoder_size = "
                f"{self.encoder_size}; got {fmt_shape(keys.shape)}"
            )
            raise ValueError(msg)
        return keys if self.W_a is None else self.W_a(keys)  # (..., S, D_k) -> (..., S, H)

    def _check_query(self, query: object) -> Tensor:
        """Check ``query (..., T, H)`` with ``H = hidden_size``."""
        q = check_float("query", query)
        if q.ndim < 2 or q.shape[-1] != self.hidden_size:
            msg = (
                f"query must have shape (..., T, H) with H = hidden_size = {self.hidden_size}; "
                f"got {fmt_shape(q.shape)}"
            )
            raise ValueError(msg)
        return q

    def _positions(self, query: Tensor, mask: Tensor | None, num_keys: int) -> Tensor:
        """The centres ``(..., T)`` of checked inputs."""
        if mask is None:  # every position is valid: S_n = S
            lengths = torch.full(query.shape[:-1], num_keys, dtype=query.dtype, device=query.device)
        else:  # S_n, the valid positions of each row: (..., 1 or T, S) -> (..., 1 or T)
            lengths = mask.sum(dim=-1).to(query.dtype)
        if self.W_p is None or self.v_p is None:  # local-m: p_t = min(t, S_n)
            steps = torch.arange(query.shape[-2], dtype=query.dtype, device=query.device)
            return torch.minimum(steps.expand(query.shape[:-1]), lengths)  # (..., T)
        # local-p: S_n sigmoid(v_p^T tanh(W_p h_t)): (..., T, H) -> (..., T, 1) -> (..., T)
        gate = torch.sigmoid(self.v_p(torch.tanh(self.W_p(query)))).squeeze(-1)
        return lengths * gate

    def positions(self, query: Tensor, attn_mask: Tensor) -> Tensor:
        r"""The centre :math:`p_t` of each query's window, in :math:`[0, S_n]`.

        Args:
            query: ``(..., T, H)``, the decoder's states :math:`\mathbf h_t`.
            attn_mask: Boolean, True = may attend, broadcasting to ``(..., T, S)``; its
                True count per row is :math:`S_n` (the decoder passes ``(N, 1, S)``).

        Returns:
            ``(..., T)``, the centres, in the query's dtype.

        Raises:
            TypeError: If ``query`` is not floating point or ``attn_mask`` not boolean.
            ValueError: If a shape does not fit.
        """
        query = self._check_query(query)
        mask = check_tensor("attn_mask", attn_mask)
        check_ndim("attn_mask", mask, 1, "(..., T, S)")
        mask = check_bool_mask(mask, (*query.shape[:-1], mask.shape[-1]))
        return self._positions(query, mask, mask.shape[-1])

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None
    ) -> AttentionOutput:
        """Attend from ``query (..., T, H)`` inside each query's window.

        Args:
            query: ``(..., T, H)``, the decoder's states.
            key: ``(..., S, H)``, the keys from :meth:`prepare`.
            value: ``(..., S, D_k)``, the encoder's states.
            attn_mask: Boolean, True = may attend, broadcasting to ``(..., T, S)``
                (the decoder passes ``(N, 1, S)``); ``None``: every position is valid.

        Returns:
            :class:`~attention_book.AttentionOutput` with ``output (..., T, D_k)`` and
            ``weights (..., T, S)`` (exactly 0 outside the window and where masked).

        Raises:
            TypeError: If an input is not floating point, the dtypes differ, or
                ``attn_mask`` is not boolean.
            ValueError: If the shapes do not fit together.
        """
        query, key, value, batch = check_attention_inputs(query, key, value)
        query = self._check_query(query)
        num_keys = key.shape[-2]
        scores_shape = (*batch, query.shape[-2], num_keys)
        mask = None if attn_mask is None else check_bool_mask(attn_mask, scores_shape)
        p = self._positions(query, mask, num_keys)  # (..., T)
        source = torch.arange(num_keys, dtype=query.dtype, device=query.device)  # (S,)
        distance = source - p[..., None]  # (S,) - (..., T, 1) -> (..., T, S)
        window = distance.abs() <= self.half_window  # (..., T, S)
        allowed = window if mask is None else window & mask
        scores = query @ key.transpose(-2, -1)  # (..., T, H) @ (..., H, S) -> (..., T, S)
        align = masked_softmax(scores, allowed)  # softmax inside the window, 0 elsewhere
        if self.position == "monotonic":  # local-m: the softmax inside the window
            return AttentionOutput(align @ value, align)  # (..., T, S) @ (..., S, D_k)
        sigma = self.half_window / 2
        weights = align * torch.exp(-(distance**2) / (2 * sigma**2))  # not renormalised
        return AttentionOutput(weights @ value, weights)  # (..., T, S) @ (..., S, D_k)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"half_window={self.half_window}, position={self.position!r}, score={self.score!r}"


class LocalPositions(NamedTuple):
    r"""The window centres and weights of a model's local attention for one batch.

    .. math::

        p_t = S_n \operatorname{sigmoid}(\mathbf v_p^\top \tanh(W_p \mathbf h_t))
        \ \text{(local-p)} \quad\text{or}\quad p_t = \min(t, S_n) \ \text{(local-m)}

    Attributes:
        positions: ``(N, T)``, the centre :math:`p_t` of every decoder step.
        weights: ``(N, T, S)``, the local attention weights of every step.

    Example:
        >>> positions, weights = LocalPositions(torch.zeros(1, 2), torch.zeros(1, 2, 3))
        >>> positions.shape, weights.shape
        (torch.Size([1, 2]), torch.Size([1, 2, 3]))
    """

    positions: Tensor
    weights: Tensor


def local_positions(
    model: nn.Module, src: Tensor, src_lens: Tensor, tgt_in: Tensor
) -> LocalPositions:
    r"""Run ``model(src, src_lens, tgt_in)`` once and return its local attention's :math:`p_t`.

    .. math::

        p_t = S_n \operatorname{sigmoid}(\mathbf v_p^\top \tanh(W_p \mathbf h_t))
        \quad\text{or}\quad p_t = \min(t, S_n)

    A forward hook on the model's one :class:`LocalAttention` reads the queries it receives;
    the hook is removed before the function returns. The model runs in eval mode under
    :func:`torch.no_grad` and is put back in its mode afterwards. To read the centres of a
    greedy translation ``ids`` (from :func:`~attention_book.models.greedy_translate`), feed
    ``bos`` followed by ``ids[:, :-1]`` as ``tgt_in``: the decoder is causal, so each step
    sees what it saw while translating.

    Args:
        model: An encoder-decoder with ``forward(src, src_lens, tgt_in)`` that contains
            exactly one :class:`LocalAttention`.
        src: ``(N, S)`` source ids.
        src_lens: ``(N,)`` source lengths.
        tgt_in: ``(N, T)`` decoder inputs (``bos`` first).

    Returns:
        :class:`LocalPositions` with ``positions (N, T)`` and ``weights (N, T, S)``.

    Raises:
        ValueError: If ``model`` does not contain exactly one :class:`LocalAttention`, or
            the model never called it.

    Example:
        >>> from attention_book.models import AttentionDecoder, Seq2Seq, Seq2SeqEncoder
        >>> decoder = AttentionDecoder(
        ...     12, 8, 16, encoder_size=32, query="current", attention=LocalAttention(16, 32, 2)
        ... )
        >>> model = Seq2Seq(Seq2SeqEncoder(10, 8, 16), decoder)
        >>> src, src_lens = torch.tensor([[4, 5, 6, 2], [6, 2, 0, 0]]), torch.tensor([4, 2])
        >>> p, weights = local_positions(model, src, src_lens, torch.tensor([[1, 3, 4], [1, 5, 6]]))
        >>> p.shape, weights.shape, bool((p[1] <= 2).all())  # (N, T), (N, T, S), p_t <= S_n
        (torch.Size([2, 3]), torch.Size([2, 3, 4]), True)
    """
    found = [module for module in model.modules() if isinstance(module, LocalAttention)]
    if len(found) != 1:
        msg = f"model must contain exactly one LocalAttention; got {len(found)}"
        raise ValueError(msg)
    local = found[0]
    captured: list[LocalPositions] = []

    def hook(
        _module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], output: object
    ) -> None:
        bound = {**dict(zip(("query", "key", "value", "attn_mask"), args, strict=False)), **kwargs}
        query, key = cast(Tensor, bound["query"]), cast(Tensor, bound["key"])
        mask = cast("Tensor | None", bound.get("attn_mask"))
        if mask is None:  # every source position is valid
            mask = torch.ones(key.shape[-2], dtype=torch.bool, device=key.device)
        weights = cast(AttentionOutput, output).weights
        captured.append(LocalPositions(local.positions(query, mask), cast(Tensor, weights)))

    handle = local.register_forward_hook(hook, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(src, src_lens, tgt_in)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        msg = "model must call its LocalAttention in forward; it was never called"
        raise ValueError(msg)
    return captured[-1]
