r"""A toy task where heads need different spans, to train :class:`AdaptiveSpan` on.

Each position ``t`` of a random token sequence has one target per head: head ``h`` must
output the token ``lags[h]`` positions back. :class:`SpanModel` is one layer of causal
attention whose scores depend on the distance only, with an
:class:`~attention_book.variants.AdaptiveSpan` and its own readout per head, so head ``h``
can only answer if it looks ``lags[h]`` back. :func:`train_adaptive_span` trains it with a
small penalty on the spans and records them at every step: with the default lags ``(1, 12)``
the spans start equal and drift apart, one short and one long.

Shapes: ``N`` batch, ``T`` positions, ``H`` heads (one per lag), ``V`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import (
    check_instance,
    check_int,
    check_non_negative,
    check_positive,
    check_test_split,
    check_token_ids,
)
from attention_book.masking import masked_softmax
from attention_book.variants.adaptive import AdaptiveSpan

__all__ = [
    "CopyTaskData",
    "SpanModel",
    "SpanModelOutput",
    "SpanResult",
    "copy_task_data",
    "train_adaptive_span",
]


class CopyTaskData(NamedTuple):
    r"""Sequences of the copy task: head ``h`` must output the token ``lags[h]`` back.

    .. math::

        y_{t,h} = x_{t - \text{lag}_h} \quad (t \ge \text{lag}_h)

    Attributes:
        tokens: ``(N, T)`` int64, random tokens.
        targets: ``(N, T, H)`` int64, ``tokens[:, t - lags[h]]``, or ``-100`` (ignored by
            :func:`torch.nn.functional.cross_entropy`) where ``t < lags[h]``.
        lags: How far back each head must copy from (a tuple).
        vocab_size: The number of distinct tokens.

    Example:
        >>> data = copy_task_data(2, seq_len=5, lags=(1, 3), vocab_size=4)
        >>> data.targets[0, 4].tolist() == [data.tokens[0, 3].item(), data.tokens[0, 1].item()]
        True
    """

    tokens: Tensor
    targets: Tensor
    lags: Sequence[int]
    vocab_size: int


def copy_task_data(
    num_samples: int,
    seq_len: int = 32,
    *,
    lags: Sequence[int] = (1, 12),
    vocab_size: int = 8,
    seed: int = 0,
) -> CopyTaskData:
    r"""Make the copy task: random tokens, and for each head the token ``lags[h]`` back.

    .. math::

        x_t \sim \mathcal U\{0, \dots, V - 1\}, \qquad y_{t,h} = x_{t - \text{lag}_h}

    Args:
        num_samples: ``N``, the number of sequences.
        seq_len: ``T``, the length of each sequence; longer than every lag.
        lags: One distance per head, each at least 1.
        vocab_size: ``V``, at least 2.
        seed: Seed of a local generator (the global random state is left alone).

    Returns:
        :class:`CopyTaskData`.

    Raises:
        TypeError: If a count is not an int.
        ValueError: If a count is too small, ``lags`` is empty or a lag is not below
            ``seq_len``.

    Example:
        >>> data = copy_task_data(3, seq_len=4, lags=(1,))
        >>> data.tokens.shape, data.targets.shape
        (torch.Size([3, 4]), torch.Size([3, 4, 1]))
        >>> data.targets[:, 0, 0]  # nothing to copy at t = 0
        tensor([-100, -100, -100])
    """
    check_int("num_samples", num_samples, minimum=1)
    check_int("seq_len", seq_len, minimum=2)
    check_int("vocab_size", vocab_size, minimum=2)
    if len(lags) == 0:
        msg = "lags must name at least one distance; got ()"
        raise ValueError(msg)
    for lag in lags:
        check_int("lags", lag, minimum=1)
        if lag >= seq_len:
            msg = f"lags must be below seq_len = {seq_len}; got {tuple(lags)}"
            raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(vocab_size, (num_samples, seq_len), generator=generator)
    targets = torch.full((num_samples, seq_len, len(lags)), -100, dtype=torch.int64)
    for h, lag in enumerate(lags):
        targets[:, lag:, h] = tokens[:, :-lag]
    return CopyTaskData(tokens, targets, tuple(lags), vocab_size)


class SpanModelOutput(NamedTuple):
    r"""What :class:`SpanModel` computes: one prediction per head and position.

    .. math::

        \text{logits}_{t,h} = W_h\, \mathbf o_{t,h} + \mathbf b_h

    Attributes:
        logits: ``(N, T, H, V)``.
        weights: ``(N, H, T, T)``, the attention weights after the span mask.

    Example:
        >>> SpanModelOutput(torch.zeros(1, 2, 1, 3), torch.eye(2)[None, None]).weights.shape
        torch.Size([1, 1, 2, 2])
    """

    logits: Tensor
    weights: Tensor


class SpanModel(nn.Module):
    r"""One layer of causal attention with an adaptive span per head and a readout per head.

    .. math::

        a_{h,tj} = \operatorname{softmax}_{0 \le t - j < \text{max\_span}}(r_{h,\, t - j}),
        \qquad \mathbf o_{t,h} = \sum_j a'_{h,tj}\, \mathbf e_h(x_j)

    The scores depend only on the distance (a learned bias :math:`r_{h,d}` per head and
    distance, as in relative position encodings, initialised to 0), the weights :math:`a'`
    are :math:`a` masked by :class:`AdaptiveSpan`, and head :math:`h` pools its own
    embeddings :math:`\mathbf e_h` of the tokens and feeds its own readout: head :math:`h`
    answers target :math:`h` of :class:`CopyTaskData`, so the heads cannot swap roles.

    Args:
        vocab_size: ``V``.
        num_heads: ``H``.
        max_span: The longest distance attended to, and the span's maximum.
        ramp: The ramp of :class:`AdaptiveSpan`.
        init: The initial span fraction.
        embed_dim: The features per head.

    Example:
        >>> model = SpanModel(vocab_size=5, num_heads=2, max_span=8, ramp=2)
        >>> out = model(torch.randint(5, (3, 10)))
        >>> out.logits.shape, out.weights.shape
        (torch.Size([3, 10, 2, 5]), torch.Size([3, 2, 10, 10]))
    """

    def __init__(
        self,
        vocab_size: int,
        num_heads: int,
        max_span: int,
        *,
        ramp: int = 4,
        init: float = 0.5,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("embed_dim", embed_dim, minimum=1)
        self.vocab_size = vocab_size
        self.adaptive_span = AdaptiveSpan(num_heads, max_span, ramp=ramp, init=init)
        self.embedding = nn.Embedding(vocab_size, num_heads * embed_dim)
        self.position_bias = nn.Parameter(torch.zeros(num_heads, max_span))  # r_{h,d}
        self.readout = nn.Parameter(torch.randn(num_heads, embed_dim, vocab_size) / embed_dim**0.5)
        self.readout_bias = nn.Parameter(torch.zeros(num_heads, vocab_size))

    def forward(self, tokens: Tensor) -> SpanModelOutput:
        """Predict every head's target from ``tokens (N, T)``; a :class:`SpanModelOutput`."""
        tokens = check_token_ids("tokens", tokens, self.vocab_size, "(N, T)")
        heads, max_span = self.position_bias.shape
        num, length = tokens.shape
        positions = torch.arange(length, device=tokens.device)  # (T,)
        distance = positions[:, None] - positions  # query t minus key j: (T, 1) - (T,) -> (T, T)
        allowed = (distance >= 0) & (distance < max_span)  # (T, T)
        scores = self.position_bias[:, distance.clamp(0, max_span - 1)]  # (H, T, T)
        # the weights are the same for every sequence: compute them once, (1, H, T, T)
        weights = self.adaptive_span(masked_softmax(scores, allowed)[None])
        # (N, T, H * D) -> (N, H, T, D)
        values = self.embedding(tokens).view(num, length, heads, -1).transpose(1, 2)
        pooled = weights @ values  # (1, H, T, T) @ (N, H, T, D) -> (N, H, T, D)
        logits = pooled @ self.readout[None]  # (N, H, T, D) @ (1, H, D, V) -> (N, H, T, V)
        logits = logits + self.readout_bias[None, :, None, :]
        # (N, H, T, V) -> (N, T, H, V); (1, H, T, T) -> (N, H, T, T)
        return SpanModelOutput(logits.transpose(1, 2), weights.expand(num, -1, -1, -1))


def _task_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """The sum over heads of each head's mean cross-entropy, ``(B, T, H, V)`` vs ``(B, T, H)``."""
    losses = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none")
    valid = (targets >= 0).flatten(0, 1)  # (B * T, H)
    per_head = losses.view_as(valid).sum(dim=0) / valid.sum(dim=0)  # (H,)
    return per_head.sum()


class SpanResult(NamedTuple):
    r"""What :func:`train_adaptive_span` recorded.

    .. math::

        \text{spans}_{s,h} = z_h \text{ after step } s

    Attributes:
        model: The trained :class:`SpanModel`.
        spans: ``(steps + 1, H)``, the span :math:`z_h` of every head before training and
            after each step.
        losses: The task loss of each step: the heads' mean cross-entropy, without the
            span penalty.
        accuracy: Per head, how often the held-out targets are predicted right.

    Example:
        >>> result = train_adaptive_span(copy_task_data(64, lags=(1, 3)), steps=2)
        >>> result.spans.shape, len(result.losses), len(result.accuracy)
        (torch.Size([3, 2]), 2, 2)
    """

    model: SpanModel
    spans: Tensor
    losses: list[float]
    accuracy: list[float]


def train_adaptive_span(
    data: CopyTaskData,
    *,
    steps: int = 300,
    max_span: int = 32,
    ramp: int = 4,
    init: float = 0.5,
    span_loss_weight: float = 0.01,
    lr: float = 0.01,
    batch_size: int = 32,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> SpanResult:
    r"""Train a :class:`SpanModel` on the copy task and record every head's span.

    .. math::

        \mathcal L = \sum_h \operatorname{CE}_h + \lambda\, \text{max\_span}\,
        \operatorname{mean}_h \text{span}_h

    with :math:`\lambda` = ``span_loss_weight``; Adam, then :meth:`AdaptiveSpan.clamp_`
    after each step. The last ``test_fraction`` of the sequences is held out for
    ``accuracy``. The model is initialised inside :func:`torch.random.fork_rng` seeded with
    ``seed`` and the batches come from a local generator, so a run is reproducible and leaves
    the global random state alone.

    Args:
        data: The task, from :func:`copy_task_data`; one head per lag.
        steps: Optimiser steps.
        max_span: The longest span (and distance attended to).
        ramp: The ramp of the soft mask.
        init: The initial span fraction of every head.
        span_loss_weight: :math:`\lambda`, at least 0 (0: no pressure on the spans).
        lr: Adam's learning rate.
        batch_size: Sequences per step.
        test_fraction: The share of the sequences held out.
        seed: Seed of the model and the batches.

    Returns:
        :class:`SpanResult`.

    Raises:
        TypeError: If ``data`` is not a :class:`CopyTaskData` or a count is not an int.
        ValueError: If a count or ``lr`` is not positive, ``span_loss_weight`` is negative,
            ``max_span`` is not above every lag, or ``test_fraction`` leaves no training or
            no test sequence.

    Example:
        >>> result = train_adaptive_span(copy_task_data(256))
        >>> [round(z) for z in result.spans[-1].tolist()]  # head 0 copies 1 back, head 1 12 back
        [0, 11]
    """
    check_instance("data", data, CopyTaskData)
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("max_span", max_span, minimum=1)
    check_non_negative("span_loss_weight", span_loss_weight)
    check_positive("lr", lr)
    if max(data.lags) >= max_span:
        msg = f"max_span must exceed every lag of data, {data.lags}; got {max_span}"
        raise ValueError(msg)
    num_samples = data.tokens.shape[0]
    num_test = check_test_split(test_fraction, num_samples, "sequence")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpanModel(data.vocab_size, len(data.lags), max_span, ramp=ramp, init=init)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    num_train = num_samples - num_test
    spans, losses = [model.adaptive_span.spans().detach()], []
    for _ in range(steps):
        rows = torch.randint(num_train, (batch_size,), generator=generator)
        task = _task_loss(model(data.tokens[rows]).logits, data.targets[rows])
        loss = task + span_loss_weight * model.adaptive_span.span_loss()
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        model.adaptive_span.clamp_()
        spans.append(model.adaptive_span.spans().detach())
        losses.append(task.item() / len(data.lags))
    with torch.no_grad():
        predicted = model(data.tokens[num_train:]).logits.argmax(dim=-1)  # (N_test, T, H)
    targets = data.targets[num_train:]
    valid = targets >= 0
    accuracy = ((predicted == targets) & valid).sum(dim=(0, 1)) / valid.sum(dim=(0, 1))  # (H,)
    return SpanResult(model, torch.stack(spans), losses, accuracy.tolist())
