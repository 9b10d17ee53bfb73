"""Keep only some keys by their scores: top-k attention and sparsemax.

Both replace the softmax of :func:`~attention_book.scaled_dot_product_attention` by a rule
that gives most keys a weight of exactly 0. :func:`top_k_attention` keeps the ``k`` best
scores of each query and renormalises them with a softmax; :func:`sparsemax` (Martins and
Astudillo, 2016) projects the scores onto the probability simplex, which sets every score
below a threshold to 0 and lets the data decide how many keys survive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attention_book._checks import (
    check_attention_inputs,
    check_bool_mask,
    check_dim,
    check_float,
    check_int,
)
from attention_book.masking import _softmax_with_mask
from attention_book.output import AttentionOutput

__all__ = ["sparsemax", "sparsemax_attention", "top_k_attention"]


def _scaled_scores(
    query: Tensor, key: Tensor, scale: float | None, batch: tuple[int, ...]
) -> Tensor:
    """Scaled dot products ``(..., L, S)``, expanded to the batch shape of all three inputs."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, E) @ (..., E, S) -> (..., L, S)
    return scores.expand(*batch, *scores.shape[-2:])


def _top_k_mask(scores: Tensor, k: int, mask: Tensor | None) -> Tensor:
    """True at the ``k`` largest allowed scores of each row; ties go to the lower key index."""
    ranked = scores if mask is None else scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    # A stable sort keeps tied scores in key order, so the lower index ranks first.
    order = torch.sort(ranked, dim=-1, descending=True, stable=True).indices  # (..., L, S)
    keep = torch.zeros_like(ranked, dtype=torch.bool).scatter(-1, order[..., :k], True)
    return keep if mask is None else keep & mask


def top_k_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    k: int,
    attn_mask: Tensor | None = None,
    *,
    scale: float | None = None,
) -> AttentionOutput:
    r"""Attend to the ``k`` best-scoring keys of each query only, with softmax weights among them.

    .. math::

        \alpha_{ij} = \frac{[j \in \mathcal T_i] \exp(s_{ij})}
        {\sum_{j' \in \mathcal T_i} \exp(s_{ij'})}, \qquad
        s_{ij} = \frac{\mathbf q_i^\top \mathbf k_j}{\sqrt{E}}

    where :math:`\mathcal T_i` holds the ``k`` largest scores among the keys query ``i`` may
    attend to (all of them when fewer are allowed). Ties are broken toward the lower key
    index, so the kept set is always well defined. Every other weight is exactly 0; a query
    with no allowed key gets zero weights and a zero output. With ``k >= S`` this is
    :func:`~attention_book.scaled_dot_product_attention`. The gradient reaches the kept
    scores only: which keys are kept is a hard, non-differentiable choice.

    Shapes: ``N`` batch (any leading batch dims ``...``, broadcast between the inputs), ``L``
    queries, ``S`` keys and values, ``E`` query/key features, ``Ev`` value features.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        k: How many keys each query keeps, at least 1.
        attn_mask: Boolean, True = may attend, broadcasting to the scores' shape ``(..., L, S)``.
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (..., L, Ev)`` and
        ``weights (..., L, S)``, at most ``k`` of them non-zero per query.

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, ``k`` is not an int
            or ``attn_mask`` is not boolean.
        ValueError: If the shapes do not fit together, ``attn_mask`` does not broadcast or
            ``k < 1``.

    Example:
        >>> query = torch.ones(1, 1)
        >>> key = torch.tensor([[1.0], [3.0], [2.0], [3.0]])
        >>> output, weights = top_k_attention(query, key, torch.eye(4), k=2)
        >>> weights  # the two scores of 3 are kept, each with half of the weight
        tensor([[0.0000, 0.5000, 0.0000, 0.5000]])
    """
    query, key, value, batch = check_attention_inputs(query, key, value)
    check_int("k", k, minimum=1)
    scores = _scaled_scores(query, key, scale, batch)  # (..., L, S)
    mask = None if attn_mask is None else check_bool_mask(attn_mask, scores.shape)
    keep = _top_k_mask(scores, k, mask)  # (..., L, S), True = kept
    weights = _softmax_with_mask(scores, keep)
    output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


def _sparsemax_last(scores: Tensor) -> Tensor:
    """Sparsemax over the last dim (Martins and Astudillo, 2016, Algorithm 1)."""
    z = scores - scores.max(dim=-1, keepdim=True).values  # same result, smaller sums
    z_sorted = torch.sort(z, dim=-1, descending=True).values  # z_(1) >= z_(2) >= ...
    cumsum = z_sorted.cumsum(dim=-1)  # sum of the r largest scores, r = 1..S
    ranks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)  # (S,)
    support = 1 + ranks * z_sorted > cumsum  # (..., S): True for the r <= k(z) largest
    size = support.sum(dim=-1, keepdim=True)  # k(z), (..., 1), at least 1
    tau = (cumsum.gather(-1, size - 1) - 1) / size.to(z.dtype)  # (..., 1)
    return torch.clamp(z - tau, min=0)


def sparsemax(scores: Tensor, dim: int = -1, *, attn_mask: Tensor | None = None) -> Tensor:
    r"""The Euclidean projection of the scores onto the probability simplex (sparsemax).

    .. math::

        \operatorname{sparsemax}(\mathbf z) = \operatorname*{arg\,min}_{\mathbf p \in
        \Delta} \lVert \mathbf p - \mathbf z \rVert^2 , \qquad
        p_i = \max(z_i - \tau(\mathbf z), 0)

    The threshold :math:`\tau` is the one that makes the weights sum to 1: sort the scores,
    :math:`z_{(1)} \ge z_{(2)} \ge \dots`, let :math:`k` be the largest :math:`r` with
    :math:`1 + r z_{(r)} > \sum_{i \le r} z_{(i)}`, then
    :math:`\tau = (\sum_{i \le k} z_{(i)} - 1) / k`. Unlike softmax, scores below
    :math:`\tau` get weight exactly 0. Adding a constant to every score changes nothing. The
    gradient (autograd through the formula) is the sparsemax Jacobian
    :math:`\operatorname{diag}(\mathbf s) - \mathbf s \mathbf s^\top / k`, with
    :math:`\mathbf s` the indicator of the support.

    With ``attn_mask``, masked scores are left out: they get weight exactly 0 and the others
    are the sparsemax of the allowed scores alone; a slice along ``dim`` with no allowed
    entry is all zeros, never NaN.

    Args:
        scores: ``(..., S, ...)`` floating-point scores, normalised along ``dim``.
        dim: The dim along which the weights sum to 1.
        attn_mask: Boolean, True = may attend, broadcasting to ``scores``' shape.

    Returns:
        The weights, same shape and dtype as ``scores``: non-negative, summing to 1 along
        ``dim`` (0 for a fully masked slice), many of them exactly 0.

    Raises:
        TypeError: If ``scores`` is not floating point, ``dim`` is not an int or
            ``attn_mask`` is not boolean.
        ValueError: If ``scores`` has no dims, ``dim`` is out of range or ``attn_mask``
            does not broadcast.

    Example:
        >>> sparsemax(torch.tensor([1.0, 0.8, 0.1]))  # tau = 0.4
        tensor([0.6000, 0.4000, 0.0000])
        >>> torch.softmax(torch.tensor([1.0, 0.8, 0.1]), dim=-1)
        tensor([0.4494, 0.3679, 0.1827])
    """
    scores = check_float("scores", scores)
    if scores.ndim < 1:
        msg = "scores must have at least 1 dim; got a 0-dim tensor"
        raise ValueError(msg)
    check_dim("dim", dim, scores.ndim)
    mask = None if attn_mask is None else check_bool_mask(attn_mask, scores.shape)
    if scores.shape[dim] == 0:
        return scores.clone()
    filled = scores
    if mask is not None:
        # The most negative finite value: masked scores fall far below tau and get 0 ...
        filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = _sparsemax_last(filled.movedim(dim, -1)).movedim(-1, dim)
    # ... and a fully masked slice (uniform so far) is zeroed like every masked weight.
    return weights if mask is None else torch.where(mask, weights, 0.0)


def sparsemax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    scale: float | None = None,
) -> AttentionOutput:
    r"""Scaled dot-product attention with sparsemax in place of softmax.

    .. math::

        \operatorname{Attention}(Q, K, V) =
        \operatorname{sparsemax}\!\left(\frac{Q K^\top}{\sqrt{E}}\right) V

    The weights of each query are :func:`sparsemax` of its scores over the keys it may
    attend to: non-negative, summing to 1, many exactly 0. A query with no allowed key gets
    zero weights and a zero output. The number of kept keys adapts to the scores; the scale
    matters more than for softmax, since it decides how far apart the scores are.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: Boolean, True = may attend, broadcasting to the scores' shape ``(..., L, S)``.
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (..., L, Ev)`` and
        ``weights (..., L, S)``.

    Raises:
        TypeError: If an input is not floating point, the dtypes differ or ``attn_mask`` is
            not boolean.
        ValueError: If the shapes do not fit together or ``attn_mask`` does not broadcast.

    Example:
        >>> query, key = torch.ones(1, 1), torch.tensor([[1.0], [0.8], [0.1]])
        >>> output, weights = sparsemax_attention(query, key, torch.eye(3), scale=1.0)
        >>> weights
        tensor([[0.6000, 0.4000, 0.0000]])
    """
    query, key, value, batch = check_attention_inputs(query, key, value)
    scores = _scaled_scores(query, key, scale, batch)  # (..., L, S)
    weights = sparsemax(scores, dim=-1, attn_mask=attn_mask)
    output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)
