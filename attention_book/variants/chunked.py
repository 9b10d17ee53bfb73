r"""Exact attention in constant memory: the online softmax, key chunk by key chunk.

Softmax attention needs every score of a row before it can normalise, so the readable path
(:func:`~attention_book.scaled_dot_product_attention`) holds the whole ``(..., L, S)`` matrix.
The online softmax (Milakov & Gimelshein, 2018) folds the keys in chunk by chunk instead,
carrying three running quantities per query: the maximum score ``m`` seen so far, the sum
``l`` of ``exp(score - m)`` and the unnormalised output ``acc = Σ exp(score - m) v``. When a
new chunk raises the maximum, the old sum and output are rescaled by ``exp(m_old - m_new)``;
at the end ``acc / l`` is exactly softmax attention. :func:`chunked_attention` runs it on
``(query_chunk, key_chunk)`` blocks of scores (Rabe & Staats, 2021; the tiling of
FlashAttention, Dao et al., 2022), so memory no longer grows with ``L · S``;
:func:`online_softmax` shows the running statistics of one row, step by step.

Shapes: ``N`` batch (any leading dims ``...``, broadcast between the inputs), ``H`` heads,
``L`` queries, ``S`` keys and values, ``E`` query/key features, ``Ev`` value features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from attention_book._checks import (
    check_attention_inputs,
    check_bool_mask,
    check_callable,
    check_exact_ndim,
    check_float,
    check_int,
    check_ndim,
    fmt_shape,
)
from attention_book.variants.patterns import MaskMod

__all__ = ["OnlineSoftmax", "OnlineSoftmaxStep", "chunked_attention", "online_softmax"]

_SIGNATURE = "mask_mod(b, h, q_idx, kv_idx) -> Tensor"


def _online_step(
    maximum: Tensor, total: Tensor, acc: Tensor, scores: Tensor, value: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Fold one block of ``scores (..., q, k)`` and ``value (..., k, Ev)`` in.

    A score of -inf is a masked key. ``maximum`` and ``total`` are ``(..., q, 1)``,
    ``acc`` is ``(..., q, Ev)``. The maximum only shifts the exponents (it cancels in
    ``acc / total``), so no gradient flows through it. ``scores`` is overwritten with
    the block's unnormalised weights (a scratch block: one allocation less per block).
    """
    block_max = scores.detach().amax(dim=-1, keepdim=True)  # (..., q, 1)
    new_max = torch.maximum(maximum, block_max)
    # a row that has met no key yet: any shift will do
    shift = torch.where(new_max == -math.inf, 0.0, new_max)
    rescale = torch.exp(maximum - shift)  # (..., q, 1): how much the old sums shrink
    weights = scores.sub_(shift).exp_()  # (..., q, k), exactly 0 where masked
    total = total * rescale + weights.sum(dim=-1, keepdim=True)
    acc = acc * rescale + weights @ value  # (..., q, k) @ (..., k, Ev) -> (..., q, Ev)
    return new_max, total, acc


class OnlineSoftmaxStep(NamedTuple):
    r"""The running statistics of a row after one more chunk of scores.

    .. math::

        m_t = \max(m_{t-1}, \max_j s_j), \qquad
        l_t = e^{m_{t-1} - m_t} l_{t-1} + \sum_j e^{s_j - m_t}, \qquad
        o_t = \frac{a_t}{l_t}

    Attributes:
        maximum: ``(...)``, the largest score seen so far, :math:`m_t` (``-inf`` while no
            allowed key has been seen).
        total: ``(...)``, :math:`l_t = \sum_j e^{s_j - m_t}` over the scores seen so far.
        output: ``(..., Ev)``, attention over the keys seen so far, :math:`o_t` (zeros while
            no allowed key has been seen; ``None`` without values).

    Example:
        >>> step = online_softmax([torch.tensor([0.0, 1.0])]).steps[0]
        >>> step.maximum, step.total.round(decimals=4)
        (tensor(1.), tensor(1.3679))
    """

    maximum: Tensor
    total: Tensor
    output: Tensor | None


class OnlineSoftmax(NamedTuple):
    r"""What :func:`online_softmax` returns: the final weights and output, and every step.

    .. math::

        \alpha_j = \frac{e^{s_j - m_T}}{l_T}, \qquad o = o_T = \sum_j \alpha_j v_j

    Attributes:
        weights: ``(..., S)``, the softmax of all the scores, chunks concatenated.
        output: ``(..., Ev)``, the weighted sum of the values (``None`` without values).
        steps: One :class:`OnlineSoftmaxStep` per chunk, in order.

    Example:
        >>> result = online_softmax([torch.tensor([0.0]), torch.tensor([0.0])])
        >>> result.weights, len(result.steps)
        (tensor([0.5000, 0.5000]), 2)
    """

    weights: Tensor
    output: Tensor | None
    steps: list[OnlineSoftmaxStep]


def online_softmax(
    chunks: Iterable[Tensor], values: Iterable[Tensor] | None = None
) -> OnlineSoftmax:
    r"""Softmax of a row whose scores arrive in chunks, keeping only a running maximum and sum.

    .. math::

        m_t = \max\bigl(m_{t-1}, \max_{j \in C_t} s_j\bigr), \qquad
        l_t = e^{m_{t-1} - m_t}\, l_{t-1} + \sum_{j \in C_t} e^{s_j - m_t}

    with :math:`m_0 = -\infty`, :math:`l_0 = 0`; after the last chunk
    :math:`\operatorname{softmax}(s)_j = e^{s_j - m_T} / l_T` (Milakov & Gimelshein, 2018).
    With ``values`` the unnormalised output is carried along too,
    :math:`a_t = e^{m_{t-1} - m_t} a_{t-1} + \sum_{j \in C_t} e^{s_j - m_t} v_j`, and each step
    reports :math:`o_t = a_t / l_t`, attention over the keys seen so far. A score of ``-inf``
    is a masked key; a row with no allowed key gets zero weights and a zero output.

    This is the teaching form: it records every step and keeps the chunks to return the
    weights. :func:`chunked_attention` runs the same update on blocks of many rows at once.

    Args:
        chunks: Score chunks ``(..., S_t)``, all with the same leading dims ``...`` (a single
            row: 1-D chunks).
        values: Value chunks ``(..., S_t, Ev)``, one per score chunk, or ``None``.

    Returns:
        :class:`OnlineSoftmax` with ``weights (..., S)``, ``output (..., Ev)`` (``None``
        without values) and one :class:`OnlineSoftmaxStep` per chunk.

    Raises:
        TypeError: If a chunk is not floating point or a value chunk has another dtype.
        ValueError: If there are no chunks, a chunk is 0-dim or has other leading dims than
            the first, or the values do not pair up with the chunks (count or rows).

    Example:
        >>> result = online_softmax([torch.tensor([1.0, 2.0]), torch.tensor([3.0])])
        >>> [step.maximum.item() for step in result.steps]
        [2.0, 3.0]
        >>> torch.allclose(result.weights, torch.tensor([1.0, 2.0, 3.0]).softmax(dim=-1))
        True
    """
    scores = [check_float(f"chunks[{t}]", chunk) for t, chunk in enumerate(chunks)]
    if not scores:
        msg = "chunks must hold at least one chunk of scores; got none"
        raise ValueError(msg)
    for t, chunk in enumerate(scores):
        check_ndim(f"chunks[{t}]", chunk, 1, "(..., S_t)")
        if chunk.shape[:-1] != scores[0].shape[:-1]:
            msg = (
                f"chunks[{t}] must have the leading dims of chunks[0], "
                f"{fmt_shape(scores[0].shape[:-1])}; got shape {fmt_shape(chunk.shape)}"
            )
            raise ValueError(msg)
    vals = None if values is None else list(values)
    if vals is not None:
        _check_value_chunks(scores, vals)
    ev = 1 if vals is None else vals[0].shape[-1]  # a stand-in value column when none is given
    lead = scores[0].shape[:-1]
    maximum = scores[0].new_full((*lead, 1, 1), -math.inf)  # (..., 1, 1): one query row
    total = scores[0].new_zeros((*lead, 1, 1))
    acc = scores[0].new_zeros((*lead, 1, ev))
    steps = []
    for t, chunk in enumerate(scores):
        value = chunk.new_zeros((*chunk.shape, ev)) if vals is None else vals[t]
        block = chunk[..., None, :].clone()  # (..., 1, S_t): a scratch copy the step overwrites
        maximum, total, acc = _online_step(maximum, total, acc, block, value)
        output = None if vals is None else _normalise(acc, total)[..., 0, :]
        steps.append(OnlineSoftmaxStep(maximum[..., 0, 0], total[..., 0, 0], output))
    shift = torch.where(maximum == -math.inf, 0.0, maximum)[..., 0]  # (..., 1)
    weights = _normalise(torch.exp(torch.cat(scores, dim=-1) - shift), total[..., 0])  # (..., S)
    return OnlineSoftmax(weights, steps[-1].output, steps)


def _check_value_chunks(scores: list[Tensor], values: list[Tensor]) -> None:
    """Check that ``values[t]`` is ``(..., S_t, Ev)`` for score chunk ``scores[t]``."""
    if len(values) != len(scores):
        msg = f"values must hold one chunk per score chunk ({len(scores)}); got {len(values)}"
        raise ValueError(msg)
    for t, (chunk, value) in enumerate(zip(scores, values, strict=True)):
        check_float(f"values[{t}]", value)
        if value.dtype != chunk.dtype:
            msg = (
                f"values[{t}] must have the dtype of chunks[{t}] ({chunk.dtype}); got {value.dtype}"
            )
            raise TypeError(msg)
        if value.shape[:-1] != chunk.shape or value.shape[-1] != values[0].shape[-1]:
            msg = (
                f"values[{t}] must have shape (..., S_t, Ev) = "
                f"{fmt_shape((*chunk.shape, values[0].shape[-1]))}; got {fmt_shape(value.shape)}"
            )
            raise ValueError(msg)


def _normalise(acc: Tensor, total: Tensor) -> Tensor:
    """``acc / total``, with zeros for rows that saw no allowed key (``total == 0``)."""
    return acc / torch.where(total > 0, total, 1.0)


def chunked_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    query_chunk_size: int = 1024,
    key_chunk_size: int = 1024,
    mask_mod: MaskMod | None = None,
) -> Tensor:
    r"""Exact softmax attention computed block by block with the online softmax, in constant memory.

    .. math::

        m \leftarrow \max(m, \max_j s_{ij}), \quad
        l \leftarrow e^{m_{\text{old}} - m} l + \sum_j e^{s_{ij} - m}, \quad
        a \leftarrow e^{m_{\text{old}} - m} a + \sum_j e^{s_{ij} - m} v_j, \quad
        o_i = a / l

    over the key chunks :math:`j \in C_1, C_2, \dots` of each chunk of queries, with
    :math:`s_{ij} = \text{scale} \cdot q_i^\top k_j` (Milakov & Gimelshein, 2018; Rabe &
    Staats, 2021; Dao et al., 2022). It holds the scores of one
    ``(..., query_chunk_size, key_chunk_size)`` block at a time (and, for a moment, their masked
    copy), so memory does not grow with ``L · S``. The result equals
    ``torch.nn.functional.scaled_dot_product_attention`` (and the package's
    :func:`~attention_book.scaled_dot_product_attention`) up to rounding, for every mask.

    Masks, all True = may attend, combine by AND (PyTorch refuses ``attn_mask`` with
    ``is_causal``; this function accepts both, the package's rule). A query with no key to
    attend to gets a zero output, never NaN. A block in which no query may see any key is
    skipped before its scores are computed: with ``is_causal`` the blocks above the diagonal,
    with a narrow ``mask_mod`` (a sliding window) most blocks, so such a pattern costs a
    fraction of full attention.

    ``mask_mod`` is a FlexAttention mask function (:data:`~attention_book.variants.MaskMod`,
    e.g. :func:`~attention_book.variants.sliding_window`), for ``(N, H, L, E)`` inputs only. It
    is called once per block on index tensors that broadcast to the block: ``b (N, 1, 1, 1)``,
    ``h (1, H, 1, 1)``, ``q_idx (1, 1, q, 1)`` and ``kv_idx (1, 1, 1, k)``, never on an
    ``(L, S)`` grid; patterns written with element-wise tensor operations (all of the
    package's) work unchanged.

    Gradients equal those of dense attention. When an input requires grad, the forward pass
    keeps no block: the backward pass recomputes the blocks of one chunk of queries at a time
    (gradient checkpointing per query chunk, written out as a small ``autograd.Function`` so
    that it does not need ``torch.utils.checkpoint``, whose first call imports TorchDynamo),
    so it holds at most ``(..., query_chunk_size, S)`` weights at once.

    Args:
        query: ``(..., L, E)`` (``(N, H, L, E)`` with ``mask_mod``).
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: Boolean, True = may attend, broadcasting to ``(..., L, S)``.
        is_causal: Let query ``i`` see keys ``0..i`` only (top-left aligned when ``L != S``,
            like PyTorch).
        scale: Factor applied to the dot products; defaults to :math:`1/\sqrt{E}`.
        query_chunk_size: Queries per block (``1`` or more).
        key_chunk_size: Keys per block (``1`` or more).
        mask_mod: A mask function ``mask_mod(b, h, q_idx, kv_idx) -> Tensor`` (bool, True =
            may attend), evaluated block by block.

    Returns:
        The output ``(..., L, Ev)``.

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, ``attn_mask`` is not
            boolean, a chunk size is not an int, or ``mask_mod`` is not callable or does not
            return a boolean tensor.
        ValueError: If the shapes do not fit together, ``attn_mask`` does not broadcast, a
            chunk size is below 1, or ``mask_mod`` comes with inputs that are not 4-D.

    Example:
        >>> import torch.nn.functional as F
        >>> from attention_book.variants import sliding_window
        >>> q, k, v = torch.randn(3, 1, 2, 7, 4).unbind(0)  # (N, H, L, E) each
        >>> out = chunked_attention(q, k, v, is_causal=True, query_chunk_size=3, key_chunk_size=2)
        >>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
        True
        >>> window = chunked_attention(q, k, v, mask_mod=sliding_window(1, 1), key_chunk_size=2)
        >>> window.shape
        torch.Size([1, 2, 7, 4])
    """
    query, key, value, batch = check_attention_inputs(query, key, value)
    check_int("query_chunk_size", query_chunk_size, minimum=1)
    check_int("key_chunk_size", key_chunk_size, minimum=1)
    num_queries, num_keys = query.shape[-2], key.shape[-2]
    mask = None
    if attn_mask is not None:
        mask = check_bool_mask(attn_mask, (*batch, num_queries, num_keys))
        mask = mask.reshape((1,) * (2 - mask.ndim) + mask.shape)  # at least (L or 1, S or 1)
    if mask_mod is not None:
        _check_mask_mod(mask_mod, query, key, value)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    blocks = _Blocks(batch, key_chunk_size, mask, is_causal, mask_mod, query.device)
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    output = query.new_empty((*batch, num_queries, value.shape[-1]))  # (..., L, Ev)
    for start in range(0, num_queries, query_chunk_size):
        rows = slice(start, start + query_chunk_size)
        chunk = query[..., rows, :] * scale  # (..., q, E)
        if recompute:
            output[..., rows, :] = _Recompute.apply(blocks, start, chunk, key, value)  # type: ignore[no-untyped-call]
        else:
            output[..., rows, :] = blocks.attend(chunk, key, value, start)  # (..., q, Ev)
    return output


def _check_mask_mod(mask_mod: object, query: Tensor, key: Tensor, value: Tensor) -> None:
    """Check that ``mask_mod`` is callable, the inputs are 4-D and it answers with a bool tensor."""
    check_callable("mask_mod", mask_mod, _SIGNATURE)
    check_exact_ndim("query", query, 4, "(N, H, L, E) with mask_mod")
    check_exact_ndim("key", key, 4, "(N, H, S, E) with mask_mod")
    check_exact_ndim("value", value, 4, "(N, H, S, Ev) with mask_mod")
    zero = torch.zeros((1, 1, 1, 1), dtype=torch.long, device=query.device)
    answer = mask_mod(zero, zero, zero, zero)  # type: ignore[operator]
    if not isinstance(answer, Tensor) or answer.dtype != torch.bool:
        got = answer.dtype if isinstance(answer, Tensor) else type(answer).__name__
        msg = f"mask_mod must return a boolean tensor (True = may attend); got {got}"
        raise TypeError(msg)


class _Blocks:
    """The key loop of one chunk of queries, with the masks of each block it visits."""

    def __init__(
        self,
        batch: tuple[int, ...],
        key_chunk_size: int,
        mask: Tensor | None,
        is_causal: bool,
        mask_mod: MaskMod | None,
        device: torch.device,
    ) -> None:
        self.batch = batch
        self.key_chunk_size = key_chunk_size
        self.mask = mask
        self.is_causal = is_causal
        self.mask_mod = mask_mod
        self.device = device

    def attend(self, query: Tensor, key: Tensor, value: Tensor, start: int) -> Tensor:
        """Attention of queries ``start..`` (``query (..., q, E)``, scaled) over all keys."""
        rows = query.shape[-2]
        maximum = query.new_full((*self.batch, rows, 1), -math.inf)  # (..., q, 1)
        total = query.new_zeros((*self.batch, rows, 1))  # (..., q, 1)
        acc = query.new_zeros((*self.batch, rows, value.shape[-1]))  # (..., q, Ev)
        for first in range(0, key.shape[-2], self.key_chunk_size):
            if self.is_causal and first >= start + rows:
                break  # this block and every later one lie above the diagonal
            cols = slice(first, first + self.key_chunk_size)
            allowed = self.block_mask(start, rows, first, key[..., cols, :].shape[-2])
            if allowed is not None and not bool(allowed.any()):
                continue  # no query of the block may see any of its keys: skip it
            if allowed is not None and bool(allowed.all()):
                allowed = None  # every query may see every key of the block
            scores = query @ key[..., cols, :].transpose(-2, -1)  # (..., q, E) @ (..., E, k)
            if allowed is not None:
                scores = torch.where(allowed, scores, -math.inf)  # (..., q, k)
            maximum, total, acc = _online_step(maximum, total, acc, scores, value[..., cols, :])
        return _normalise(acc, total)  # (..., q, Ev)

    def block_mask(self, start: int, rows: int, first: int, cols: int) -> Tensor | None:
        """AND of the masks on the block ``(start.., first..)``; ``None`` if there are none."""
        parts = []
        if self.mask is not None:
            mask = self.mask
            mask = mask if mask.shape[-2] == 1 else mask[..., start : start + rows, :]
            parts.append(mask if mask.shape[-1] == 1 else mask[..., first : first + cols])
        if self.is_causal or self.mask_mod is not None:
            q_idx = torch.arange(start, start + rows, device=self.device)[:, None]  # (q, 1)
            kv_idx = torch.arange(first, first + cols, device=self.device)[None, :]  # (1, k)
            if self.is_causal and first + cols - 1 > start:  # some key after some query
                parts.append(kv_idx <= q_idx)  # (q, k)
            if self.mask_mod is not None:
                num_batch, num_heads = self.batch
                b = torch.arange(num_batch, device=self.device)[:, None, None, None]  # (N, 1, 1, 1)
                h = torch.arange(num_heads, device=self.device)[None, :, None, None]  # (1, H, 1, 1)
                parts.append(self.mask_mod(b, h, q_idx[None, None], kv_idx[None, None]))
        if not parts:
            return None
        allowed = parts[0]
        for part in parts[1:]:
            allowed = allowed & part
        return allowed


class _Recompute(torch.autograd.Function):
    """One chunk of queries without stored blocks: backward runs the chunk again, with grad."""

    @staticmethod
    def forward(
        ctx: Any, blocks: _Blocks, start: int, query: Tensor, key: Tensor, value: Tensor
    ) -> Tensor:
        ctx.blocks, ctx.start = blocks, start
        ctx.save_for_backward(query, key, value)
        return blocks.attend(query, key, value, start)  # autograd records nothing in here

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        needs = ctx.needs_input_grad[2:]  # query, key, value
        inputs = [
            x.detach().requires_grad_(n) for x, n in zip(ctx.saved_tensors, needs, strict=True)
        ]
        with torch.enable_grad():
            output = ctx.blocks.attend(*inputs, ctx.start)  # the chunk's blocks, recorded this time
        wanted = [x for x in inputs if x.requires_grad]
        grads = iter(torch.autograd.grad(output, wanted, grad_output, allow_unused=True))
        return None, None, *(next(grads) if x.requires_grad else None for x in inputs)
