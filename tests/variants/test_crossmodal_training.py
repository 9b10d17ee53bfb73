"""The chapter 15 experiments: text-to-patch attention and CLIP training on the shapes world."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from attention_book.variants import (
    TextToPatchResult,
    clip_loss,
    retrieval_accuracy,
    shapes_data,
    train_clip,
    train_text_to_patch,
)

# --- retrieval_accuracy ---


def test_retrieval_accuracy_counts_equal_captions_as_right() -> None:
    captions = torch.tensor([[3, 2], [4, 2], [3, 2], [5, 2]])
    assert retrieval_accuracy(torch.eye(4), captions) == (1.0, 1.0)
    swapped = torch.eye(4)[[2, 1, 0, 3]]  # images 0 and 2 retrieve each other's equal caption
    assert retrieval_accuracy(swapped, captions) == (1.0, 1.0)
    wrong = torch.eye(4)[[1, 0, 2, 3]]  # images 0 and 1 swapped: captions differ
    assert retrieval_accuracy(wrong, captions) == (0.5, 0.5)


def test_retrieval_accuracy_errors() -> None:
    with pytest.raises(ValueError, match=r"logits must be square \(M, M\) and captions \(M, T\)"):
        retrieval_accuracy(torch.zeros(3, 4), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got \(3, 3\) and \(2, 2\)"):
        retrieval_accuracy(torch.zeros(3, 3), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"logits must be a floating-point tensor"):
        retrieval_accuracy(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 2))


# --- train_text_to_patch ---


@pytest.fixture(scope="module")
def text_to_patch() -> TextToPatchResult:
    return train_text_to_patch(shapes_data(2000, seed=7), epochs=4)


def test_attention_finds_the_named_shape(text_to_patch: TextToPatchResult) -> None:
    result = text_to_patch
    assert result.attention_accuracy > 0.45  # chance: 1/16
    assert result.answer_accuracy > 0.65  # chance: 1/2
    assert len(result.losses) == len(result.attention_accuracies) == 4
    assert result.losses[-1] < result.losses[0]
    assert result.attention_accuracies[-1] == result.attention_accuracy
    # the model scores new images as well
    test = shapes_data(300, seed=8)
    with torch.no_grad():
        out = result.model(test.images, test.captions, test.caption_lens)
    assert (out.weights.argmax(dim=-1) == test.target_patch).float().mean() > 0.45


def test_text_to_patch_is_reproducible_and_leaves_the_global_rng() -> None:
    data = shapes_data(200)
    state = torch.random.get_rng_state()
    first = train_text_to_patch(data, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = train_text_to_patch(data, epochs=1)
    assert first.losses == again.losses
    assert first.attention_accuracy == again.attention_accuracy


def test_text_to_patch_errors() -> None:
    data = shapes_data(20)
    with pytest.raises(ValueError, match=r"grid must be the grid of the data"):
        train_text_to_patch(data, grid=8)
    with pytest.raises(
        ValueError, match=r"test_fraction must leave at least one training and one test"
    ):
        train_text_to_patch(data, test_fraction=0.0)
    with pytest.raises(ValueError, match=r"epochs must be at least 1; got 0"):
        train_text_to_patch(data, epochs=0)
    with pytest.raises(ValueError, match=r"lr must be positive; got -1"):
        train_text_to_patch(data, lr=-1)
    with pytest.raises(TypeError, match=r"data must be a ShapesData; got list"):
        train_text_to_patch([])  # type: ignore[arg-type]


# --- train_clip ---


def test_clip_learns_to_retrieve_and_lowers_the_temperature() -> None:
    result = train_clip(shapes_data(1500, distractors=0), steps=200)
    assert result.image_to_text > 0.85
    assert result.text_to_image > 0.85
    assert len(result.losses) == len(result.logit_scales) == 200
    assert result.logit_scales[-1] > math.log(1 / 0.07)  # the temperature fell
    assert result.logit_scale.item() == result.logit_scales[-1]
    assert sum(result.losses[-10:]) < sum(result.losses[:10]) / 4


def test_clip_past_the_cap_the_scale_does_not_move() -> None:
    data = shapes_data(300, distractors=0)
    capped = train_clip(data, steps=5, logit_scale_init=5.0)  # e^5 > 100
    assert capped.logit_scales == [5.0] * 5
    uncapped = train_clip(
        data, steps=5, logit_scale_init=5.0, loss_fn=functools.partial(clip_loss, max_scale=None)
    )
    assert uncapped.logit_scales[-1] != 5.0


def test_clip_batches_hold_distinct_captions() -> None:
    seen: list[torch.Tensor] = []

    def recording_loss(image: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(text.detach())
        return clip_loss(image, text, t)

    train_clip(shapes_data(400, distractors=0), steps=3, batch_size=40, loss_fn=recording_loss)
    assert len(seen) == 3
    for text in seen:  # the text tower maps equal captions to equal rows
        assert len(torch.unique(text, dim=0)) == 40


def test_clip_is_reproducible() -> None:
    data = shapes_data(300, distractors=0)
    assert train_clip(data, steps=4).losses == train_clip(data, steps=4).losses


def test_clip_errors() -> None:
    data = shapes_data(1000, distractors=0)
    with pytest.raises(
        ValueError,
        match=r"batch_size must be at most the number of distinct training captions = 64; got 65",
    ):
        train_clip(data, batch_size=65)
    with pytest.raises(ValueError, match=r"image_size must be divisible by patch_size = 5; got 32"):
        train_clip(data, patch_size=5)
    with pytest.raises(ValueError, match=r"steps must be at least 1; got 0"):
        train_clip(data, steps=0)
    with pytest.raises(ValueError, match=r"test_fraction must leave at least one training"):
        train_clip(data, test_fraction=1.0)
    with pytest.raises(ValueError, match=r"test_fraction must lie in \[0, 1\]; got 1.5"):
        train_clip(data, test_fraction=1.5)
