r"""Cross-modal attention: images cut into patches, captions that attend to them, CLIP's loss.

An image becomes a sequence the way a sentence is one: cut it into ``P`` square patches,
row by row, and map each flattened patch to ``E`` features (:class:`PatchEmbedding`, the
first layer of the Vision Transformer, Dosovitskiy et al. 2021). Then text and image meet in
two ways. *Cross-attention*: a query made from the caption scores every patch and pools them
(:class:`TextToPatchModel`); its weights say where the caption looked. *Contrastive
matching*: two towers map images and captions to unit vectors, and :func:`clip_loss` (CLIP,
Radford et al. 2021) pulls each image towards its own caption and away from the others',
with a learned temperature:

.. math::

    \text{logits}_{ij} = \min\bigl(e^{t}, 100\bigr)\,
    \frac{\mathbf x_i^\top \mathbf y_j}{\lVert\mathbf x_i\rVert\,\lVert\mathbf y_j\rVert}

Shapes: ``N`` batch, ``C`` image channels, ``H`` and ``W`` image height and width, ``p``
the patch size, ``P = (H / p)(W / p)`` patches, ``E`` features, ``T`` caption tokens.
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
    check_lengths,
    check_positive,
    check_same_dtype,
    check_token_ids,
    fmt_shape,
)
from attention_book.scoring import scaled_dot_product_attention

__all__ = [
    "ImageTower",
    "PatchEmbedding",
    "TextToPatchModel",
    "TextToPatchOutput",
    "TextTower",
    "clip_logits",
    "clip_loss",
    "patchify",
]


def _check_images(images: object, patch_size: int, channels: int | None = None) -> Tensor:
    checked = check_float("images", images)
    check_exact_ndim("images", checked, 4, "(N, C, H, W)")
    _, c, h, w = checked.shape
    if channels is not None and c != channels:
        msg = f"images must have C = in_channels = {channels} channels; got shape {fmt_shape(checked.shape)}"
        raise ValueError(msg)
    if h % patch_size or w % patch_size:
        msg = (
            f"images must have a height and width divisible by patch_size = {patch_size}; "
            f"got (H, W) = ({h}, {w})"
        )
        raise ValueError(msg)
    return checked


def patchify(images: Tensor, patch_size: int) -> Tensor:
    r"""Cut images into square patches, row-major, each flattened to ``C p p`` numbers.

    .. math::

        \mathbf x_{r G_w + c} = \operatorname{vec}\bigl(X_{:,\; rp : (r+1)p,\; cp : (c+1)p}\bigr),
        \qquad G_w = W / p

    Patch ``r G_w + c`` is the one in patch row ``r`` and patch column ``c``. Its numbers are
    ordered (channel, row, column), the order of the weight ``(E, C, p, p)`` of the
    ``nn.Conv2d(C, E, kernel_size=p, stride=p)`` that Vision Transformers use to embed
    patches.

    Args:
        images: ``(N, C, H, W)``, float.
        patch_size: ``p``; must divide ``H`` and ``W``.

    Returns:
        ``(N, P, C p p)`` with ``P = (H / p)(W / p)``.

    Raises:
        TypeError: If ``images`` is not a floating-point tensor or ``patch_size`` not an int.
        ValueError: If ``images`` is not 4-D, ``patch_size < 1`` or it does not divide
            ``H`` and ``W``.

    Example:
        >>> images = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> patchify(images, 2)  # four 2 x 2 patches: top left, top right, ...
        tensor([[[ 0.,  1.,  4.,  5.],
                 [ 2.,  3.,  6.,  7.],
                 [ 8.,  9., 12., 13.],
                 [10., 11., 14., 15.]]])
    """
    p = check_int("patch_size", patch_size, minimum=1)
    images = _check_images(images, p)
    n, c, h, w = images.shape
    # (N, C, H, W) -> (N, C, H/p, p, W/p, p): split rows and columns into (patch, pixel)
    blocks = images.reshape(n, c, h // p, p, w // p, p)
    # -> (N, H/p, W/p, C, p, p) -> (N, P, C p p): patches row-major, pixels (c, y, x)
    return blocks.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // p) * (w // p), c * p * p)


class PatchEmbedding(nn.Module):
    r"""Cut images into patches and map each one linearly to ``embed_dim`` features (ViT).

    .. math::

        \mathbf z_i = W \mathbf x_i + \mathbf b, \qquad i = 0, \dots, P - 1

    with :math:`\mathbf x_i` the flattened patch ``i`` of :func:`patchify` (row-major). The
    same map as ``nn.Conv2d(in_channels, embed_dim, kernel_size=p, stride=p)`` followed by
    ``flatten(2).transpose(1, 2)``, whose weight is ``proj.weight.view(E, C, p, p)``.

    Args:
        patch_size: ``p``, the side of a square patch.
        in_channels: ``C``, the channels of the images.
        embed_dim: ``E``, the features of each patch.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is smaller than 1.

    Example:
        >>> embed = PatchEmbedding(patch_size=8, in_channels=3, embed_dim=16)
        >>> embed(torch.rand(2, 3, 32, 24)).shape  # (N, P, E), P = 4 * 3
        torch.Size([2, 12, 16])
    """

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.embed_dim = check_int("embed_dim", embed_dim, minimum=1)
        self.proj = nn.Linear(in_channels * patch_size * patch_size, embed_dim)

    def forward(self, images: Tensor) -> Tensor:
        """Embed the patches of ``images (N, C, H, W)``: returns ``(N, P, E)``, row-major.

        Raises ``ValueError`` if ``C`` is not ``in_channels`` or ``patch_size`` does not
        divide ``H`` and ``W``.
        """
        _check_images(images, self.patch_size, self.in_channels)
        patches = patchify(images, self.patch_size)  # (N, C, H, W) -> (N, P, C p p)
        return self.proj(patches)  # type: ignore[no-any-return]  # (N, P, C p p) -> (N, P, E)

    def extra_repr(self) -> str:
        """Show the sizes in ``print(module)``."""
        return (
            f"patch_size={self.patch_size}, in_channels={self.in_channels}, "
            f"embed_dim={self.embed_dim}"
        )


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


class TextTower(nn.Module):
    r"""Encode a caption as one vector: the mean of its word embeddings, then an MLP.

    .. math::

        \mathbf y = W_2 \operatorname{GELU}\!\Bigl(W_1 \frac{1}{T_n}
        \sum_{t < T_n} \mathbf e_{w_t} + \mathbf b_1\Bigr) + \mathbf b_2

    A bag of words: the order is lost, which costs nothing for the captions of
    :func:`~attention_book.variants.shapes_data`, where every word has its own role (colour,
    shape, up or down, left or right).

    Args:
        vocab_size: Size of the vocabulary (id 0 is padding).
        embed_dim: ``E``, the features of the embeddings and of the output.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is smaller than 1.

    Example:
        >>> tower = TextTower(vocab_size=10, embed_dim=8)
        >>> tower(torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]]), torch.tensor([3, 2])).shape
        torch.Size([2, 8])
    """

    def __init__(self, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=1)
        check_int("embed_dim", embed_dim, minimum=1)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, captions: Tensor, caption_lens: Tensor) -> Tensor:
        """Encode ``captions (N, T)`` of lengths ``caption_lens (N,)``: returns ``(N, E)``."""
        captions = check_token_ids("captions", captions, self.embedding.num_embeddings, "(N, T)")
        lens = check_lengths("caption_lens", caption_lens, captions.shape[0], captions.shape[1])
        inside = torch.arange(captions.shape[1], device=captions.device) < lens[:, None]  # (N, T)
        words = self.embedding(captions) * inside[..., None]  # (N, T, E), padding zeroed
        mean = words.sum(dim=1) / lens[:, None]  # (N, T, E) -> (N, E)
        return self.mlp(mean)  # type: ignore[no-any-return]


class ImageTower(nn.Module):
    r"""Encode an image as patch features (patches, positions, an MLP) or their mean.

    .. math::

        \mathbf z_i = W_2 \operatorname{GELU}\bigl(W_1 \mathbf x_i + \mathbf b_1
        + \mathbf p_i\bigr) + \mathbf b_2, \qquad
        \mathbf x_{\text{image}} = \frac{1}{P} \sum_{i=0}^{P-1} \mathbf z_i

    :math:`W_1 \mathbf x_i + \mathbf b_1` is the :class:`PatchEmbedding` of patch ``i`` and
    :math:`\mathbf p_i` its learned position embedding, so a patch feature knows what is in
    the patch *and* where the patch is.

    Args:
        image_size: ``H = W``, the side of the square images.
        patch_size: ``p``; must divide ``image_size``.
        embed_dim: ``E``, the features of each patch.
        in_channels: ``C``.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is smaller than 1 or ``patch_size`` does not divide
            ``image_size``.

    Example:
        >>> tower = ImageTower(image_size=32, patch_size=8, embed_dim=16)
        >>> images = torch.rand(2, 3, 32, 32)
        >>> tower.patch_features(images).shape, tower(images).shape
        (torch.Size([2, 16, 16]), torch.Size([2, 16]))
    """

    def __init__(
        self, image_size: int, patch_size: int, embed_dim: int, *, in_channels: int = 3
    ) -> None:
        super().__init__()
        check_int("image_size", image_size, minimum=1)
        check_int("patch_size", patch_size, minimum=1)
        if image_size % patch_size:
            msg = f"image_size must be divisible by patch_size = {patch_size}; got {image_size}"
            raise ValueError(msg)
        self.image_size = image_size
        self.patches = PatchEmbedding(patch_size, in_channels, embed_dim)
        num_patches = (image_size // patch_size) ** 2
        # (P, E), about as large as the embedding of a patch with a shape in it
        self.position = nn.Parameter(0.2 * torch.randn(num_patches, embed_dim))
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(embed_dim, embed_dim))

    def patch_features(self, images: Tensor) -> Tensor:
        """The features ``(N, P, E)`` of the patches of ``images (N, C, H, W)``, row-major."""
        images = check_float("images", images)
        size = (self.image_size, self.image_size)
        if tuple(images.shape[-2:]) != size:
            msg = f"images must be (N, C, {size[0]}, {size[1]}); got {fmt_shape(images.shape)}"
            raise ValueError(msg)
        return self.mlp(self.patches(images) + self.position)  # type: ignore[no-any-return]

    def forward(self, images: Tensor) -> Tensor:
        """The mean patch feature ``(N, E)`` of ``images (N, C, H, W)``."""
        return self.patch_features(images).mean(dim=1)  # (N, P, E) -> (N, E)


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
            msg = (
                f"captions must have N = {patches.shape[0]} rows like images; got {query.shape[0]}"
            )
            raise ValueError(msg)
        # (N, 1, E) x (N, P, E) x (N, P, E) -> (N, 1, E), (N, 1, P)
        pooled, weights = scaled_dot_product_attention(query, patches, patches)
        logits = self.classifier(pooled[:, 0])  # (N, E) -> (N, K)
        return TextToPatchOutput(logits, cast(Tensor, weights)[:, 0])
