"""show_heatmaps: one panel per matrix, a colour scale from 0 for weights, pyplot figures."""

from __future__ import annotations

import io
from collections.abc import Iterator

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from attention_book import show_heatmaps


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """show_heatmaps registers its figures with pyplot; close them after each test."""
    yield
    plt.close("all")


def heatmap_axes(fig: Figure) -> list[object]:
    return [ax for ax in fig.axes if ax.images]


def colorbar_axes(fig: Figure) -> list[object]:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def clims(fig: Figure) -> list[tuple[float, float]]:
    return [ax.images[0].get_clim() for ax in heatmap_axes(fig)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("shape", "rows", "cols"), [((4, 6), 1, 1), ((3, 4, 6), 1, 3), ((2, 3, 4, 6), 2, 3)]
)
def test_one_panel_per_matrix_and_one_shared_colour_bar(
    shape: tuple[int, ...], rows: int, cols: int
) -> None:
    matrices = torch.rand(shape)
    fig = show_heatmaps(matrices, xlabel="keys", ylabel="queries", figsize=(2.0, 1.5))
    assert isinstance(fig, Figure)
    panels = heatmap_axes(fig)
    assert len(panels) == rows * cols
    assert len(colorbar_axes(fig)) == 1
    assert len(fig.axes) == rows * cols + 1
    # non-negative data: the scale starts at 0, not at the smallest entry
    assert set(clims(fig)) == {(0.0, matrices.max().item())}
    width, height = fig.get_size_inches()
    assert width >= 2.0 * cols
    assert height == pytest.approx(1.5 * rows)
    grid = matrices.reshape(rows * cols, shape[-2], shape[-1])
    for panel, matrix in zip(panels, grid, strict=True):
        assert panel.images[0].get_array().tolist() == matrix.tolist()  # type: ignore[attr-defined]


def test_weights_near_uniform_are_not_drawn_as_extremes() -> None:
    # rows of weights between 0.24 and 0.26: a min-max scale would paint them white and black
    weights = torch.full((4, 4), 0.25) + 0.01 * torch.linspace(-1, 1, 16).reshape(4, 4)
    fig = show_heatmaps(weights, xlabel="k", ylabel="q")
    low, high = clims(fig)[0]
    assert low == 0.0
    assert high == pytest.approx(0.26)


def test_negative_data_and_explicit_limits() -> None:
    scores = torch.tensor([[-2.0, 1.0], [0.5, 3.0]])
    assert clims(show_heatmaps(scores, xlabel="k", ylabel="q")) == [(-2.0, 3.0)]
    fig = show_heatmaps(scores, xlabel="k", ylabel="q", vmin=-5.0, vmax=5.0)
    assert clims(fig) == [(-5.0, 5.0)]
    # a constant panel still gets a non-empty scale
    assert clims(show_heatmaps(torch.zeros(2, 2), xlabel="k", ylabel="q")) == [(0.0, 1.0)]


def test_one_colour_bar_per_panel_with_its_own_scale() -> None:
    flat = torch.full((3, 3), 1 / 3)
    peaked = torch.eye(3)
    fig = show_heatmaps(torch.stack([flat, peaked]), xlabel="k", ylabel="q", colorbar="each")
    assert len(colorbar_axes(fig)) == 2
    (low0, high0), (low1, high1) = clims(fig)
    assert (low0, low1) == (0.0, 0.0)
    assert high0 == pytest.approx(1 / 3)
    assert high1 == 1.0


def test_at_most_max_ticks_integer_ticks() -> None:
    fig = show_heatmaps(torch.rand(50, 97), xlabel="keys", ylabel="queries", max_ticks=6)
    fig.canvas.draw()
    ax = fig.axes[0]
    for ticks, limits in ((ax.get_xticks(), ax.get_xlim()), (ax.get_yticks(), ax.get_ylim())):
        low, high = sorted(limits)
        visible = [t for t in ticks if low <= t <= high]
        assert 2 <= len(visible) <= 6
        assert all(float(t).is_integer() for t in visible)


def test_labels_and_titles() -> None:
    fig = show_heatmaps(
        torch.rand(2, 3, 4, 5), xlabel="keys", ylabel="queries", titles=["a", "b", "c"]
    )
    panels = heatmap_axes(fig)
    assert [ax.get_title() for ax in panels[:3]] == ["a", "b", "c"]  # type: ignore[attr-defined]
    assert [ax.get_xlabel() for ax in panels[3:]] == ["keys"] * 3  # type: ignore[attr-defined]
    assert [panels[i].get_ylabel() for i in (0, 3)] == ["queries"] * 2  # type: ignore[attr-defined]


def test_detaches_accepts_grad_and_bool_and_is_an_ordinary_pyplot_figure() -> None:
    weights = torch.softmax(torch.randn(3, 5, requires_grad=True), dim=-1)
    fig = show_heatmaps(weights, xlabel="k", ylabel="q", cmap="viridis")
    assert weights.requires_grad
    assert fig.number in plt.get_fignums()  # shown by the notebook's inline backend
    mask_fig = show_heatmaps(torch.ones(4, 4, dtype=torch.bool).tril(), xlabel="k", ylabel="q")
    assert heatmap_axes(mask_fig)[0].images[0].get_array().sum() == 10  # type: ignore[attr-defined]
    fig.savefig(io.BytesIO(), format="png")


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"colorbar must be 'shared' or 'each'; got 'none'"):
        show_heatmaps(torch.rand(2, 2), xlabel="k", ylabel="q", colorbar="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"max_ticks must be at least 2; got 1"):
        show_heatmaps(torch.rand(2, 2), xlabel="k", ylabel="q", max_ticks=1)
    with pytest.raises(
        ValueError, match=r"vmin must be smaller than vmax; got vmin=1.0 and vmax=0.5"
    ):
        show_heatmaps(torch.rand(2, 2), xlabel="k", ylabel="q", vmin=1.0, vmax=0.5)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_wrong_number_of_dims(shape: tuple[int, ...]) -> None:
    with pytest.raises(
        ValueError, match=r"matrices must have 2 dims \(L, S\), 3 dims .* got shape"
    ):
        show_heatmaps(torch.rand(shape), xlabel="k", ylabel="q")


def test_bad_titles_empty_and_not_a_tensor() -> None:
    with pytest.raises(ValueError, match=r"titles must have one entry per column \(3\); got 2"):
        show_heatmaps(torch.rand(3, 4, 4), xlabel="k", ylabel="q", titles=["a", "b"])
    with pytest.raises(ValueError, match=r"matrices must not be empty; got shape \(0, 4\)"):
        show_heatmaps(torch.rand(0, 4), xlabel="k", ylabel="q")
    with pytest.raises(TypeError, match=r"matrices must be a torch\.Tensor; got list"):
        show_heatmaps([[1.0]], xlabel="k", ylabel="q")  # type: ignore[arg-type]


def test_plot_kernel_regression_draws_truth_data_and_prediction() -> None:
    from attention_book import kernel_regression_data, plot_kernel_regression, true_function

    data = kernel_regression_data(n_train=20)
    ax = Figure().subplots()
    prediction = torch.full_like(data.x_test, 1.5, requires_grad=True)
    assert plot_kernel_regression(ax, data, prediction, title="fit") is ax
    truth, points, line = ax.get_lines()
    assert [truth.get_label(), points.get_label(), line.get_label()] == [
        "truth",
        "data",
        "prediction",
    ]
    x, y = truth.get_data()
    torch.testing.assert_close(torch.as_tensor(y), true_function(torch.as_tensor(x)))
    assert torch.as_tensor(points.get_xdata()).numel() == 20
    torch.testing.assert_close(
        torch.as_tensor(line.get_ydata()), torch.full(data.x_test.shape, 1.5)
    )
    assert ax.get_title() == "fit"
    assert ax.get_xlim() == (0.0, 5.0)


def test_plot_kernel_regression_rejects_a_prediction_of_the_wrong_shape() -> None:
    from attention_book import kernel_regression_data, plot_kernel_regression

    data = kernel_regression_data()
    with pytest.raises(
        ValueError, match=r"prediction must have the shape of data.x_test \(50,\); got \(49,\)"
    ):
        plot_kernel_regression(Figure().subplots(), data, torch.zeros(49))


def test_plot_kernel_regression_rasterizes_only_dense_data() -> None:
    from attention_book import kernel_regression_data, plot_kernel_regression

    for n_train, rasterized in ((50, False), (500, True)):
        data = kernel_regression_data(n_train=n_train)
        ax = plot_kernel_regression(Figure().subplots(), data, torch.zeros_like(data.x_test))
        truth, points, line = ax.get_lines()
        assert points.get_rasterized() is rasterized
        assert not truth.get_rasterized()
        assert not line.get_rasterized()
