r"""The two experiments of chapter 15 on the shapes world: where a caption looks, and CLIP.

:func:`train_text_to_patch` trains a :class:`~attention_book.variants.TextToPatchModel` to
answer a question the caption does not answer (is the named shape bright or dim?) and
scores how often its attention lands on the named shape. :func:`train_clip` trains an image
tower and a text tower with :func:`~attention_book.variants.clip_loss`, records the learned
temperature at every step and scores retrieval (:func:`retrieval_accuracy`) on held-out
pairs. Both take the data of :func:`~attention_book.variants.shapes_data`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import (
    check_exact_ndim,
    check_float,
    check_int,
    check_positive,
    check_tensor,
    check_test_split,
    fmt_shape,
)
from attention_book.variants.crossmodal import TextToPatchModel, clip_logits, clip_loss
from attention_book.variants.shapes import (
    ShapesData,
    brightness_labels,
    check_grid,
    check_shapes_data,
)
from attention_book.variants.towers import ImageTower, TextTower

__all__ = [
    "ClipResult",
    "TextToPatchResult",
    "retrieval_accuracy",
    "train_clip",
    "train_text_to_patch",
]


def _split(data: ShapesData, test_fraction: float) -> tuple[ShapesData, ShapesData]:
    num_samples = data.images.shape[0]
    num_test = check_test_split(test_fraction, num_samples)

    def part(rows: slice) -> ShapesData:
        return ShapesData(
            data.images[rows],
            data.captions[rows],
            data.caption_lens[rows],
            data.vocab,
            data.target_patch[rows],
        )

    return part(slice(0, num_samples - num_test)), part(slice(num_samples - num_test, None))


class TextToPatchResult(NamedTuple):
    r"""What :func:`train_text_to_patch` measured on the held-out images.

    .. math::

        \text{attention accuracy} = \frac{1}{N_{\text{test}}} \sum_n
        \Bigl[\arg\max_i \alpha_{n,i} = \text{target\_patch}_n\Bigr]

    Attributes:
        model: The trained :class:`~attention_book.variants.TextToPatchModel`.
        attention_accuracy: How often the most attended patch is the named shape's cell.
        answer_accuracy: How often the brightness is predicted right (chance: 1/2).
        losses: The mean training loss of each epoch.
        attention_accuracies: ``attention_accuracy`` after each epoch.
        seconds: Wall time of the training steps, on this machine.

    Example:
        >>> from attention_book.variants import shapes_data
        >>> result = train_text_to_patch(shapes_data(200), epochs=1)
        >>> 0.0 <= result.attention_accuracy <= 1.0, len(result.losses)
        (True, 1)
    """

    model: TextToPatchModel
    attention_accuracy: float
    answer_accuracy: float
    losses: list[float]
    attention_accuracies: list[float]
    seconds: float


def train_text_to_patch(
    data: ShapesData,
    *,
    grid: int = 4,
    epochs: int = 8,
    lr: float = 1e-2,
    batch_size: int = 64,
    embed_dim: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TextToPatchResult:
    r"""Train a caption to find its shape among the patches, by asking how bright it is.

    .. math::

        \min_\theta\; -\frac{1}{N} \sum_n \log p_\theta\bigl(y_n \mid X_n,
        \text{caption}_n\bigr), \qquad y_n = \text{bright}_n

    A :class:`~attention_book.variants.TextToPatchModel` with one patch per grid cell
    (``patch_size = S / G``) learns with Adam to predict :func:`brightness_labels`. The loss
    never mentions where the shape is; the attention learns to find it because the pooled
    patch answers the question only when it is the named shape's. The last
    ``test_fraction`` of the images is held out and scores the attention.

    The model is initialised inside :func:`torch.random.fork_rng` seeded with ``seed`` and
    the batches are shuffled by a local generator: a run is reproducible (except
    ``seconds``) and leaves the global random state alone.

    Args:
        data: From :func:`shapes_data`.
        grid: ``G``, the grid the data was drawn with.
        epochs: Passes over the training images.
        lr: Adam's learning rate.
        batch_size: Images per step.
        embed_dim: ``E`` of the model.
        test_fraction: The share of the images held out.
        seed: Seed of the model and of the shuffling.

    Returns:
        :class:`TextToPatchResult`.

    Raises:
        TypeError: If ``data`` is not a :class:`ShapesData` or a count is not an int.
        ValueError: If a count or ``lr`` is not positive, ``grid`` cannot be the data's
            grid, or ``test_fraction`` leaves no training or no test image.

    Example:
        >>> from attention_book.variants import shapes_data
        >>> result = train_text_to_patch(shapes_data(2000), epochs=4)
        >>> result.attention_accuracy > 0.5
        True
    """
    data = check_shapes_data(data)
    cell = check_grid(data, grid)
    for name, count in (("epochs", epochs), ("batch_size", batch_size), ("embed_dim", embed_dim)):
        check_int(name, count, minimum=1)
    check_positive("lr", lr)
    train, test = _split(data, test_fraction)
    train_labels = brightness_labels(train, grid=grid)
    test_labels = brightness_labels(test, grid=grid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TextToPatchModel(
            len(data.vocab), int(data.images.shape[-1]), cell, embed_dim=embed_dim
        )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, accuracies, seconds = [], [], 0.0
    attention_accuracy, answer_accuracy = 0.0, 0.0
    for _ in range(epochs):
        start, total = time.perf_counter(), 0.0
        model.train()
        order = torch.randperm(len(train_labels), generator=generator)
        for rows in torch.split(order, batch_size):
            out = model(train.images[rows], train.captions[rows], train.caption_lens[rows])
            loss = F.cross_entropy(out.logits, train_labels[rows])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
            total += loss.item() * len(rows)
        seconds += time.perf_counter() - start
        losses.append(total / len(train_labels))
        model.eval()
        with torch.no_grad():
            out = model(test.images, test.captions, test.caption_lens)
        looked_at = out.weights.argmax(dim=-1)  # (N,): the patch each caption weighs most
        attention_accuracy = (looked_at == test.target_patch).float().mean().item()
        answer_accuracy = (out.logits.argmax(dim=-1) == test_labels).float().mean().item()
        accuracies.append(attention_accuracy)
    return TextToPatchResult(
        model, attention_accuracy, answer_accuracy, losses, accuracies, seconds
    )


def retrieval_accuracy(logits: Tensor, captions: Tensor) -> tuple[float, float]:
    r"""Top-1 retrieval accuracy both ways, counting any item with the same caption as right.

    .. math::

        \text{image} \to \text{text} = \frac{1}{M} \sum_i
        \bigl[c_{\arg\max_j \ell_{ij}} = c_i\bigr], \qquad
        \text{text} \to \text{image} = \frac{1}{M} \sum_j
        \bigl[c_{\arg\max_i \ell_{ij}} = c_j\bigr]

    Text ``j`` is the caption :math:`c_j` of image ``j``. Captions repeat in
    :func:`shapes_data` (64 different ones), so a retrieved caption that reads the same as
    the right one counts as right.

    Args:
        logits: ``(M, M)``, image ``i`` against text ``j`` (from
            :func:`~attention_book.variants.clip_logits`).
        captions: ``(M, T)`` int64, the caption of each image.

    Returns:
        ``(image_to_text, text_to_image)`` accuracies in ``[0, 1]``.

    Raises:
        TypeError: If ``logits`` is not a floating-point tensor.
        ValueError: If the shapes are not ``(M, M)`` and ``(M, T)``.

    Example:
        >>> captions = torch.tensor([[3, 2], [4, 2], [3, 2]])  # images 0 and 2 share one
        >>> logits = torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 1, 0]])
        >>> retrieval_accuracy(logits, captions)  # image 2 retrieves text 1: wrong
        (0.6666666666666666, 1.0)
    """
    scores = check_float("logits", logits)
    check_exact_ndim("logits", scores, 2, "(M, M)")
    captions = check_tensor("captions", captions)
    m = scores.shape[0]
    if scores.shape[1] != m or captions.ndim != 2 or captions.shape[0] != m:
        msg = (
            f"logits must be square (M, M) and captions (M, T) with the same M; got "
            f"{fmt_shape(scores.shape)} and {fmt_shape(captions.shape)}"
        )
        raise ValueError(msg)
    same = (captions[:, None, :] == captions[None, :, :]).all(dim=-1)  # (M, M): c_i == c_j
    rows = torch.arange(m, device=scores.device)
    image_to_text = same[rows, scores.argmax(dim=1)].sum().item() / m
    text_to_image = same[scores.argmax(dim=0), rows].sum().item() / m
    return image_to_text, text_to_image


class ClipResult(NamedTuple):
    r"""What :func:`train_clip` recorded.

    .. math::

        \text{scale}_k = \min\bigl(e^{t_k}, 100\bigr)

    Attributes:
        image_tower: The trained :class:`~attention_book.variants.ImageTower`.
        text_tower: The trained :class:`~attention_book.variants.TextTower`.
        logit_scale: The trained 0-dim parameter :math:`t` (the log of the scale).
        losses: The training loss of every step.
        logit_scales: :math:`t` after every step (plot ``exp`` of it for the scale).
        image_to_text: Held-out top-1 image-to-text accuracy (:func:`retrieval_accuracy`).
        text_to_image: Held-out top-1 text-to-image accuracy.
        seconds: Wall time of the training steps, on this machine.

    Example:
        >>> from attention_book.variants import shapes_data
        >>> result = train_clip(shapes_data(300, distractors=0), steps=2)
        >>> len(result.losses) == len(result.logit_scales) == 2
        True
    """

    image_tower: ImageTower
    text_tower: TextTower
    logit_scale: Tensor
    losses: list[float]
    logit_scales: list[float]
    image_to_text: float
    text_to_image: float
    seconds: float


def train_clip(
    data: ShapesData,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    batch_size: int = 32,
    patch_size: int = 8,
    embed_dim: int = 32,
    logit_scale_init: float = math.log(1 / 0.07),
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor] = clip_loss,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ClipResult:
    r"""Train an image tower and a text tower contrastively, with a learned temperature.

    .. math::

        \min_{\theta, t}\; \mathcal L_{\text{CLIP}}\bigl(f_\theta(X), g_\theta(c), t\bigr),
        \qquad t_0 = \log(1 / 0.07)

    Each step draws ``batch_size`` *different* captions and one random training image of
    each, and applies ``loss_fn`` (by default :func:`~attention_book.variants.clip_loss`)
    to the :class:`~attention_book.variants.ImageTower` and
    :class:`~attention_book.variants.TextTower` features and the learned :math:`t`; Adam
    updates all three. Distinct captions keep the batch free of false negatives (two pairs
    whose captions read the same, which the loss would push apart): :func:`shapes_data`
    has only 64 captions, while CLIP's batches of 32,768 web captions rarely repeat one.
    Use images with ``distractors=0``, whose caption describes the whole image. Pass
    another ``loss_fn(image_features, text_features, logit_scale)`` to see a bug, e.g.
    ``functools.partial(clip_loss, max_scale=None)`` for the missing cap. The last
    ``test_fraction`` of the pairs is held out for :func:`retrieval_accuracy`.

    The towers are initialised inside :func:`torch.random.fork_rng` seeded with ``seed``
    and the batches are drawn by a local generator: a run is reproducible (except
    ``seconds``) and leaves the global random state alone.

    Args:
        data: From :func:`shapes_data`.
        steps: Training steps (one batch each).
        lr: Adam's learning rate (for :math:`t` too).
        batch_size: Pairs per step, at most the number of distinct training captions.
        patch_size: ``p`` of the :class:`~attention_book.variants.ImageTower`; must divide the image size.
        embed_dim: ``E`` of both towers.
        logit_scale_init: :math:`t_0`, CLIP's :math:`\log(1/0.07) \approx 2.66`.
        loss_fn: The contrastive loss.
        test_fraction: The share of the pairs held out.
        seed: Seed of the towers and of the shuffling.

    Returns:
        :class:`ClipResult`.

    Raises:
        TypeError: If ``data`` is not a :class:`ShapesData` or a count is not an int.
        ValueError: If a count or ``lr`` is not positive, ``patch_size`` does not divide the
            image size, ``batch_size`` exceeds the distinct training captions, or
            ``test_fraction`` leaves no training or no test pair.

    Example:
        >>> from attention_book.variants import shapes_data
        >>> result = train_clip(shapes_data(1000, distractors=0), steps=60)
        >>> result.logit_scales[-1] > result.logit_scales[0]  # the temperature falls
        True
    """
    data = check_shapes_data(data)
    for name, count in (("steps", steps), ("batch_size", batch_size), ("embed_dim", embed_dim)):
        check_int(name, count, minimum=1)
    check_positive("lr", lr)
    train, test = _split(data, test_fraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image_tower = ImageTower(int(data.images.shape[-1]), patch_size, embed_dim)
        text_tower = TextTower(len(data.vocab), embed_dim)
    logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
    parameters = [*image_tower.parameters(), *text_tower.parameters(), logit_scale]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    _, caption_id = torch.unique(train.captions, dim=0, return_inverse=True)  # (N_train,)
    grouped = torch.argsort(caption_id, stable=True)  # the pairs of each caption together
    counts = torch.bincount(caption_id)  # (C,) pairs per distinct caption
    starts = counts.cumsum(0) - counts
    if batch_size > len(counts):
        msg = (
            f"batch_size must be at most the number of distinct training captions = "
            f"{len(counts)}; got {batch_size}"
        )
        raise ValueError(msg)
    losses, scales = [], []
    start = time.perf_counter()
    for _ in range(steps):
        # batch_size distinct captions
        chosen = torch.randperm(len(counts), generator=generator)[:batch_size]
        offset = (torch.rand(batch_size, generator=generator) * counts[chosen]).long()
        rows = grouped[starts[chosen] + offset]  # one random pair of each chosen caption
        loss = loss_fn(
            image_tower(train.images[rows]),
            text_tower(train.captions[rows], train.caption_lens[rows]),
            logit_scale,
        )
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        losses.append(loss.item())
        scales.append(logit_scale.item())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = clip_logits(
            image_tower(test.images), text_tower(test.captions, test.caption_lens), logit_scale
        )
    image_to_text, text_to_image = retrieval_accuracy(logits, test.captions)
    return ClipResult(
        image_tower,
        text_tower,
        logit_scale.detach(),
        losses,
        scales,
        image_to_text,
        text_to_image,
        seconds,
    )
