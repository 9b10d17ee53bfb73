"""Parametric attention pooling: Nadaraya-Watson regression with one learnable width."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_float,
    check_int,
    check_same_dtype,
    check_tensor,
    fmt_shape,
)
from attention_book.output import AttentionOutput

__all__ = ["NadarayaWatsonRegression", "leave_one_out", "train_nadaraya_watson"]


def leave_one_out(x: Tensor) -> Tensor:
    r"""Row ``i`` holds every sample except ``x[i]``: the keys (or values) a sample may see.

    .. math::

        \text{out}_{i} = (x_0, \dots, x_{i-1}, x_{i+1}, \dots, x_{n-1})

    Args:
        x: ``(n,)``.

    Returns:
        ``(n, n - 1)``.

    Raises:
        TypeError: If ``x`` is not a tensor.
        ValueError: If ``x`` is not 1-D.

    Example:
        >>> leave_one_out(torch.tensor([1.0, 2.0, 3.0]))
        tensor([[2., 3.],
                [1., 3.],
                [1., 2.]])
    """
    x = check_tensor("x", x)
    if x.ndim != 1:
        msg = f"x must be 1-D (n,); got shape {fmt_shape(x.shape)}"
        raise ValueError(msg)
    n = x.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=x.device)  # (n, n), False on the diagonal
    return x.expand(n, n)[keep].reshape(n, n - 1)  # (n,) -> (n, n) -> (n * (n - 1),) -> (n, n - 1)


class NadarayaWatsonRegression(nn.Module):
    r"""Nadaraya-Watson regression with a Gaussian kernel whose width is learned.

    .. math::

        f(q) = \sum_{i} \operatorname{softmax}_i
        \left(-\tfrac12 \big((q - k_i) w\big)^2\right) v_i

    The single learnable parameter ``w`` (shape ``(1,)``) is the inverse bandwidth: a larger
    ``w`` gives a narrower kernel. It starts at ``init`` (1.0 by default, no randomness).

    Args:
        init: Initial value of ``w``.

    Example:
        >>> model = NadarayaWatsonRegression()
        >>> query = torch.tensor([0.0, 2.0])
        >>> key, value = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])
        >>> output, weights = model(query, key, value)
        >>> weights.detach()
        tensor([[0.8808, 0.1192],
                [0.1192, 0.8808]])
    """

    def __init__(self, *, init: float = 1.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> AttentionOutput:
        """Pool ``value`` for each query.

        Args:
            query: ``(L,)``.
            key: ``(L, S)`` (each query its own keys, as in leave-one-out training) or
                ``(S,)`` (the same keys for every query).
            value: Same shape as ``key``.

        Returns:
            :class:`AttentionOutput` with ``output (L,)`` and ``weights (L, S)``.

        Raises:
            TypeError: If a tensor is not floating point or the dtypes differ.
            ValueError: If a shape does not fit.
        """
        query, key, value = (
            check_float(n, t) for n, t in (("query", query), ("key", key), ("value", value))
        )
        check_same_dtype("key", key, "query", query)
        check_same_dtype("value", value, "query", query)
        if query.ndim != 1:
            msg = f"query must be 1-D (L,); got shape {fmt_shape(query.shape)}"
            raise ValueError(msg)
        num_queries = query.shape[0]
        if key.ndim not in (1, 2) or (key.ndim == 2 and key.shape[0] != num_queries):
            msg = f"key must have shape (S,) or (L, S) = ({num_queries}, S); got {fmt_shape(key.shape)}"
            raise ValueError(msg)
        if value.shape != key.shape:
            msg = f"value must have the shape of key {fmt_shape(key.shape)}; got {fmt_shape(value.shape)}"
            raise ValueError(msg)
        scores = -(((query[:, None] - key) * self.w) ** 2) / 2  # (L, 1) - (L, S) or (S,) -> (L, S)
        weights = torch.softmax(scores, dim=-1)  # (L, S)
        output = (weights * value).sum(dim=-1)  # (L, S) * (L, S) or (S,) -> (L,)
        return AttentionOutput(output, weights)


def train_nadaraya_watson(
    model: NadarayaWatsonRegression,
    x_train: Tensor,
    y_train: Tensor,
    *,
    epochs: int = 5,
    lr: float = 0.5,
    reduction: Literal["mean", "sum"] = "mean",
) -> list[float]:
    r"""Fit ``model.w`` by full-batch SGD on the squared loss, each sample seeing the others.

    .. math::

        \ell(w) = \frac{1}{n} \sum_{i=1}^{n} \big(f_w(x_i; \text{others}) - y_i\big)^2

    Each training input queries the other ``n - 1`` pairs (:func:`leave_one_out`), so it
    cannot simply look up its own target. Deterministic: the whole batch, every epoch.

    Args:
        model: The model to train, in place.
        x_train: ``(n,)`` inputs.
        y_train: ``(n,)`` targets.
        epochs: Number of SGD steps.
        lr: Learning rate.
        reduction: ``"mean"`` (the formula above) or ``"sum"`` of the squared errors.

    Returns:
        The loss of each epoch (``epochs`` floats), computed before that epoch's step.

    Raises:
        TypeError: If a tensor is not floating point.
        ValueError: If the shapes differ, ``n < 2`` or ``epochs < 0``.

    Example:
        >>> x = torch.linspace(0, 5, 20)
        >>> model = NadarayaWatsonRegression()
        >>> losses = train_nadaraya_watson(model, x, torch.sin(x))
        >>> len(losses), losses[-1] < losses[0]
        (5, True)
    """
    x_train, y_train = check_float("x_train", x_train), check_float("y_train", y_train)
    check_int("epochs", epochs, minimum=0)
    if x_train.ndim != 1 or x_train.shape != y_train.shape or x_train.shape[0] < 2:
        msg = (
            "x_train and y_train must have the same shape (n,) with n >= 2; got "
            f"{fmt_shape(x_train.shape)} and {fmt_shape(y_train.shape)}"
        )
        raise ValueError(msg)
    if reduction not in ("mean", "sum"):
        msg = f"reduction must be 'mean' or 'sum'; got {reduction!r}"
        raise ValueError(msg)
    keys, values = leave_one_out(x_train), leave_one_out(y_train)  # (n, n - 1) each
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        optimizer.zero_grad()
        prediction = model(x_train, keys, values).output  # (n,)
        squared = (prediction - y_train) ** 2
        loss = squared.mean() if reduction == "mean" else squared.sum()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history
