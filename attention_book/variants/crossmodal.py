r"""Cross-modal attention: captions that attend to image patches, and CLIP's loss.

Text and image meet in two ways. *Cross-attention*: a query made from the caption scores
every patch of the image and pools them (:class:`TextToPatchModel`); its weights say where
the caption looked. *Contrastive matching*: two towers map images and captions to unit
vectors, and :func:`clip_loss` (CLIP, Radford et al. 2021) pulls each image towards its own
caption and away from the others', with a learned temperature:

.. math::

    \text{logits}_{ij} = \min\bigl(e^{t}, 100\bigr)\,
    \frac{\mathbf x_i^\top \mathbf y_j}{\lVert\mathbf x_i\rVert\,\lVert\mathbf y_j\rVert}

The patches and the towers are in :mod:`attention_book.variants.towers`.

Shapes: ``N`` batch, ``C`` image channels, ``H`` and ``W`` image height and width, ``P``
patches, ``E`` features, ``T`` caption tokens.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import (
    check_exact_ndim,
    check_float,
    check_int,
    check_positive,
    check_same_dtype,
    fmt_shape,
)
from attention_book.scoring import scaled_dot_product_attention
from attention_book.variants.towers import ImageTower, TextTower

__all__ = ["TextToPatchModel", "TextToPatchOutput", "clip_logits", "clip_loss"]


def clip_logits(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    *,
    max_scale: float | None = 100.0,
) -> Tensor:
    r"""Cosine similarities of every image with every text, times the capped scale :math:`e^t`.

    .. math::

        \text{logits}_{ij} = \min\bigl(e^{t}, s_{\max}\bigr)\,
        \hat{\mathbf x}_i^\top \hat{\mathbf y}_j, \qquad
        \hat{\mathbf x} = \mathbf x / \lVert \mathbf x \rVert

    Args:
        image_features: ``(N, D)``.
        text_features: ``(M, D)``.
        logit_scale: 0-dim, :math:`t`, the *log* of the scale (the inverse temperature).
        max_scale: :math:`s_{\max}`, the cap on :math:`e^t` (CLIP's 100); ``None`` for no cap.

    Returns:
        ``(N, M)``: row ``i`` scores image ``i`` against every text.

    Raises:
        TypeError: If an input is not a floating-point tensor or the dtypes differ.
        ValueError: If the features are not 2-D with the same ``D``, ``logit_scale`` is not
            0-dim, or ``max_scale`` is not positive.

    Example:
        >>> import math
        >>> image, text = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> clip_logits(image, text, torch.tensor(math.log(1 / 0.07)))  # cosine / 0.07
        tensor([[14.2857,  0.0000]])
        >>> clip_logits(image, text, torch.tensor(10.0))  # e^10 is capped at 100
        tensor([[100.,   0.]])
    """
    image = check_float("image_features", image_features)
    text = check_float("text_features", text_features)
    scale = check_float("logit_scale", logit_scale)
    check_same_dtype("text_features", text, "image_features", image)
    check_exact_ndim("image_features", image, 2, "(N, D)")
    check_exact_ndim("text_features", text, 2, "(M, D)")
    if text.shape[1] != image.shape[1]:
        msg = (
            f"text_features must have D = {image.shape[1]} features like image_features; "
            f"got shape {fmt_shape(text.shape)}"
        )
        raise ValueError(msg)
    if scale.ndim != 0:
        msg = f"logit_scale must be a 0-dim tensor; got shape {fmt_shape(scale.shape)}"
        raise ValueError(msg)
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    factor = scale.exp()
    if max_scale is not None:
        factor = factor.clamp(max=check_positive("max_scale", max_scale))
    return factor * (image @ text.T)  # (N, D) @ (D, M) -> (N, M)


def clip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    *,
    max_scale: float | None = 100.0,
) -> Tensor:
    r"""CLIP's symmetric contrastive loss: image ``i`` belongs with text ``i``, not the others.

    .. math::

        \mathcal L = \frac{1}{2N} \sum_{i=1}^{N} \left(
        -\log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ij}}}
        -\log \frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ji}}} \right)

    with the logits :math:`\ell_{ij}` of :func:`clip_logits`: cosine similarities times
    :math:`\min(e^t, 100)`. The first term is the image-to-text cross-entropy (each row a
    classification over the ``N`` texts), the second the text-to-image one (each column).

    Why :math:`e^t` and why the cap (Radford et al. 2021 learn :math:`t`, start it at
    :math:`\log(1/0.07)`, so the scale starts at 14.3, and cap the scale at 100). Cosines lie
    in :math:`[-1, 1]`, so without a scale the softmax over ``N`` texts could never be
    confident; the scale is the inverse of a temperature. Two bugs are common:

    - *The forgotten* ``exp``: multiplying by :math:`t` itself. The scale then starts at
      2.66 instead of 14.3 (the logits are five times too soft), the optimiser changes it
      by steps of a fixed size instead of a fixed ratio, and nothing stops it from going
      through 0, where the loss starts to reward *dissimilar* pairs.
    - *The missing cap*: once the training pairs are told apart, the loss keeps falling
      by making the logits larger instead of the features better, so the gradient pushes
      :math:`t` up for as long as training lasts; the softmax saturates and in half
      precision (largest value 65504) the logits overflow. Here the scale is clamped in the forward pass: past :math:`\log 100` the
      parameter gets no gradient from this loss and the scale stays 100. (open_clip
      clamps the parameter in place after each step instead; both keep the scale at 100.)

    Args:
        image_features: ``(N, D)``, one row per image (not normalised: this function does it).
        text_features: ``(N, D)``, row ``i`` the text that belongs to image ``i``.
        logit_scale: 0-dim, :math:`t`, the log of the scale; usually an ``nn.Parameter``.
        max_scale: The cap on :math:`e^t`; ``None`` removes it (to show what goes wrong).

    Returns:
        The 0-dim mean loss.

    Raises:
        TypeError: If an input is not a floating-point tensor or the dtypes differ.
        ValueError: If the features do not have the same shape ``(N, D)``, ``logit_scale``
            is not 0-dim, or ``max_scale`` is not positive.

    Example:
        >>> import math
        >>> features = torch.eye(4)  # four perfectly separated pairs
        >>> clip_loss(features, features, torch.tensor(0.0))  # scale 1: far from confident
        tensor(0.7437)
        >>> clip_loss(features, features, torch.tensor(math.log(5)))  # scale 5
        tensor(0.0200)
    """
    image = check_float("image_features", image_features)
    text = check_float("text_features", text_features)
    if text.shape != image.shape:
        msg = (
            f"text_features must have the shape of image_features (N, D) = "
            f"{fmt_shape(image.shape)}; got {fmt_shape(text.shape)}"
        )
        raise ValueError(msg)
    if image.ndim > 0 and image.shape[0] == 0:
        msg = f"image_features must have at least one row (N >= 1); got {fmt_shape(image.shape)}"
        raise ValueError(msg)
    logits = clip_logits(image, text, logit_scale, max_scale=max_scale)  # (N, N)
    targets = torch.arange(image.shape[0], device=image.device)  # pair i sits on the diagonal
    image_to_text = F.cross_entropy(logits, targets)  # each row: which text?
    text_to_image = F.cross_entropy(logits.T, targets)  # each column: which image?
    return (image_to_text + text_to_image) / 2


class TextToPatchOutput(NamedTuple):
    r"""What :class:`TextToPatchModel` computes for a batch.

    .. math::

        \text{logits} = W_o \textstyle\sum_i \alpha_i \mathbf z_i + \mathbf b_o

    Attributes:
        logits: ``(N, K)``, the scores of the answers.
        weights: ``(N, P)``, the caption's attention over the patches (rows sum to 1).

    Example:
        >>> output = TextToPatchOutput(torch.zeros(1, 2), torch.full((1, 4), 0.25))
        >>> output.weights.argmax(dim=-1)  # the most attended patch
        tensor([0])
    """

    logits: Tensor
    weights: Tensor


class TextToPatchModel(nn.Module):
    r"""The caption attends to the image's patches; the pooled patch answers a question.

    .. math::

        \boldsymbol\alpha = \operatorname{softmax}\!\Bigl(
        \frac{\mathbf q^\top [\mathbf z_0, \dots, \mathbf z_{P-1}]}{\sqrt E}\Bigr), \qquad
        \text{logits} = W_o \sum_i \alpha_i \mathbf z_i + \mathbf b_o

    Cross-attention between two modalities: the query :math:`\mathbf q` is the caption's
    :class:`TextTower` vector, the keys and values are the image's patch features
    :math:`\mathbf z_i` (:meth:`ImageTower.patch_features`), and one
    :func:`~attention_book.scaled_dot_product_attention` pools them. The classifier sees
    only the pooled patch, so it can answer a question about the named shape (how bright
    it is, in :func:`~attention_book.variants.train_text_to_patch`) only if the attention
    found that shape; nothing tells the attention where to look.

    Args:
        vocab_size: Size of the caption vocabulary.
        image_size: ``H = W`` of the images.
        patch_size: ``p``; must divide ``image_size``.
        embed_dim: ``E``, the features of the query and of the patches.
        num_classes: ``K``, the number of answers.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is too small or ``patch_size`` does not divide ``image_size``.

    Example:
        >>> model = TextToPatchModel(vocab_size=15, image_size=32, patch_size=8)
        >>> out = model(torch.rand(2, 3, 32, 32), torch.tensor([[3, 7, 2], [4, 8, 2]]),
        ...             torch.tensor([3, 3]))
        >>> out.logits.shape, out.weights.shape  # weights: one row over the 16 patches
        (torch.Size([2, 2]), torch.Size([2, 16]))
        >>> torch.allclose(out.weights.sum(dim=-1), torch.ones(2))
        True
    """

    def __init__(
        self,
        vocab_size: int,
        image_size: int,
        patch_size: int,
        *,
        embed_dim: int = 32,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        self.text = TextTower(vocab_size, embed_dim)
        self.image = ImageTower(image_size, patch_size, embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, images: Tensor, captions: Tensor, caption_lens: Tensor) -> TextToPatchOutput:
        """Answer for ``images (N, C, H, W)`` and ``captions (N, T)`` of ``caption_lens (N,)``.

        Returns a :class:`TextToPatchOutput` with ``logits (N, K)`` and ``weights (N, P)``.
        """
        query = self.text(captions, caption_lens)[:, None, :]  # (N, E) -> (N, 1, E)
        patches = self.image.patch_features(images)  # (N, C, H, W) -> (N, P, E)
        if patches.shape[0] != query.shape[0]:
            rows = patches.shape[0]
            msg = f"captions must have N = {rows} rows like images; got {query.shape[0]}"
            raise ValueError(msg)
        # (N, 1, E) x (N, P, E) x (N, P, E) -> (N, 1, E), (N, 1, P)
        pooled, weights = scaled_dot_product_attention(query, patches, patches)
        logits = self.classifier(pooled[:, 0])  # (N, E) -> (N, K)
        return TextToPatchOutput(logits, cast(Tensor, weights)[:, 0])
