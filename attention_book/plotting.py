"""Draw attention weights as a grid of heatmaps with one shared colour bar."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from attention_book._checks import check_tensor, fmt_shape
from attention_book.data import KernelRegressionData, true_function

__all__ = ["plot_kernel_regression", "show_heatmaps"]

_MAX_VECTOR_POINTS = 200


class _NotebookFigure(Figure):
    """A plain :class:`~matplotlib.figure.Figure` that a notebook can show on its own.

    IPython shows a figure that is not managed by pyplot only if the inline backend has
    registered a formatter (``%matplotlib inline``); otherwise it prints
    ``<Figure size ...>``. ``_repr_png_`` is the fallback IPython uses then. Where the
    formatter is registered it takes precedence, so the figure is still shown once.
    """

    def __repr__(self) -> str:
        return super().__repr__().replace(type(self).__name__, "Figure", 1)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def show_heatmaps(
    matrices: Tensor,
    *,
    xlabel: str,
    ylabel: str,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (2.5, 2.5),
    cmap: str | Colormap = "Reds",
) -> Figure:
    """Draw one heatmap per ``(L, S)`` matrix, all on one colour scale.

    Every panel shares the same colour limits (the minimum and maximum over all the
    matrices), so a single colour bar on the right reads for all of them. Rows of weights are
    queries (``ylabel``), columns are keys (``xlabel``).

    The figure is built with :class:`matplotlib.figure.Figure` directly, not through
    ``pyplot``: nothing is registered with pyplot's figure manager, so a notebook shows the
    figure exactly once, as a PNG, when it is the value of the cell's last line (or when it
    is passed to ``glue``), with or without ``%matplotlib inline``; assigning it
    (``fig = show_heatmaps(...)``) shows nothing. ``plt.show()`` is never called. Save it
    with ``fig.savefig(...)``.

    Args:
        matrices: ``(L, S)`` for one panel, ``(cols, L, S)`` for one row of panels, or
            ``(rows, cols, L, S)`` for a grid. Any device, any floating or boolean dtype;
            the function detaches the tensor and moves it to the CPU itself.
        xlabel: Label under each panel of the bottom row (usually "keys").
        ylabel: Label beside each panel of the left column (usually "queries").
        titles: One title per column, or ``None`` for no titles.
        figsize: Width and height of one panel in inches; the figure grows with the grid.
        cmap: A matplotlib colour map name or object.

    Returns:
        The :class:`~matplotlib.figure.Figure`, with ``rows * cols`` heatmap axes plus one
        colour-bar axes.

    Raises:
        TypeError: If ``matrices`` is not a tensor.
        ValueError: If ``matrices`` does not have 2, 3 or 4 dims, is empty, or ``titles``
            does not have one entry per column.

    Example:
        >>> weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)
        >>> fig = show_heatmaps(weights, xlabel="keys", ylabel="queries", titles=["a", "b", "c"])
        >>> len(fig.axes)  # 2 x 3 panels and one colour bar
        7
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
    # (L, S) or (cols, L, S) or (rows, cols, L, S) -> (rows, cols, L, S)
    grid = matrices.detach().to(device="cpu", dtype=torch.float32)
    grid = grid.reshape((1,) * (4 - grid.ndim) + tuple(grid.shape))
    num_rows, num_cols = grid.shape[0], grid.shape[1]
    if titles is not None and len(titles) != num_cols:
        msg = f"titles must have one entry per column ({num_cols}); got {len(titles)}"
        raise ValueError(msg)

    width, height = figsize
    fig = _NotebookFigure(figsize=(width * num_cols + 0.8, height * num_rows), layout="constrained")
    axes = fig.subplots(num_rows, num_cols, sharex=True, sharey=True, squeeze=False)
    vmin, vmax = grid.min().item(), grid.max().item()
    images = []
    for i in range(num_rows):
        for j in range(num_cols):
            ax = axes[i, j]
            images.append(
                ax.imshow(grid[i, j].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rows and columns are indices
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if i == num_rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i == 0:
                ax.set_title(titles[j])
    fig.colorbar(images[0], ax=axes.ravel().tolist(), shrink=0.8)
    return fig


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
    ax.plot(
        data.x_train.cpu(), data.y_train.cpu(), "o", ms=3, alpha=0.4, label="data", rasterized=many
    )
    ax.plot(data.x_test.cpu(), prediction.detach().cpu(), lw=2, label="prediction")
    ax.set(xlabel="$x$", ylabel="$y$", xlim=(0, 5), ylim=(-1, 5))
    if title is not None:
        ax.set_title(title)
    return ax
