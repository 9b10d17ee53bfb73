"""A toy task where a query must pick one of ``n`` items, trained three ways.

Each example holds ``n`` random items, each with a class label, and a query that is a
rotated, noisy copy of one of them. The answer is the label of that item. A model scores
the items against the query, pools the items' label embeddings and classifies the result,
so it is right only when its attention lands on the right item. :func:`pick_one_loss`
gives the loss of each way of training it: soft attention, straight-through Gumbel-softmax
attention, or sampled hard attention with REINFORCE; the training loop is in
:mod:`attention_book.variants.pick_one_training`.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_choice, check_int
from attention_book.variants.hard import gumbel_softmax_attention, reinforce_loss, sample_attention

__all__ = [
    "PickOneData",
    "PickOneMethod",
    "PickOneModel",
    "PickOneOutput",
    "PickOnePooling",
    "pick_one_data",
    "pick_one_loss",
]

#: How :func:`train_pick_one` trains the scorer.
PickOneMethod = Literal["reinforce", "gumbel", "soft"]
#: How :class:`PickOneModel` pools the items: softmax weights, a straight-through Gumbel
#: sample, a sampled item (REINFORCE), or the best-scoring item.
PickOnePooling = Literal["soft", "gumbel", "sample", "argmax"]


class PickOneData(NamedTuple):
    r"""Examples of the pick-one task (see :func:`pick_one_data`).

    .. math::

        \text{answer}_m = \text{labels}_{m,\, \text{target}_m}

    Attributes:
        items: ``(N, n, D)`` float, the items of each example.
        labels: ``(N, n)`` int64, the class of each item.
        query: ``(N, D)`` float, a rotated, noisy copy of the target item.
        target: ``(N,)`` int64, the index of the item the query was made from.
        answer: ``(N,)`` int64, the class to predict: ``labels[target]``.

    Example:
        >>> data = pick_one_data(4, num_items=5, dim=3)
        >>> data.items.shape, data.labels.shape, data.query.shape, data.answer.shape
        (torch.Size([4, 5, 3]), torch.Size([4, 5]), torch.Size([4, 3]), torch.Size([4]))
    """

    items: Tensor
    labels: Tensor
    query: Tensor
    target: Tensor
    answer: Tensor


def pick_one_data(
    num_samples: int,
    num_items: int = 8,
    dim: int = 16,
    *,
    num_classes: int = 10,
    noise: float = 0.5,
    seed: int = 0,
) -> PickOneData:
    r"""Make examples of the pick-one task: find the item the query was made from.

    .. math::

        \mathbf x_1, \dots, \mathbf x_n \sim \mathcal N(0, I_D), \qquad
        \mathbf q = R\, \mathbf x_t + \sigma \boldsymbol\epsilon, \qquad
        y = c_t

    with the target :math:`t` uniform in :math:`\{0, \dots, n - 1\}`, the labels
    :math:`c_i` uniform in :math:`\{0, \dots, C - 1\}`, :math:`\boldsymbol\epsilon \sim
    \mathcal N(0, I_D)` and one random rotation :math:`R` for the whole data set. The
    rotation hides the target from a plain dot product: a model must learn to score
    :math:`\mathbf q^\top R\, \mathbf x_i`. Everything is drawn from a local generator
    seeded with ``seed``.

    Args:
        num_samples: ``N``, the number of examples.
        num_items: ``n``, the items per example, at least 2.
        dim: ``D``, the features of items and queries.
        num_classes: ``C``, the number of labels, at least 2.
        noise: :math:`\sigma`, the standard deviation of the query's noise.
        seed: Seed of the data.

    Returns:
        :class:`PickOneData`.

    Raises:
        TypeError: If a count is not an int.
        ValueError: If a count is too small or ``noise`` is negative.

    Example:
        >>> data = pick_one_data(3, num_items=4, dim=2, noise=0.0)
        >>> data.answer == data.labels[torch.arange(3), data.target]
        tensor([True, True, True])
    """
    check_int("num_samples", num_samples, minimum=1)
    check_int("num_items", num_items, minimum=2)
    check_int("dim", dim, minimum=1)
    check_int("num_classes", num_classes, minimum=2)
    if not noise >= 0:
        msg = f"noise must be at least 0; got {noise}"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=generator)).Q  # (D, D)
    items = torch.randn(num_samples, num_items, dim, generator=generator)
    labels = torch.randint(num_classes, (num_samples, num_items), generator=generator)
    target = torch.randint(num_items, (num_samples,), generator=generator)
    rows = torch.arange(num_samples)
    query = items[rows, target] @ rotation.T  # (N, D) @ (D, D) -> (N, D)
    query = query + noise * torch.randn(num_samples, dim, generator=generator)
    return PickOneData(items, labels, query, target, labels[rows, target])


class PickOneOutput(NamedTuple):
    r"""What :class:`PickOneModel` computes for a batch.

    .. math::

        \text{logits} = W_o \textstyle\sum_i \alpha_i\, \mathbf e_{c_i} + \mathbf b_o

    Attributes:
        logits: ``(N, C)``, the class scores.
        weights: ``(N, n)``, the attention weights on the items (one-hot when hard).
        log_prob: ``(N,)``, the log-probability of the sampled item with
            ``pooling="sample"``; ``None`` otherwise.

    Example:
        >>> output = PickOneOutput(torch.zeros(1, 3), torch.ones(1, 2) / 2, None)
        >>> output.log_prob is None
        True
    """

    logits: Tensor
    weights: Tensor
    log_prob: Tensor | None


class PickOneModel(nn.Module):
    r"""Score the items against the query, pool their label embeddings, classify the result.

    .. math::

        s_i = \frac{(W_q \mathbf q)^\top (W_k \mathbf x_i)}{\sqrt{h}}, \qquad
        \mathbf o = \sum_i \alpha_i\, \mathbf e_{c_i}, \qquad
        \hat{\mathbf y} = W_o \mathbf o + \mathbf b_o

    The weights :math:`\boldsymbol\alpha` come from the scores according to ``pooling``:
    a softmax, a straight-through Gumbel one-hot sample, a sampled item, or the best item.
    The classifier sees nothing but the pooled label embeddings :math:`\mathbf e_{c_i}`, so
    it can only be right if the attention lands on an item with the right label. The
    ``baseline`` layer predicts the reward for REINFORCE from the query; the forward pass
    does not use it.

    Args:
        dim: ``D``, the features of items and queries.
        num_classes: ``C``.
        hidden_size: ``h``, the size of the projections and of the label embeddings.

    Example:
        >>> data = pick_one_data(2, num_items=5, dim=3, num_classes=4)
        >>> model = PickOneModel(3, 4)
        >>> out = model(data.query, data.items, data.labels, pooling="argmax")
        >>> out.logits.shape, out.weights.sum(dim=-1)
        (torch.Size([2, 4]), tensor([1., 1.]))
    """

    def __init__(self, dim: int, num_classes: int, *, hidden_size: int = 32) -> None:
        super().__init__()
        check_int("dim", dim, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        check_int("hidden_size", hidden_size, minimum=1)
        self.W_q = nn.Linear(dim, hidden_size, bias=False)
        self.W_k = nn.Linear(dim, hidden_size, bias=False)
        self.embedding = nn.Embedding(num_classes, hidden_size)
        self.classifier = nn.Linear(hidden_size, num_classes)
        self.baseline = nn.Linear(dim, 1)

    def scores(self, query: Tensor, items: Tensor) -> Tensor:
        """The scaled dot products ``(N, n)`` of ``query (N, D)`` and ``items (N, n, D)``."""
        q: Tensor = self.W_q(query)[:, None, :]  # (N, D) -> (N, 1, h)
        k: Tensor = self.W_k(items)  # (N, n, D) -> (N, n, h)
        scores = q @ k.transpose(-2, -1)  # (N, 1, h) @ (N, h, n) -> (N, 1, n)
        return scores[:, 0] / math.sqrt(k.shape[-1])  # (N, n)

    def forward(
        self,
        query: Tensor,
        items: Tensor,
        labels: Tensor,
        *,
        pooling: PickOnePooling = "soft",
        tau: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> PickOneOutput:
        """Classify ``query (N, D)`` by attending to ``items (N, n, D)`` with ``labels (N, n)``.

        ``tau`` is the Gumbel-softmax temperature and ``generator`` the source of the noise
        (``"gumbel"`` and ``"sample"`` only). Returns a :class:`PickOneOutput`.
        """
        check_choice("pooling", pooling, get_args(PickOnePooling))
        scores = self.scores(query, items)[:, None, :]  # (N, n) -> (N, 1, n)
        values = self.embedding(labels)  # (N, n) -> (N, n, h)
        log_prob = None
        if pooling == "soft":
            weights = torch.softmax(scores, dim=-1)
        elif pooling == "gumbel":
            sampled = gumbel_softmax_attention(
                scores, values, tau=tau, hard=True, generator=generator
            )
            weights = cast(Tensor, sampled.weights)  # one-hot, straight-through gradient
        elif pooling == "sample":
            sample = sample_attention(scores, values, generator=generator)
            weights = F.one_hot(sample.index, scores.shape[-1]).to(scores.dtype)
            log_prob = sample.log_prob[:, 0]  # (N, 1) -> (N,)
        else:
            weights = F.one_hot(scores.argmax(dim=-1), scores.shape[-1]).to(scores.dtype)
        pooled = weights @ values  # (N, 1, n) @ (N, n, h) -> (N, 1, h)
        return PickOneOutput(self.classifier(pooled[:, 0]), weights[:, 0], log_prob)


def pick_one_loss(
    model: PickOneModel,
    batch: PickOneData,
    method: PickOneMethod,
    *,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The training loss of one batch for ``method``: cross-entropy, plus REINFORCE's terms.

    .. math::

        \mathcal L_{\text{soft}} = \ell(\operatorname{softmax}(\mathbf s)), \qquad
        \mathcal L_{\text{gumbel}} = \ell(\operatorname{ST}(\mathbf s + \mathbf g)), \qquad
        \mathcal L_{\text{reinforce}} = \ell(\mathbf e_{c_{j^\star}})
        - \operatorname{sg}(R - b) \log \pi(j^\star) + (\operatorname{sg}(R) - b)^2

    :math:`\ell` is the mean cross-entropy of the classifier given the pooled embeddings,
    :math:`\operatorname{ST}` the straight-through one-hot Gumbel sample
    (:func:`~attention_book.variants.gumbel_softmax_attention`), :math:`j^\star` an item
    drawn from :math:`\operatorname{softmax}(\mathbf s)`
    (:func:`~attention_book.variants.sample_attention`), the reward :math:`R = -\ell` per
    example and :math:`b` the model's learned baseline
    (:func:`~attention_book.variants.reinforce_loss`). With REINFORCE the scorer learns from
    the second term only: the sampled item carries no gradient.

    Args:
        model: The model.
        batch: ``B`` examples.
        method: ``"soft"``, ``"gumbel"`` or ``"reinforce"``.
        tau: Gumbel-softmax temperature (``"gumbel"`` only).
        generator: Source of the noise and the samples.

    Returns:
        The 0-dim loss.

    Raises:
        ValueError: If ``method`` is unknown.

    Example:
        >>> data = pick_one_data(8)
        >>> loss = pick_one_loss(PickOneModel(16, 10), data, "reinforce")
        >>> loss.shape
        torch.Size([])
    """
    check_choice("method", method, get_args(PickOneMethod))
    pooling: PickOnePooling = "sample" if method == "reinforce" else method
    out = model(
        batch.query,
        batch.items,
        batch.labels,
        pooling=pooling,
        tau=tau,
        generator=generator,
    )
    cross_entropy = F.cross_entropy(out.logits, batch.answer, reduction="none")  # (B,)
    loss = cross_entropy.mean()
    if out.log_prob is not None:  # REINFORCE: reward = -cross-entropy, learned baseline
        baseline = model.baseline(batch.query)[:, 0]  # (B, D) -> (B, 1) -> (B,)
        loss = loss + reinforce_loss(out.log_prob, -cross_entropy.detach(), baseline)
    return loss
