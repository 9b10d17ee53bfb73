"""The shapes world: images, captions, target cells and the brightness question."""

from __future__ import annotations

import pytest
import torch

from attention_book.models import Vocab
from attention_book.variants import (
    ShapesData,
    brightness_labels,
    patchify,
    shapes_data,
)

COLOURS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
SHAPES = ["square", "circle", "triangle", "cross"]


def cells_of(data: ShapesData, grid: int) -> torch.Tensor:
    """``(N, P, 3, c, c)``: the pixels of each grid cell, row-major."""
    n, _, size, _ = data.images.shape
    c = size // grid
    return patchify(data.images, c).reshape(n, grid * grid, 3, c, c)


def target_cells(data: ShapesData, grid: int) -> torch.Tensor:
    return cells_of(data, grid)[torch.arange(len(data.target_patch)), data.target_patch]


# --- shapes_data ---


def test_fields_shapes_and_ranges() -> None:
    data = shapes_data(13, image_size=20, grid=5, distractors=4, seed=3)
    assert data.images.shape == (13, 3, 20, 20)
    assert data.images.dtype == torch.float32
    assert data.images.min() >= 0
    assert data.images.max() <= 1
    assert data.captions.shape == (13, 5)
    assert data.captions.dtype == torch.int64
    assert data.caption_lens.tolist() == [5] * 13
    assert data.target_patch.dtype == torch.int64
    assert 0 <= data.target_patch.min() <= data.target_patch.max() < 25
    assert isinstance(data.vocab, Vocab)
    assert data.vocab.tokens[:3] == ["<pad>", "<bos>", "<eos>"]
    assert (data.captions[:, -1] == data.vocab.eos).all()
    assert len(data.vocab) == 15


def test_deterministic_per_seed_and_global_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    first, again, other = shapes_data(30), shapes_data(30), shapes_data(30, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("images", "captions", "caption_lens", "target_patch"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert first.vocab == again.vocab
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize(
    ("size", "grid", "distractors"), [(32, 4, 3), (15, 3, 8), (16, 2, 0), (35, 7, 1)]
)
def test_caption_names_the_shape_in_the_target_cell(size: int, grid: int, distractors: int) -> None:
    data = shapes_data(120, image_size=size, grid=grid, distractors=distractors, seed=2)
    words = [data.vocab.decode(caption) for caption in data.captions]
    cells = target_cells(data, grid)  # (N, 3, c, c)
    lit = cells.amax(dim=1) > 0  # (N, c, c): where the shape is
    brightness = cells.amax(dim=(1, 2, 3))  # (N,)
    assert set(brightness.tolist()) <= {0.5, 1.0}
    templates: dict[str, torch.Tensor] = {}
    for n, (colour, shape, vertical, horizontal) in enumerate(words):
        # the colour: every lit pixel has the colour's RGB times the brightness
        rgb = torch.tensor(COLOURS[colour]) * brightness[n]
        torch.testing.assert_close(cells[n][:, lit[n]], rgb[:, None].expand(3, int(lit[n].sum())))
        # the shape: one pixel pattern per shape word
        templates.setdefault(shape, lit[n])
        assert torch.equal(lit[n], templates[shape]), (n, shape)
        # the quadrant
        row, column = divmod(int(data.target_patch[n]), grid)
        assert vertical == ("top" if 2 * row < grid else "bottom")
        assert horizontal == ("left" if 2 * column < grid else "right")
    patterns = list(templates.values())
    assert all(not torch.equal(a, b) for i, a in enumerate(patterns) for b in patterns[i + 1 :])


def test_count_of_shapes_and_uniqueness_in_the_quadrant() -> None:
    grid = 4
    data = shapes_data(500, distractors=5, seed=4)
    cells = cells_of(data, grid)  # (N, P, 3, c, c)
    lit = cells.amax(dim=2) > 0  # (N, P, c, c)
    assert ((lit.flatten(2).any(dim=-1)).sum(dim=1) == 6).all()
    # a shape's look without its brightness: colour channels and pixel pattern
    look = cells / cells.amax(dim=(2, 3, 4), keepdim=True).clamp(min=1e-9)
    quadrant = torch.tensor(
        [2 * (2 * (p // grid) >= grid) + (2 * (p % grid) >= grid) for p in range(16)]
    )
    twins_elsewhere = 0
    for n in range(500):
        target = int(data.target_patch[n])
        same_look = (look[n] == look[n, target]).flatten(1).all(dim=1)  # (P,)
        same_look[target] = False
        assert not (same_look & (quadrant == quadrant[target])).any(), n
        twins_elsewhere += int(same_look.any())
    assert twins_elsewhere > 0  # the quadrant words are needed sometimes


def test_images_are_drawn_fast_enough_for_a_page() -> None:
    data = shapes_data(10_000)
    assert data.images.shape[0] == 10_000


def test_shapes_data_errors() -> None:
    with pytest.raises(ValueError, match=r"num_samples must be at least 1; got 0"):
        shapes_data(0)
    with pytest.raises(
        ValueError,
        match=r"grid must divide image_size = 32 into cells of at least 4 pixels; got grid = 5",
    ):
        shapes_data(3, grid=5)
    with pytest.raises(ValueError, match=r"cells of at least 4 pixels; got grid = 8"):
        shapes_data(3, image_size=24, grid=8)
    with pytest.raises(ValueError, match=r"distractors must be at most grid² - 1 = 3; got 4"):
        shapes_data(3, image_size=16, grid=2, distractors=4)
    with pytest.raises(ValueError, match=r"grid must be at least 2; got 1"):
        shapes_data(3, grid=1)
    with pytest.raises(TypeError, match=r"seed must be an int; got float"):
        shapes_data(3, seed=1.0)  # type: ignore[arg-type]


# --- brightness_labels ---


def test_brightness_labels_read_the_target_cell() -> None:
    data = shapes_data(300, image_size=15, grid=3, seed=5)
    labels = brightness_labels(data, grid=3)
    expected = (target_cells(data, 3).amax(dim=(1, 2, 3)) == 1.0).long()
    assert torch.equal(labels, expected)
    assert 0.35 < labels.float().mean() < 0.65


def test_brightness_labels_errors() -> None:
    data = shapes_data(50)
    with pytest.raises(ValueError, match=r"grid must be the grid of the data"):
        brightness_labels(data, grid=3)
    with pytest.raises(ValueError, match=r"grid must be the grid of the data"):
        brightness_labels(data, grid=2)  # 32 / 2 divides, but there are cells past 3
    with pytest.raises(
        ValueError, match=r"got 8, with which the cell target_patch names is empty in \d+ of 50"
    ):
        brightness_labels(data, grid=8)
    with pytest.raises(TypeError, match=r"data must be a ShapesData; got tuple"):
        brightness_labels(tuple(data))  # type: ignore[arg-type]
