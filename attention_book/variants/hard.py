"""Hard attention: look at one key, chosen by sampling, and learn the choice anyway.

Soft attention pools every value with softmax weights. Hard attention (Xu et al., 2015)
picks one key per query and returns its value. Picking is not differentiable, so the
scorer learns another way: with the straight-through Gumbel-softmax estimator (Jang et al.,
2017; Maddison et al., 2017), :func:`gumbel_softmax_attention`, or with the score-function
estimator REINFORCE (Williams, 1992): :func:`sample_attention` draws the key and returns its
log-probability, and :func:`reinforce_loss` turns a reward into a loss with a learned
baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book._checks import (
    check_bool_mask,
    check_broadcasts_to,
    check_float,
    check_positive,
    check_scores_value,
)
from attention_book.masking import _softmax_with_mask
from attention_book.output import AttentionOutput

__all__ = [
    "HardSample",
    "gumbel_noise",
    "gumbel_softmax_attention",
    "reinforce_loss",
    "sample_attention",
]


def gumbel_noise(
    shape: Sequence[int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw standard Gumbel noise, clamped so that it is always finite.

    .. math::

        g = -\log(-\log u), \qquad u \sim \mathcal U(0, 1)

    ``u`` is ``torch.rand(shape, generator=generator, dtype=dtype, device=device)`` clamped
    to ``[tiny, 1 - eps]`` of the dtype, so ``g`` is finite; the noise depends only on the
    generator's state, the shape, the dtype and the device. Adding it to scores and taking
    the argmax samples from their softmax (the Gumbel-max trick).

    Args:
        shape: The shape of the noise, for example the scores' ``(..., L, S)``.
        dtype: A floating-point dtype; defaults to PyTorch's default dtype.
        device: Where to draw it; defaults to the generator's (or PyTorch's default) device.
        generator: Source of randomness; PyTorch's global generator when ``None``.

    Returns:
        The noise, a tensor of ``shape``.

    Example:
        >>> generator = torch.Generator().manual_seed(0)
        >>> gumbel_noise((2, 3), generator=generator).shape
        torch.Size([2, 3])
    """
    uniform = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device)
    info = torch.finfo(uniform.dtype)
    uniform = uniform.clamp(min=info.tiny, max=1.0 - info.eps)
    return -torch.log(-torch.log(uniform))


def gumbel_softmax_attention(
    scores: Tensor,
    value: Tensor,
    *,
    tau: float = 1.0,
    hard: bool = False,
    attn_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AttentionOutput:
    r"""Pool the values with a Gumbel-softmax sample of the weights; one-hot with ``hard=True``.

    .. math::

        \boldsymbol\alpha = \operatorname{softmax}\!\left(\frac{\mathbf s + \mathbf g}{\tau}
        \right), \qquad g_j = -\log(-\log u_j), \quad u_j \sim \mathcal U(0, 1)

    The noise ``g`` comes from :func:`gumbel_noise` with the scores' shape, dtype and device,
    so identically seeded generators give the same sample whatever ``tau`` and ``hard``. As
    :math:`\tau \to 0` the soft sample approaches the one-hot vector of
    :math:`\arg\max_j (s_j + g_j)`, which is a key drawn from :math:`\operatorname{softmax}
    (\mathbf s)`. With ``hard=True`` the weights are exactly that one-hot vector, and the
    gradient is the straight-through one: the gradient of the soft sample drawn with the
    same noise (computed as ``one_hot + (soft - soft.detach())``, which is one-hot exactly).

    Masked keys are never selected and get weight 0; a query with no allowed key gets zero
    weights and a zero output. Weights and gradients stay finite for ``tau`` down to ``1e-3``
    and scores of magnitude ``1e4`` in float32 and float64.

    Args:
        scores: ``(..., L, S)`` attention scores (logits), for example scaled dot products.
        value: ``(..., S, Ev)``; its batch dims broadcast with those of ``scores``.
        tau: Temperature, positive; small values give nearly one-hot soft samples.
        hard: Return one-hot weights with the straight-through gradient.
        attn_mask: Boolean, True = may attend, broadcasting to ``scores``' shape.
        generator: Source of the noise; PyTorch's global generator when ``None``.

    Returns:
        :class:`~attention_book.AttentionOutput` with ``output (..., L, Ev)`` and
        ``weights (..., L, S)``.

    Raises:
        TypeError: If ``scores`` or ``value`` is not floating point, their dtypes differ or
            ``attn_mask`` is not boolean.
        ValueError: If the shapes do not fit together, ``attn_mask`` does not broadcast or
            ``tau`` is not positive.

    Example:
        >>> scores = torch.tensor([[2.0, 0.0, -1.0]])
        >>> output, weights = gumbel_softmax_attention(
        ...     scores, torch.eye(3), hard=True, generator=torch.Generator().manual_seed(0)
        ... )
        >>> weights.sum(), weights.max()
        (tensor(1.), tensor(1.))
    """
    scores, value = check_scores_value(scores, value)
    tau = check_positive("tau", tau)
    mask = None if attn_mask is None else check_bool_mask(attn_mask, scores.shape)
    noise = gumbel_noise(
        scores.shape, dtype=scores.dtype, device=scores.device, generator=generator
    )
    noisy = (scores + noise) / tau  # (..., L, S)
    weights = _softmax_with_mask(noisy, mask)
    if hard:
        soft = weights
        ranked = noisy if mask is None else noisy.masked_fill(~mask, torch.finfo(noisy.dtype).min)
        index = ranked.argmax(dim=-1, keepdim=True)  # (..., L, 1)
        one_hot = torch.zeros_like(soft).scatter(-1, index, 1.0)  # (..., L, S)
        if mask is not None:
            one_hot = torch.where(mask.any(dim=-1, keepdim=True), one_hot, 0.0)
        # Forward: exactly one_hot (soft - soft.detach() is exactly 0). Backward: soft's.
        weights = one_hot + (soft - soft.detach())
    output = weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return AttentionOutput(output, weights)


class HardSample(NamedTuple):
    r"""One key drawn per query by :func:`sample_attention`, its value and its log-probability.

    .. math::

        \mathbf o = \mathbf v_{j^\star}, \qquad
        \log \pi(j^\star) = s_{j^\star} - \log \textstyle\sum_j e^{s_j}

    Attributes:
        output: ``(..., L, Ev)``, the value of the drawn key (zeros for a query with no
            allowed key).
        index: ``(..., L)`` int64, the drawn key; ``-1`` for a query with no allowed key.
        log_prob: ``(..., L)``, :math:`\log \operatorname{softmax}(\mathbf s)_{\text{index}}`,
            differentiable with respect to the scores (0 for a query with no allowed key).

    Example:
        >>> sample = HardSample(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([-0.7]))
        >>> output, index, log_prob = sample
        >>> index
        tensor([0])
    """

    output: Tensor
    index: Tensor  # type: ignore[assignment]  # the field's name shadows tuple.index
    log_prob: Tensor


def sample_attention(
    scores: Tensor,
    value: Tensor,
    *,
    attn_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> HardSample:
    r"""Draw one key per query from the softmax of its scores and return that key's value.

    .. math::

        j^\star \sim \operatorname{softmax}(\mathbf s), \qquad
        \mathbf o = \mathbf v_{j^\star}, \qquad
        \log \pi(j^\star) = s_{j^\star} - \log \textstyle\sum_j e^{s_j}

    The key is drawn with the Gumbel-max trick, :math:`j^\star = \arg\max_j (s_j + g_j)` with
    ``g`` from :func:`gumbel_noise`, so it uses exactly the noise that
    :func:`gumbel_softmax_attention` would draw from the same generator state, and with
    ``hard=True`` picks the same key. The output carries no gradient to the scores (drawing
    is not differentiable); ``log_prob`` does, which is what REINFORCE needs
    (:func:`reinforce_loss`). Masked keys are never drawn.

    Args:
        scores: ``(..., L, S)`` attention scores (logits).
        value: ``(..., S, Ev)``; its batch dims broadcast with those of ``scores``.
        attn_mask: Boolean, True = may attend, broadcasting to ``scores``' shape.
        generator: Source of the noise; PyTorch's global generator when ``None``.

    Returns:
        :class:`HardSample` with ``output (..., L, Ev)``, ``index (..., L)`` and
        ``log_prob (..., L)``.

    Raises:
        TypeError: If ``scores`` or ``value`` is not floating point, their dtypes differ or
            ``attn_mask`` is not boolean.
        ValueError: If the shapes do not fit together or ``attn_mask`` does not broadcast.

    Example:
        >>> scores = torch.tensor([[0.0, 0.0, -1e4]])  # the last key is (almost) never drawn
        >>> sample = sample_attention(scores, torch.eye(3), generator=torch.Generator().manual_seed(0))
        >>> sample.index, sample.log_prob.exp()
        (tensor([1]), tensor([0.5000]))
    """
    scores, value = check_scores_value(scores, value)
    mask = None if attn_mask is None else check_bool_mask(attn_mask, scores.shape)
    noise = gumbel_noise(
        scores.shape, dtype=scores.dtype, device=scores.device, generator=generator
    )
    logits = scores
    if mask is not None:
        mask = mask.expand(scores.shape)
        logits = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    index = (logits.detach() + noise).argmax(dim=-1)  # (..., L)
    log_prob = torch.log_softmax(logits, dim=-1).gather(-1, index[..., None])[..., 0]
    one_hot = F.one_hot(index, scores.shape[-1]).to(scores.dtype)  # (..., L, S)
    if mask is not None:
        has_key = mask.any(dim=-1)  # (..., L)
        index = torch.where(has_key, index, -1)
        log_prob = torch.where(has_key, log_prob, 0.0)
        one_hot = torch.where(has_key[..., None], one_hot, 0.0)
    output = one_hot @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return HardSample(output, index, log_prob)


def reinforce_loss(log_prob: Tensor, reward: Tensor, baseline: Tensor) -> Tensor:
    r"""REINFORCE with a learned baseline: a loss whose gradient is the policy-gradient estimate.

    .. math::

        \mathcal L = -\frac{1}{M} \sum_m \operatorname{sg}(R_m - b_m) \log \pi(a_m)
        + \frac{1}{M} \sum_m (\operatorname{sg}(R_m) - b_m)^2

    where :math:`\operatorname{sg}` stops the gradient and the means run over the ``M``
    elements of ``log_prob``'s shape. The first term's gradient is Williams' (1992)
    estimate :math:`-(R - b) \nabla \log \pi(a)` of the gradient of :math:`-\mathbb E[R]`;
    subtracting a baseline that does not depend on the action leaves it unbiased and lowers
    its variance. The second term trains the baseline toward :math:`\mathbb E[R]` (its
    gradient is :math:`-2 (R - b)` per element) and gives the policy no gradient. Minimise
    the sum with the rest of the model's loss.

    Args:
        log_prob: ``(...)``, the log-probability of each sampled action, differentiable
            with respect to the policy's parameters (``HardSample.log_prob``).
        reward: Broadcasting to ``log_prob``'s shape: the reward of each action (higher is
            better); no gradient flows into it.
        baseline: Broadcasting to ``log_prob``'s shape: the predicted reward, for example a
            learned scalar or a small network of the input.

    Returns:
        The 0-dim loss.

    Raises:
        TypeError: If an argument is not a floating-point tensor.
        ValueError: If ``reward`` or ``baseline`` does not broadcast to ``log_prob``'s shape.

    Example:
        >>> log_prob = torch.log(torch.tensor([0.5, 0.25]))
        >>> reward, baseline = torch.tensor([1.0, 0.0]), torch.tensor(0.5)
        >>> reinforce_loss(log_prob, reward, baseline)  # -(0.5 log 0.5 - 0.5 log 0.25) / 2 + 0.25
        tensor(0.0767)
    """
    log_prob = check_float("log_prob", log_prob)
    reward = check_float("reward", reward)
    baseline = check_float("baseline", baseline)
    check_broadcasts_to("reward", reward, log_prob.shape, "log_prob's shape")
    check_broadcasts_to("baseline", baseline, log_prob.shape, "log_prob's shape")
    advantage = (reward - baseline).detach()  # how much better than expected
    policy = -(advantage * log_prob).mean()
    regression = ((reward.detach() - baseline) ** 2).expand(log_prob.shape).mean()
    return policy + regression
