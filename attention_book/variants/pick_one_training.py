"""Training the pick-one task three ways, and measuring what chapter 10 compares.

:func:`train_pick_one` trains the :class:`~attention_book.variants.PickOneModel` of
:mod:`attention_book.variants.pick_one` with soft attention, with straight-through
Gumbel-softmax attention, or with sampled hard attention and REINFORCE, and returns a
:class:`PickOneResult`: accuracy, how noisy the scorer's gradient is, and the time it took.
"""

from __future__ import annotations

import time
from typing import NamedTuple, get_args

import torch
from torch import Tensor

from attention_book._checks import check_choice, check_int, check_positive, check_test_split
from attention_book.variants.pick_one import (
    PickOneData,
    PickOneMethod,
    PickOneModel,
    PickOnePooling,
    pick_one_data,  # noqa: F401  (the docstring examples, run as tests, use it)
    pick_one_loss,
)

__all__ = ["PickOneResult", "train_pick_one"]


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
    num_test = check_test_split(test_fraction, num_samples)
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
            batch = _subset(train, rows)
            loss = pick_one_loss(model, batch, method, tau=tau, generator=generator)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            grads.append(_scorer_grad(model))
            optimizer.step()
            total += loss.item() * len(rows)
        seconds += time.perf_counter() - start
        losses.append(total / len(train.query))
        spread = float(torch.stack(grads).var(dim=0).mean()) if len(grads) > 1 else 0.0
        variances.append(spread)
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
