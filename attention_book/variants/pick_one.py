"""A toy task where a query must pick one of ``n`` items, trained three ways.

Each example holds ``n`` random items, each with a class label, and a query that is a
rotated, noisy copy of one of them. The answer is the label of that item. A model scores
the items against the query, pools the items' label embeddings and classifies the result,
so it is right only when its attention lands on the right item. :func:`train_pick_one`
trains the same model with soft attention, with straight-through Gumbel-softmax attention,
or with sampled hard attention and REINFORCE, and returns what the chapter compares:
accuracy, how noisy the scorer's gradient is, and the time it took.
"""

from __future__ import annotations

import math
import time
from typing import Literal, NamedTuple, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_choice, check_int, check_positive
from attention_book.variants.hard import gumbel_softmax_attention, reinforce_loss, sample_attention

__all__ = [
    "PickOneData",
    "PickOneMethod",
    "PickOneModel",
    "PickOneOutput",
    "PickOnePooling",
    "PickOneResult",
    "pick_one_data",
    "pick_one_loss",
    "train_pick_one",
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
        batch.query, batch.items, batch.labels, pooling=pooling, tau=tau, generator=generator
    )
    cross_entropy = F.cross_entropy(out.logits, batch.answer, reduction="none")  # (B,)
    loss = cross_entropy.mean()
    if out.log_prob is not None:  # REINFORCE: reward = -cross-entropy, learned baseline
        baseline = model.baseline(batch.query)[:, 0]  # (B, D) -> (B, 1) -> (B,)
        loss = loss + reinforce_loss(out.log_prob, -cross_entropy.detach(), baseline)
    return loss


class PickOneResult(NamedTuple):
    r"""What :func:`train_pick_one` measured.

    .. math::

        \text{accuracy} = \frac{1}{N_{\text{test}}} \sum_m [\hat y_m = y_m], \qquad
        \hat y_m = \arg\max_c \text{logits}_{m,c}

    Attributes:
        model: The trained :class:`PickOneModel`.
        accuracy: Test accuracy when each query looks at its best-scoring item only.
        soft_accuracy: Test accuracy with softmax pooling.
        pick_accuracy: How often the best-scoring test item is the target.
        grad_variance: The variance of the scorer's gradient across mini-batches (see
            :func:`train_pick_one`).
        seconds: Wall time of the training steps (evaluations excluded), on this machine.
        losses: The mean training loss of each epoch (for REINFORCE including the
            policy and baseline terms).
        accuracies: ``accuracy`` after each epoch.

    Example:
        >>> result = train_pick_one("soft", pick_one_data(64), epochs=1)
        >>> 0.0 <= result.accuracy <= 1.0, len(result.losses)
        (True, 1)
    """

    model: PickOneModel
    accuracy: float
    soft_accuracy: float
    pick_accuracy: float
    grad_variance: float
    seconds: float
    losses: list[float]
    accuracies: list[float]


def _check_data(data: object) -> PickOneData:
    if not isinstance(data, PickOneData):
        msg = f"data must be a PickOneData; got {type(data).__name__}"
        raise TypeError(msg)
    return data


def _subset(data: PickOneData, rows: Tensor) -> PickOneData:
    return PickOneData(*(field[rows] for field in data))


def _accuracy(model: PickOneModel, data: PickOneData, pooling: PickOnePooling) -> float:
    with torch.no_grad():
        logits = model(data.query, data.items, data.labels, pooling=pooling).logits
    return int((logits.argmax(dim=-1) == data.answer).sum()) / len(data.answer)


def _scorer_grad(model: PickOneModel) -> Tensor:
    """The gradient of the loss with respect to ``W_q`` and ``W_k``, flattened into one vector."""
    grads = [p.grad for p in (model.W_q.weight, model.W_k.weight)]
    return torch.cat([torch.zeros(0) if g is None else g.flatten() for g in grads])


def train_pick_one(
    method: PickOneMethod,
    data: PickOneData,
    *,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 64,
    tau: float = 1.0,
    hidden_size: int = 32,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> PickOneResult:
    r"""Train a :class:`PickOneModel` with soft, straight-through Gumbel or REINFORCE picking.

    .. math::

        \theta \leftarrow \operatorname{Adam}\bigl(\theta, \nabla_\theta
        \mathcal L_{\text{method}}\bigr)

    with the loss of :func:`pick_one_loss`. The last ``test_fraction`` of the examples is
    held out. Every method is evaluated the same way: each test query looks at its
    best-scoring item only (``accuracy``), and also pools softly (``soft_accuracy``).

    ``grad_variance`` measures how noisy the scorer's gradient is: in each epoch the
    gradient of the loss with respect to :math:`W_q` and :math:`W_k` is recorded at every
    step, the variance of each coordinate across the steps is averaged over the
    coordinates (0 for an epoch of one step), and the result is averaged over the epochs.
    It contains the spread
    between mini-batches, which every method has, and the sampling noise of the estimator,
    which soft attention does not have.

    The shuffling, the Gumbel noise and the samples come from a local generator seeded with
    ``seed``; the model is initialised inside :func:`torch.random.fork_rng` seeded with
    ``seed``. A run is reproducible (except ``seconds``) and leaves the global random state
    alone; the three methods start from the same model.

    Args:
        method: ``"soft"``, ``"gumbel"`` or ``"reinforce"``.
        data: The examples, from :func:`pick_one_data`.
        epochs: Passes over the training examples.
        lr: Adam's learning rate.
        batch_size: Examples per step.
        tau: Gumbel-softmax temperature (``"gumbel"`` only).
        hidden_size: ``h`` of :class:`PickOneModel`.
        test_fraction: The share of the examples held out for testing.
        seed: Seed of the model, the shuffling and the noise.

    Returns:
        :class:`PickOneResult`.

    Raises:
        TypeError: If ``data`` is not a :class:`PickOneData` or a count is not an int.
        ValueError: If ``method`` is unknown, a count, ``lr`` or ``tau`` is not positive, or
            ``test_fraction`` leaves no training or no test example.

    Example:
        >>> result = train_pick_one("gumbel", pick_one_data(1000), epochs=5)
        >>> result.accuracy > 0.8
        True
    """
    check_choice("method", method, get_args(PickOneMethod))
    data = _check_data(data)
    for name, count in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("hidden_size", hidden_size),
    ):
        check_int(name, count, minimum=1)
    check_positive("lr", lr)
    check_positive("tau", tau)
    num_samples = data.query.shape[0]
    num_test = round(test_fraction * num_samples)
    if not 0 < num_test < num_samples:
        msg = (
            f"test_fraction must leave at least one training and one test example of "
            f"N = {num_samples}; got {test_fraction} ({num_test} test examples)"
        )
        raise ValueError(msg)
    train = _subset(data, torch.arange(num_samples - num_test))
    test = _subset(data, torch.arange(num_samples - num_test, num_samples))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        num_classes = int(data.labels.max()) + 1
        model = PickOneModel(data.query.shape[-1], num_classes, hidden_size=hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, accuracies, variances, seconds = [], [], [], 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        total, grads = 0.0, []
        order = torch.randperm(len(train.query), generator=generator)
        for rows in torch.split(order, batch_size):
            loss = pick_one_loss(model, _subset(train, rows), method, tau=tau, generator=generator)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            grads.append(_scorer_grad(model))
            optimizer.step()
            total += loss.item() * len(rows)
        seconds += time.perf_counter() - start
        losses.append(total / len(train.query))
        variances.append(float(torch.stack(grads).var(dim=0).mean()) if len(grads) > 1 else 0.0)
        accuracies.append(_accuracy(model, test, "argmax"))
    with torch.no_grad():
        picks = model.scores(test.query, test.items).argmax(dim=-1)
    return PickOneResult(
        model,
        accuracy=accuracies[-1],
        soft_accuracy=_accuracy(model, test, "soft"),
        pick_accuracy=int((picks == test.target).sum()) / len(test.target),
        grad_variance=sum(variances) / len(variances),
        seconds=seconds,
        losses=losses,
        accuracies=accuracies,
    )
