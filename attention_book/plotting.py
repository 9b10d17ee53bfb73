"""Draw attention weights as a grid of heatmaps, and kernel-regression fits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from attention_book._checks import check_int, check_tensor, fmt_shape
from attention_book.data import KernelRegressionData, true_function

__all__ = ["plot_kernel_regression", "show_heatmaps"]

_MAX_VECTOR_POINTS = 200


def show_heatmaps(
    matrices: Tensor,
    *,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (2.5, 2.5),
    cmap: str | Colormap = "Reds",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: Literal["shared", "each"] = "shared",
    max_ticks: int = 6,
) -> Figure:
    """Draw one heatmap per ``(L, S)`` matrix, with a colour bar that starts at 0 for weights.

    Rows of weights are queries (``ylabel``), columns are keys (``xlabel``). The colour scale
    runs from ``vmin`` to ``vmax``; by default ``vmin`` is 0 when no entry is negative (so the
    lightest colour means "no weight", never "the smallest weight in the figure") and the
    smallest entry otherwise, and ``vmax`` is the largest entry. With ``colorbar="shared"``
    every panel uses the same scale and one colour bar reads for all; with
    ``colorbar="each"`` every panel gets its own scale and colour bar, which shows the
    structure of panels whose spreads differ (a flat panel next to a peaked one).

    The figure is made with ``pyplot``, like any matplotlib figure: a notebook shows it at
    the end of the cell (``%matplotlib inline``, the default in Jupyter and Colab), and a
    script shows it with ``plt.show()``. Ticks are integers (rows and columns are indices),
    at most ``max_ticks`` per axis.

    Args:
        matrices: ``(L, S)`` for one panel, ``(cols, L, S)`` for one row of panels, or
            ``(rows, cols, L, S)`` for a grid. Any device, any floating or boolean dtype;
            the function detaches the tensor and moves it to the CPU itself.
        xlabel: Label under each panel of the bottom row (usually "keys").
        ylabel: Label beside each panel of the left column (usually "queries").
        titles: One title per column, or ``None`` for no titles.
        figsize: Width and height of one panel in inches; the figure grows with the grid.
        cmap: A matplotlib colour map name or object.
        vmin: Value drawn with the lightest colour, or ``None`` for the default above.
        vmax: Value drawn with the darkest colour, or ``None`` for the largest entry.
        colorbar: ``"shared"`` for one scale and one colour bar, ``"each"`` for one per panel.
        max_ticks: Most ticks on each axis of a panel (at least 2).

    Returns:
        The :class:`~matplotlib.figure.Figure`, with ``rows * cols`` heatmap axes plus one
        colour-bar axes (``"shared"``) or one per panel (``"each"``).

    Raises:
        TypeError: If ``matrices`` is not a tensor.
        ValueError: If ``matrices`` does not have 2, 3 or 4 dims or is empty, ``titles``
            does not have one entry per column, ``vmin >= vmax``, ``colorbar`` is not
            ``"shared"`` or ``"each"``, or ``max_ticks < 2``.

    Example:
        >>> weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)
        >>> fig = show_heatmaps(weights, xlabel="keys", ylabel="queries", titles=["a", "b", "c"])
        >>> len(fig.axes)  # 2 x 3 panels and one colour bar
        7
        >>> fig.axes[0].images[0].get_clim()[0]  # weights: the scale starts at 0
        0.0
        >>> plt.close(fig)
    """
    matrices = check_tensor("matrices", matrices)
    if not 2 <= matrices.ndim <= 4:
        msg = (
            "matrices must have 2 dims (L, S), 3 dims (cols, L, S) or 4 dims "
            f"(rows, cols, L, S); got shape {tuple(matrices.shape)}"
        )
        raise ValueError(msg)
    if matrices.numel() == 0:
        msg = f"matrices must not be empty; got shape {tuple(matrices.shape)}"
        raise ValueError(msg)
    if colorbar not in ("shared", "each"):
        msg = f"colorbar must be 'shared' or 'each'; got {colorbar!r}"
        raise ValueError(msg)
    max_ticks = check_int("max_ticks", max_ticks, minimum=2)
    if vmin is not None and vmax is not None and vmin >= vmax:
        msg = f"vmin must be smaller than vmax; got vmin={vmin} and vmax={vmax}"
        raise ValueError(msg)
    # (L, S) or (cols, L, S) or (rows, cols, L, S) -> (rows, cols, L, S)
    grid = matrices.detach().to(device="cpu", dtype=torch.float32)
    grid = grid.reshape((1,) * (4 - grid.ndim) + tuple(grid.shape))
    num_rows, num_cols = grid.shape[0], grid.shape[1]
    if titles is not None and len(titles) != num_cols:
        msg = f"titles must have one entry per column ({num_cols}); got {len(titles)}"
        raise ValueError(msg)

    width, height = figsize
    extra = 0.8 if colorbar == "shared" else 0.6 * num_cols  # room for the colour bars
    fig = plt.figure(figsize=(width * num_cols + extra, height * num_rows), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, sharex=True, sharey=True, squeeze=False)
    shared = _color_limits(grid, vmin, vmax)
    images = []
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            low, high = shared if colorbar == "shared" else _color_limits(grid[i, j], vmin, vmax)
            image = ax.imshow(grid[i, j].numpy(), cmap=cmap, vmin=low, vmax=high, aspect="auto")
            images.append(image)
            # rows and columns are indices: integer ticks, a few of them
            ax.xaxis.set_major_locator(MaxNLocator(nbins=max_ticks - 1, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=max_ticks - 1, integer=True))
            if colorbar == "each":
                fig.colorbar(image, ax=ax, shrink=0.8)
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i == 0:
                ax.set_title(titles[j])
    if colorbar == "shared":
        fig.colorbar(images[0], ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def _color_limits(values: Tensor, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """Colour limits: from 0 (or the minimum, if negative) to the maximum, never empty."""
    low = vmin if vmin is not None else min(values.min().item(), 0.0)
    high = vmax if vmax is not None else values.max().item()
    if high <= low:  # a constant panel: any non-empty range draws it in one colour
        high = low + 1.0
    return low, high


def plot_kernel_regression(
    ax: Axes,
    data: KernelRegressionData,
    prediction: Tensor,
    *,
    title: str | None = None,
) -> Axes:
    r"""Draw a kernel-regression fit: the true curve, the training pairs and a prediction.

    The true curve :math:`f(x) = 2 \sin x + x^{0.8}` is dashed, the noisy training pairs
    are dots and the prediction at ``data.x_test`` is a solid line; the axes span
    :math:`[0, 5] \times [-1, 5]` so that panels side by side compare at a glance. More than
    200 training pairs are drawn rasterized, which keeps a vector (SVG) figure light.

    Args:
        ax: The matplotlib axes to draw on.
        data: The data set of :func:`~attention_book.kernel_regression_data`.
        prediction: ``(n_test,)`` predictions at ``data.x_test``, any device; detached here.
        title: Title of the panel, or ``None``.

    Returns:
        ``ax``, with three labelled lines (``truth``, ``data``, ``prediction``).

    Raises:
        TypeError: If ``prediction`` is not a tensor.
        ValueError: If ``prediction`` does not have the shape of ``data.x_test``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> from attention_book import kernel_regression_data
        >>> data = kernel_regression_data()
        >>> ax = Figure().subplots()
        >>> ax = plot_kernel_regression(ax, data, torch.zeros_like(data.x_test))
        >>> [line.get_label() for line in ax.get_lines()]
        ['truth', 'data', 'prediction']
    """
    prediction = check_tensor("prediction", prediction)
    if prediction.shape != data.x_test.shape:
        msg = (
            f"prediction must have the shape of data.x_test {fmt_shape(data.x_test.shape)}; "
            f"got {fmt_shape(prediction.shape)}"
        )
        raise ValueError(msg)
    grid = torch.linspace(0, 5, 200)
    ax.plot(grid, true_function(grid), "k--", lw=1, label="truth")
    # Many points are drawn as one picture: an SVG element per point would weigh more.
    many = data.x_train.numel() > _MAX_VECTOR_POINTS
    # Light dots without edges: translucent where many overlap (drawn as one picture),
    # an opaque light blue otherwise, which keeps each SVG marker short.
    look = {"alpha": 0.4, "mec": "none"} if many else {"color": "#8fbbd9", "mec": "#8fbbd9"}
    ax.plot(
        data.x_train.cpu(), data.y_train.cpu(), "o", ms=3, label="data",
        rasterized=many, **look,
    )  # fmt: skip
    ax.plot(data.x_test.cpu(), prediction.detach().cpu(), lw=2, label="prediction")
    ax.set(xlabel="$x$", ylabel="$y$", xlim=(0, 5), ylim=(-1, 5))
    if title is not None:
        ax.set_title(title)
    return ax
