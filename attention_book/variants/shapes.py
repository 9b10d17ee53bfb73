r"""The shapes world: synthetic images of coloured shapes, each with a caption naming one.

:func:`shapes_data` draws coloured shapes on a ``grid × grid`` board and names one of them in
a caption such as ``red square top left``: the red square in the top-left *quadrant* of the
board. The caption does not say which cell of the quadrant, and the image may hold another
red square in another quadrant and other red shapes or other squares in the same one, so a
model must look at the image to find the shape. ``target_patch`` says where it is, so that
text-to-patch attention can be scored against the truth. :func:`brightness_labels` reads
what no caption says: whether the named shape is drawn bright or dim.

Shapes: ``N`` images, ``S`` their side in pixels, ``G`` the grid, ``P = G²`` cells (one
patch each when ``patch_size = S / G``), ``T = 5`` caption tokens (four words and ``eos``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from attention_book._checks import check_int
from attention_book.models.translation import Vocab

__all__ = ["ShapesData", "brightness_labels", "shapes_data"]

_COLOURS = ("red", "green", "blue", "yellow")
_RGB = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
_SHAPES = ("square", "circle", "triangle", "cross")
_BRIGHTNESS = torch.tensor([0.5, 1.0])  # dim, bright
_VOCAB = Vocab([*_COLOURS, *_SHAPES, "top", "bottom", "left", "right"])


class ShapesData(NamedTuple):
    r"""Images of coloured shapes on a grid, each with a caption naming one shape.

    .. math::

        \text{target\_patch}_n = r_n G + c_n

    Attributes:
        images: ``(N, 3, S, S)`` float in ``[0, 1]``, black background.
        captions: ``(N, 5)`` int64: colour, shape, ``top``/``bottom``, ``left``/``right``,
            ``eos``.
        caption_lens: ``(N,)`` int64, 5 for every caption (``eos`` included).
        vocab: The :class:`~attention_book.models.Vocab` of the captions (15 tokens).
        target_patch: ``(N,)`` int64, the cell of the named shape, row-major: row ``r``,
            column ``c`` of the ``G × G`` grid is cell ``r G + c``.

    Example:
        >>> data = shapes_data(2)
        >>> data.vocab.decode(data.captions[0]), int(data.target_patch[0])
        (['yellow', 'triangle', 'bottom', 'left'], 12)
    """

    images: Tensor
    captions: Tensor
    caption_lens: Tensor
    vocab: Vocab
    target_patch: Tensor


def _shape_masks(cell: int) -> Tensor:
    """The four shapes drawn in a ``cell × cell`` square: ``(4, cell, cell)`` float 0 or 1."""
    centres = (torch.arange(cell) + 0.5) / cell * 2 - 1  # pixel centres in (-1, 1)
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # v down, u right
    r = 0.8
    square = (u.abs() <= r) & (v.abs() <= r)
    circle = u**2 + v**2 <= r**2
    triangle = (v <= r) & (u.abs() <= (v + r) / 2)  # apex up
    arm = r / 3
    cross = ((u.abs() <= arm) & (v.abs() <= r)) | ((v.abs() <= arm) & (u.abs() <= r))
    return torch.stack([square, circle, triangle, cross]).float()


def shapes_data(
    num_samples: int, *, image_size: int = 32, grid: int = 4, distractors: int = 3, seed: int = 0
) -> ShapesData:
    r"""Draw ``N`` images of coloured shapes with a caption naming one of them, reproducibly.

    .. math::

        \text{caption} = \text{colour}\;\text{shape}\;
        \underbrace{\texttt{top} \mid \texttt{bottom}}_{2r < G \,?}\;
        \underbrace{\texttt{left} \mid \texttt{right}}_{2c < G \,?}

    Each image holds ``1 + distractors`` shapes in distinct random cells of a ``G × G``
    grid, each a square, circle, triangle or cross in red, green, blue or yellow, drawn
    dim (half intensity) or bright, all drawn independently. The first is the target: the
    caption names its colour, shape and quadrant (``top`` if its row ``r`` has ``2r < G``,
    ``left`` if its column ``c`` has ``2c < G``). No other shape of the target's colour and
    kind sits in the target's quadrant (a distractor that would is given the next kind of
    shape), so the caption picks out exactly one shape, but only an eye on the image can
    say which cell it is in: the quadrant holds ``(G / 2)²`` cells, other shapes of the
    same colour or the same kind may share it, and the same colour and kind may appear in
    another quadrant. The brightness is never named: :func:`brightness_labels` reads it.

    Uses a local generator; the global random state is never touched.

    Args:
        num_samples: ``N``.
        image_size: ``S``, the side of the images in pixels.
        grid: ``G``; must divide ``image_size`` into cells of at least 4 pixels.
        distractors: Shapes besides the target, at most ``G² - 1``.
        seed: Seed of the local generator.

    Returns:
        :class:`ShapesData`.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If a count is too small, ``grid`` does not divide ``image_size`` into
            cells of at least 4 pixels, or there are more shapes than cells.

    Example:
        >>> data = shapes_data(1000, seed=1)
        >>> data.images.shape, data.captions.shape, data.target_patch.shape
        (torch.Size([1000, 3, 32, 32]), torch.Size([1000, 5]), torch.Size([1000]))
        >>> data.images.amin().item(), data.images.amax().item()
        (0.0, 1.0)
    """
    n = check_int("num_samples", num_samples, minimum=1)
    check_int("image_size", image_size, minimum=4)
    g = check_int("grid", grid, minimum=2)
    num_cells = g * g
    check_int("distractors", distractors, minimum=0)
    check_int("seed", seed, minimum=-(2**63))
    if image_size % g or image_size // g < 4:
        msg = (
            f"grid must divide image_size = {image_size} into cells of at least 4 pixels; "
            f"got grid = {g}"
        )
        raise ValueError(msg)
    if distractors > num_cells - 1:
        msg = f"distractors must be at most grid² - 1 = {num_cells - 1}; got {distractors}"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    k, cell = 1 + distractors, image_size // g
    cells = torch.rand(n, num_cells, generator=generator).argsort(dim=1)[:, :k]  # (N, K)
    colour = torch.randint(len(_COLOURS), (n, k), generator=generator)
    shape = torch.randint(len(_SHAPES), (n, k), generator=generator)
    bright = torch.randint(2, (n, k), generator=generator)
    down, right = (2 * (cells // g) >= g).long(), (2 * (cells % g) >= g).long()  # (N, K)
    quadrant = 2 * down + right
    twin = (quadrant == quadrant[:, :1]) & (colour == colour[:, :1]) & (shape == shape[:, :1])
    twin[:, 0] = False  # the target itself
    shape = torch.where(twin, (shape + 1) % len(_SHAPES), shape)

    # (N, K, 3, 1, 1) * (N, K, 1, 1, 1) * (N, K, 1, cell, cell) -> (N, K, 3, cell, cell)
    drawn = (_RGB[colour] * _BRIGHTNESS[bright][..., None])[..., None, None] * _shape_masks(cell)[
        shape
    ][:, :, None]
    board = torch.zeros(n, num_cells, 3, cell, cell)
    board[torch.arange(n)[:, None], cells] = drawn  # each shape into its cell
    # (N, G·G, 3, cell, cell) -> (N, G, G, 3, cell, cell) -> (N, 3, G, cell, G, cell) -> (N, 3, S, S)
    images = board.reshape(n, g, g, 3, cell, cell).permute(0, 3, 1, 4, 2, 5)
    images = images.reshape(n, 3, image_size, image_size)

    words = (  # vocabulary ids: 3.. colours, 7.. shapes, 11 top, 12 bottom, 13 left, 14 right
        3 + colour[:, 0],
        3 + len(_COLOURS) + shape[:, 0],
        11 + down[:, 0],
        13 + right[:, 0],
        torch.full((n,), Vocab.eos),
    )
    captions = torch.stack(words, dim=1)  # (N, 5)
    return ShapesData(images, captions, torch.full((n,), 5), _VOCAB, cells[:, 0].clone())


def check_shapes_data(data: object) -> ShapesData:
    """Raise ``TypeError`` unless ``data`` is a :class:`ShapesData`; return it."""
    if not isinstance(data, ShapesData):
        msg = f"data must be a ShapesData; got {type(data).__name__}"
        raise TypeError(msg)
    return data


def check_grid(data: ShapesData, grid: int) -> int:
    """Check that ``grid`` divides the images and has a cell for every target; return the cell."""
    check_int("grid", grid, minimum=2)
    size = int(data.images.shape[-1])
    if size % grid or int(data.target_patch.max()) >= grid * grid:
        msg = (
            f"grid must be the grid of the data (it divides image_size = {size} and has more "
            f"than {int(data.target_patch.max())} cells); got {grid}"
        )
        raise ValueError(msg)
    return size // grid


def brightness_labels(data: ShapesData, *, grid: int = 4) -> Tensor:
    r"""Whether each named shape is bright (1) or dim (0), read from its cell of the image.

    .. math::

        y_n = \Bigl[\max_{\text{pixels of cell } \text{target\_patch}_n} X_n > 0.75\Bigr]

    The answer :func:`train_text_to_patch` asks for: the caption never says it and the other
    shapes are bright or dim independently, so only the named shape's patch tells.

    Args:
        data: From :func:`shapes_data`.
        grid: ``G``, the grid the data was drawn with.

    Returns:
        ``(N,)`` int64, 0 (dim) or 1 (bright).

    Raises:
        TypeError: If ``data`` is not a :class:`ShapesData`.
        ValueError: If ``grid`` cannot be the data's grid (it does not divide the images, or
            the cell ``target_patch`` names is empty in some image).

    Example:
        >>> labels = brightness_labels(shapes_data(1000))
        >>> labels[:5], labels.sum().item() / 1000
        (tensor([0, 0, 0, 1, 1]), 0.477)
    """
    data = check_shapes_data(data)
    cell = check_grid(data, grid)
    n = data.images.shape[0]
    # (N, 3, S, S) -> (N, 3, G, cell, G, cell) -> (N, G, G, 3, cell, cell) -> (N, P, 3·cell²)
    blocks = data.images.reshape(n, 3, grid, cell, grid, cell).permute(0, 2, 4, 1, 3, 5)
    target = blocks.reshape(n, grid * grid, -1)[torch.arange(n), data.target_patch]  # (N, 3·cell²)
    brightness = target.amax(dim=-1)  # (N,): 0.5 or 1.0, and 0 only if the grid is wrong
    empty = int((brightness == 0).sum())
    if empty:
        msg = (
            f"grid must be the grid of the data; got {grid}, with which the cell target_patch "
            f"names is empty in {empty} of {n} images"
        )
        raise ValueError(msg)
    return (brightness > 0.75).long()
