"""Masks (True = may attend) and the masked softmax that turns scores into weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attention_book._checks import (
    check_bool_mask,
    check_float,
    check_int,
    check_valid_lens,
    fmt_shape,
)

__all__ = ["causal_mask", "masked_softmax", "valid_lens_to_mask"]


def _lens_to_mask(lens: Tensor, num_keys: int) -> Tensor:
    """Turn checked lens ``(N,)`` or ``(N, L)`` into a mask ``(N, 1, S)`` or ``(N, L, S)``."""
    keys = torch.arange(num_keys, device=lens.device)  # (S,)
    if lens.ndim == 1:
        lens = lens[:, None]  # (N,) -> (N, 1)
    return keys < lens[..., None]  # (S,) < (N, L, 1) -> (N, L, S)


def valid_lens_to_mask(
    valid_lens: Tensor, num_keys: int, *, num_queries: int | None = None
) -> Tensor:
    r"""Turn key counts into a boolean mask that lets each row see its first ``valid_lens`` keys.

    .. math::

        \text{mask}[n, i, j] = (j < \text{valid\_lens}[n])
        \quad\text{or}\quad (j < \text{valid\_lens}[n, i])

    Args:
        valid_lens: Integer counts, ``(N,)`` (one per batch row) or ``(N, L)`` (one per
            query), each in ``[0, S]``.
        num_keys: ``S``, the number of keys.
        num_queries: ``L``. With 1-D ``valid_lens`` the mask is expanded to ``(N, L, S)``;
            with 2-D ``valid_lens`` it must equal ``valid_lens.shape[1]``.

    Returns:
        A boolean mask, True = may attend, of shape ``(N, 1, S)`` for 1-D ``valid_lens``
        without ``num_queries`` and ``(N, L, S)`` otherwise.

    Raises:
        TypeError: If ``valid_lens`` is not an integer tensor.
        ValueError: If ``valid_lens`` has the wrong shape or a value outside ``[0, S]``.

    Example:
        >>> valid_lens_to_mask(torch.tensor([1, 3]), 4)
        tensor([[[ True, False, False, False]],
        <BLANKLINE>
                [[ True,  True,  True, False]]])
    """
    check_int("num_keys", num_keys, minimum=0)
    if num_queries is not None:
        check_int("num_queries", num_queries, minimum=0)
    lens = check_valid_lens(valid_lens, num_keys, batch_size=None, num_queries=num_queries)
    mask = _lens_to_mask(lens, num_keys)
    if num_queries is not None and lens.ndim == 1:
        mask = mask.expand(-1, num_queries, -1).contiguous()  # (N, 1, S) -> (N, L, S)
    return mask


def causal_mask(
    num_queries: int, num_keys: int | None = None, *, device: torch.device | str | None = None
) -> Tensor:
    r"""Let query ``i`` see keys ``0..i`` only, aligned at the top-left like PyTorch's ``is_causal``.

    .. math::

        \text{mask}[i, j] = (j \le i)

    Args:
        num_queries: ``L``.
        num_keys: ``S``; defaults to ``L``. When ``L != S`` the mask keeps the top-left
            alignment of ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.
        device: Where to create the mask.

    Returns:
        A bool tensor ``(L, S)``, True = may attend.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is negative.

    Example:
        >>> causal_mask(2, 3)
        tensor([[ True, False, False],
                [ True,  True, False]])
    """
    check_int("num_queries", num_queries, minimum=0)
    if num_keys is None:
        num_keys = num_queries
    check_int("num_keys", num_keys, minimum=0)
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril()


def _combine_masks(
    scores_shape: Sequence[int],
    attn_mask: Tensor | None,
    valid_lens: Tensor | None,
    *,
    is_causal: bool,
    device: torch.device,
) -> Tensor | None:
    """AND together ``attn_mask``, ``valid_lens`` and ``is_causal`` into one boolean mask.

    The result broadcasts to ``scores_shape`` ``(N, ..., L, S)``; ``None`` means "attend
    everywhere". ``valid_lens`` refers to the leading batch dim ``N`` and broadcasts over
    every dim between ``N`` and ``L`` (heads, for example).
    """
    num_queries, num_keys = scores_shape[-2], scores_shape[-1]
    mask = None if attn_mask is None else check_bool_mask(attn_mask, scores_shape)
    if valid_lens is not None:
        if len(scores_shape) < 3:
            msg = (
                "valid_lens needs a batch dim: scores of shape (N, ..., L, S); "
                f"got scores of shape {fmt_shape(scores_shape)}"
            )
            raise ValueError(msg)
        lens = check_valid_lens(
            valid_lens, num_keys, batch_size=scores_shape[0], num_queries=num_queries
        )
        lens_mask = _lens_to_mask(lens, num_keys)  # (N, L or 1, S)
        middle = (1,) * (len(scores_shape) - 3)
        # (N, L or 1, S) -> (N, 1, ..., 1, L or 1, S)
        lens_mask = lens_mask.reshape(lens_mask.shape[0], *middle, *lens_mask.shape[1:])
        mask = lens_mask if mask is None else mask & lens_mask
    if is_causal:
        causal = causal_mask(num_queries, num_keys, device=device)  # (L, S)
        mask = causal if mask is None else mask & causal
    return mask


def _softmax_with_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Masked softmax over the last dim for a checked ``mask`` (or ``None``)."""
    if mask is None:
        return torch.softmax(scores, dim=-1)
    # The most negative finite value, not -inf: a fully masked row stays finite (uniform) ...
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(filled, dim=-1)
    # ... and is then zeroed with every other masked weight: exactly 0, never NaN.
    return torch.where(mask, weights, 0.0)


def masked_softmax(
    scores: Tensor, attn_mask: Tensor | None = None, *, valid_lens: Tensor | None = None
) -> Tensor:
    r"""Softmax over the last dim that gives masked positions weight exactly 0.

    .. math::

        \alpha_{ij} = \frac{m_{ij} \exp(s_{ij})}{\sum_{k} m_{ik} \exp(s_{ik})},
        \qquad m_{ij} \in \{0, 1\}

    A row with no allowed key (all :math:`m_{ij} = 0`) is all zeros, never NaN, in float16,
    bfloat16, float32 and float64. Masked scores are filled with the dtype's most negative
    finite value before the softmax and the masked weights are then set to exactly 0. The
    inputs are never modified.

    Args:
        scores: ``(..., L, S)`` floating-point scores.
        attn_mask: Boolean, True = may attend; broadcasts to ``scores``' shape.
        valid_lens: Integer ``(N,)`` or ``(N, L)`` counts of leading keys each batch row or
            query may see, in ``[0, S]``; ``N`` is ``scores``' leading dim and the counts
            broadcast over the dims between ``N`` and ``L``. Combined with ``attn_mask`` by AND.

    Returns:
        The weights, same shape and dtype as ``scores``.

    Raises:
        TypeError: If ``scores`` is not floating point or ``attn_mask`` is not boolean.
        ValueError: If ``attn_mask`` does not broadcast or ``valid_lens`` is invalid.

    Example:
        >>> scores = torch.zeros(2, 1, 4)
        >>> masked_softmax(scores, valid_lens=torch.tensor([2, 0]))
        tensor([[[0.5000, 0.5000, 0.0000, 0.0000]],
        <BLANKLINE>
                [[0.0000, 0.0000, 0.0000, 0.0000]]])
    """
    scores = check_float("scores", scores)
    if scores.ndim < 1:
        msg = "scores must have at least 1 dim (..., S); got a 0-dim tensor"
        raise ValueError(msg)
    shape = scores.shape if scores.ndim >= 2 else (1, scores.shape[0])
    mask = _combine_masks(shape, attn_mask, valid_lens, is_causal=False, device=scores.device)
    if mask is not None and scores.ndim == 1:
        mask = mask.reshape(-1)  # (1, S) -> (S,)
    return _softmax_with_mask(scores, mask)
