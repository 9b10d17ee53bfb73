r"""Images and captions as vectors: patches, and the two towers of the cross-modal chapter.

An image becomes a sequence the way a sentence is one: cut it into ``P`` square patches,
row by row (:func:`patchify`), and map each flattened patch to ``E`` features
(:class:`PatchEmbedding`, the first layer of the Vision Transformer, Dosovitskiy et al.
2021). :class:`ImageTower` adds learned positions and a small MLP and pools the patches into
one vector; :class:`TextTower` pools a caption's word embeddings. How the two modalities then
meet, by cross-attention or by a contrastive loss, is in
:mod:`attention_book.variants.crossmodal`.

Shapes: ``N`` batch, ``C`` image channels, ``H`` and ``W`` image height and width, ``p``
the patch size, ``P = (H / p)(W / p)`` patches, ``E`` features, ``T`` caption tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attention_book._checks import (
    check_exact_ndim,
    check_float,
    check_int,
    check_lengths,
    check_token_ids,
    fmt_shape,
)

__all__ = ["ImageTower", "PatchEmbedding", "TextTower", "patchify"]


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
