"""token_heatmap: every token labelled, a colour scale from 0, one axes returned."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import pytest
import torch

from attention_book.interpret import token_heatmap

TOKENS = ["the", "cat", "sat", "on", "the", "mat", "."]


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_every_token_labels_its_row_and_column() -> None:
    weights = torch.softmax(torch.randn(5, 7), dim=-1)
    ax = token_heatmap(weights, TOKENS[:5], TOKENS, xlabel="keys", ylabel="queries")
    assert [t.get_text() for t in ax.get_xticklabels()] == TOKENS
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS[:5]
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert ax.get_xlabel() == "keys"
    assert ax.get_ylabel() == "queries"
    image = ax.images[0]
    shown = image.get_array()
    assert shown is not None
    assert shown.shape == (5, 7)
    low, high = image.get_clim()
    assert low == 0.0
    assert high == pytest.approx(weights.max().item())
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar


def test_square_weights_reuse_the_tokens_and_draw_on_a_given_axes() -> None:
    fig, (left, right) = plt.subplots(1, 2)
    weights = torch.softmax(torch.randn(2, 7, 7, dtype=torch.float64), dim=-1)
    for ax, matrix in zip((left, right), weights, strict=True):
        assert token_heatmap(matrix, TOKENS, ax=ax, vmax=1.0, colorbar=ax is right) is ax
    assert [t.get_text() for t in right.get_xticklabels()] == TOKENS
    assert left.images[0].get_clim() == right.images[0].get_clim() == (0.0, 1.0)
    assert len(fig.axes) == 3  # one shared colour bar


def test_annotations_write_every_weight() -> None:
    weights = torch.tensor([[0.9, 0.1], [0.25, 0.75]])
    ax = token_heatmap(weights, ["a", "b"], annotate=True)
    texts = {(t.get_position(), t.get_text(), t.get_color()) for t in ax.texts}
    assert texts == {
        ((0, 0), "0.90", "white"),
        ((1, 0), "0.10", "black"),
        ((0, 1), "0.25", "black"),
        ((1, 1), "0.75", "white"),
    }


def test_input_is_not_changed() -> None:
    weights = torch.softmax(torch.randn(3, 3), dim=-1).requires_grad_()
    before = weights.detach().clone()
    token_heatmap(weights, TOKENS[:3])
    assert torch.equal(weights.detach(), before)


def test_all_zero_weights_draw() -> None:
    ax = token_heatmap(torch.zeros(2, 2), ["a", "b"])
    assert ax.images[0].get_clim()[0] == 0.0


@pytest.mark.parametrize(
    ("weights", "tokens", "kwargs", "error", "match"),
    [
        (torch.ones(2, 2, dtype=torch.int64), ["a", "b"], {}, TypeError, "weights must be a float"),
        (torch.ones(1, 2, 2), ["a", "b"], {}, ValueError, r"weights must have 2 dims \(L, S\)"),
        (torch.ones(0, 2), [], {"key_tokens": ["a", "b"]}, ValueError, "must not be empty"),
        (-torch.ones(2, 2), ["a", "b"], {}, ValueError, "weights must be non-negative; got a min"),
        (torch.ones(2, 2), ["a"], {}, ValueError, r"tokens must have 2 entries \(L, .*got 1"),
        (torch.ones(2, 3), ["a", "b"], {}, ValueError, "key_tokens is required when S != L"),
        (
            torch.ones(2, 3),
            ["a", "b"],
            {"key_tokens": ["x"]},
            ValueError,
            r"key_tokens must have 3 entries \(S, .*got 1",
        ),
        (torch.ones(2, 2), ["a", "b"], {"vmax": 0.0}, ValueError, "vmax must be greater than 0"),
    ],
)
def test_errors_name_the_argument(
    weights: torch.Tensor,
    tokens: list[str],
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        token_heatmap(weights, tokens, **kwargs)  # type: ignore[arg-type]
