r"""Adaptive attention span: each head learns how far back it looks (Sukhbaatar et al., 2019).

A causal head at query position :math:`t` may read every earlier key, but most heads only
need the last few. :class:`AdaptiveSpan` gives head :math:`h` a learnable span
:math:`z_h = \text{span}_h \cdot \text{max\_span}` and multiplies its attention weights by a
soft mask of the distance :math:`d = t - j` between query and key,

.. math::

    m_z(d) = \operatorname{clamp}\!\left(\frac{R + z - d}{R},\, 0,\, 1\right),

which is 1 up to distance :math:`z`, falls linearly to 0 over the ramp :math:`R` and is 0
beyond :math:`z + R`; the weights are then renormalised. Because the ramp is linear in
:math:`z`, gradients reach the span, and a penalty on the spans
(:meth:`AdaptiveSpan.span_loss`) shrinks every head that does not need to look far.

The mask alone saves nothing: the scores of the masked keys are still computed. Compute and
memory are saved only when the keys beyond the longest span are cut off before the scores
are computed, which :func:`adaptive_span_attention` does with ``trim=True``
(:meth:`AdaptiveSpan.keys_needed` says how many keys stay).

:func:`~attention_book.variants.train_adaptive_span` trains it on a toy task where heads need
different spans.

Shapes: ``N`` batch, ``H`` heads, ``L`` queries, ``S`` keys (the last ``L`` of which are the
queries' own positions: causal weights are aligned at the bottom right), ``E`` query/key
features, ``Ev`` value features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_attention_inputs,
    check_exact_ndim,
    check_float,
    check_instance,
    check_int,
    check_unit_interval,
    fmt_shape,
)
from attention_book.masking import masked_softmax
from attention_book.output import AttentionOutput

__all__ = ["AdaptiveSpan", "adaptive_span_attention"]


def _distances(num_queries: int, num_keys: int, device: torch.device) -> Tensor:
    """Query-key distances ``(L, S)``, bottom-right aligned: query ``i`` sits at ``S - L + i``."""
    positions = torch.arange(num_keys - num_queries, num_keys, device=device)  # (L,)
    return positions[:, None] - torch.arange(num_keys, device=device)  # (L, 1) - (S,) -> (L, S)


def _check_heads(name: str, tensor: Tensor, num_heads: int, legend: str) -> None:
    check_exact_ndim(name, tensor, 4, legend)
    if tensor.shape[1] != num_heads:
        msg = (
            f"{name} must have H = {num_heads} heads {legend}; got shape {fmt_shape(tensor.shape)}"
        )
        raise ValueError(msg)


class AdaptiveSpan(nn.Module):
    r"""A learnable span per head: a soft mask on the query-key distance, then renormalised.

    .. math::

        z_h = \text{span}_h \cdot \text{max\_span}, \qquad
        m_{z_h}(d) = \operatorname{clamp}\!\left(\frac{R + z_h - d}{R}, 0, 1\right), \qquad
        a'_{hij} = \frac{m_{z_h}(d_{ij})\, a_{hij}}{\sum_k m_{z_h}(d_{ik})\, a_{hik}}

    with :math:`R` the ramp and :math:`d_{ij} = (S - L + i) - j` the distance from query
    ``i`` (the last ``L`` of ``S`` positions, bottom-right aligned) to key ``j``. A row whose
    masked weights sum to 0 becomes all zeros, never NaN.

    For a future key (:math:`d < 0`) the formula gives :math:`m = 1`, and this module keeps
    it that way: it does not mask the future itself, so give it causal weights (they are
    already 0 there), for example from a bottom-right aligned causal softmax as in
    :func:`adaptive_span_attention`.

    Args:
        num_heads: ``H``.
        max_span: The longest span, in keys: :math:`z_h \in [0, \text{max\_span}]`.
        ramp: :math:`R`, the length of the linear ramp from 1 down to 0.
        init: The initial span fraction of every head, in ``[0, 1]``.

    Raises:
        TypeError: If a size is not an int or ``init`` is not a number.
        ValueError: If ``num_heads``, ``max_span`` or ``ramp`` is below 1, or ``init`` is
            outside ``[0, 1]``.

    Example:
        >>> adaptive = AdaptiveSpan(num_heads=1, max_span=4, ramp=2, init=0.25)  # z = 1
        >>> adaptive.mask(num_queries=1, num_keys=5)  # distances 4, 3, 2, 1, 0
        tensor([[[0.0000, 0.0000, 0.5000, 1.0000, 1.0000]]], grad_fn=<ClampBackward1>)
        >>> adaptive(torch.full((1, 1, 1, 5), 0.2)).detach()  # (N, H, L, S)
        tensor([[[[0.0000, 0.0000, 0.2000, 0.4000, 0.4000]]]])
    """

    def __init__(self, num_heads: int, max_span: int, *, ramp: int = 32, init: float = 0.5) -> None:
        super().__init__()
        check_int("num_heads", num_heads, minimum=1)
        check_int("max_span", max_span, minimum=1)
        check_int("ramp", ramp, minimum=1)
        check_unit_interval("init", init)
        self.num_heads, self.max_span, self.ramp = num_heads, max_span, ramp
        self.span = nn.Parameter(torch.full((num_heads,), float(init)))

    def spans(self) -> Tensor:
        r"""The spans :math:`z_h = \text{span}_h \cdot \text{max\_span}` in keys, ``(H,)``."""
        return self.span * self.max_span

    def mask(self, num_queries: int, num_keys: int) -> Tensor:
        """The soft mask :math:`m_{z_h}(d)` ``(H, L, S)`` of the last ``L`` of ``S`` positions.

        Query ``i`` sits at position ``S - L + i`` (bottom-right aligned), key ``j`` at ``j``.
        """
        check_int("num_queries", num_queries, minimum=1)
        check_int("num_keys", num_keys, minimum=1)
        distance = _distances(num_queries, num_keys, self.span.device).to(self.span.dtype)
        z = self.spans()[:, None, None]  # (H,) -> (H, 1, 1)
        return ((self.ramp + z - distance) / self.ramp).clamp(0.0, 1.0)  # (H, L, S)

    def forward(self, weights: Tensor) -> Tensor:
        """Mask causal ``weights (N, H, L, S)`` by distance and renormalise each row."""
        weights = check_float("weights", weights)
        _check_heads("weights", weights, self.num_heads, "(N, H, L, S)")
        num_queries, num_keys = weights.shape[-2:]
        masked = weights * self.mask(num_queries, num_keys).to(weights.dtype)  # (N, H, L, S)
        total = masked.sum(dim=-1, keepdim=True)  # (N, H, L, 1)
        # a row with nothing left has total 0: divide by 1 there, its weights are all 0
        return masked / torch.where(total > 0, total, 1.0)

    def span_loss(self) -> Tensor:
        r"""The penalty on the spans: their mean in keys, ``max_span * span.mean()``, 0-dim.

        Add it to the task loss with a small weight; its gradient pulls every span down.
        """
        return self.max_span * self.span.mean()

    def clamp_(self) -> None:
        """Keep every span fraction in ``[0, 1]`` (call it after each optimiser step)."""
        with torch.no_grad():
            self.span.clamp_(0.0, 1.0)

    def keys_needed(self, num_queries: int = 1) -> int:
        r"""How many of the last keys ``L`` queries can give non-zero weight: the memory to keep.

        Query ``i`` sees distances :math:`d < z_h + R`, that is :math:`\lceil \max_h z_h + R
        \rceil` keys for the longest head, and ``L`` consecutive queries ``L - 1`` more.
        """
        check_int("num_queries", num_queries, minimum=1)
        return num_queries - 1 + math.ceil(float(self.spans().detach().max()) + self.ramp)

    def extra_repr(self) -> str:
        """Show the sizes in ``print(module)``."""
        return f"num_heads={self.num_heads}, max_span={self.max_span}, ramp={self.ramp}"


def adaptive_span_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    adaptive_span: AdaptiveSpan,
    *,
    trim: bool = True,
    scale: float | None = None,
) -> AttentionOutput:
    r"""Causal attention of the last ``L`` of ``S`` positions with an adaptive span per head.

    .. math::

        a_{ij} = \operatorname{softmax}_{j \le S - L + i}\!\left(
        \frac{\mathbf q_i^\top \mathbf k_j}{\sqrt E}\right), \qquad
        \mathbf o_i = \sum_j \frac{m_z(d_{ij})\, a_{ij}}{\sum_k m_z(d_{ik})\, a_{ik}}\,
        \mathbf v_j

    The causal mask is bottom-right aligned: query ``i`` is position ``S - L + i`` and sees
    the keys up to it. With ``trim=True`` only the last
    ``adaptive_span.keys_needed(L)`` keys are kept *before* the scores are computed: the keys
    cut off would get weight 0 anyway, so the output is the same, but the scores and weights
    shrink from ``(N, H, L, S)`` to ``(N, H, L, S')``. With ``trim=False`` every score is
    computed and then masked: the same result, none of the savings.

    Args:
        query: ``(N, H, L, E)``.
        key: ``(N, H, S, E)``.
        value: ``(N, H, S, Ev)``.
        adaptive_span: The spans, one per head.
        trim: Cut the keys beyond the longest span off before scoring them.
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (N, H, L, Ev)`` and
        ``weights (N, H, L, S')``, the weights of the last ``S'`` keys (``S' = S`` without
        trimming).

    Raises:
        TypeError: If an input is not floating point or the dtypes differ.
        ValueError: If the shapes do not fit together or do not have ``H`` heads.

    Example:
        >>> adaptive = AdaptiveSpan(num_heads=2, max_span=64, ramp=4, init=0.0)
        >>> query = torch.randn(1, 2, 1, 8)  # (N, H, L, E): one query, the newest position
        >>> key, value = torch.randn(1, 2, 64, 8), torch.randn(1, 2, 64, 3)  # S = 64
        >>> full = adaptive_span_attention(query, key, value, adaptive, trim=False)
        >>> trimmed = adaptive_span_attention(query, key, value, adaptive)
        >>> full.weights.shape[-1], trimmed.weights.shape[-1]  # keys scored
        (64, 4)
        >>> torch.allclose(full.output, trimmed.output)
        True
    """
    query, key, value, _ = check_attention_inputs(query, key, value)
    check_instance("adaptive_span", adaptive_span, AdaptiveSpan)
    heads = adaptive_span.num_heads
    _check_heads("query", query, heads, "(N, H, L, E)")
    _check_heads("key", key, heads, "(N, H, S, E)")
    _check_heads("value", value, heads, "(N, H, S, Ev)")
    num_queries = query.shape[-2]
    if trim:
        keep = min(key.shape[-2], adaptive_span.keys_needed(num_queries))
        key, value = key[..., -keep:, :], value[..., -keep:, :]  # (N, H, S', E), (N, H, S', Ev)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    # (N, H, L, E) @ (N, H, E, S') -> (N, H, L, S')
    scores = (query * scale) @ key.transpose(-2, -1)
    causal = _distances(num_queries, key.shape[-2], query.device) >= 0  # (L, S')
    weights = adaptive_span(masked_softmax(scores, causal))  # (N, H, L, S')
    output = weights @ value  # (N, H, L, S') @ (N, H, S', Ev) -> (N, H, L, Ev)
    return AttentionOutput(output, weights)
