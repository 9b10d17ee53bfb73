"""A heatmap of attention weights with a token on every row and column: the view for print."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from torch import Tensor

from attention_book._checks import check_exact_ndim, check_float
from attention_book.interpret.view import _token_names

__all__ = ["token_heatmap"]


def token_heatmap(
    weights: Tensor,
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    xlabel: str = "keys",
    ylabel: str = "queries",
    cmap: str | Colormap = "Reds",
    vmax: float | None = None,
    annotate: bool = False,
    colorbar: bool = True,
) -> Axes:
    r"""Draw one ``(L, S)`` matrix of weights with its query tokens down and key tokens across.

    Row :math:`i` (query ``tokens[i]``) and column :math:`j` (key ``key_tokens[j]``) are
    coloured by the weight, on a scale that starts at 0, so the lightest colour means "no
    weight"; with softmax weights every row sums to 1:

    .. math::

        \alpha_{ij} \ge 0, \qquad \sum_{j=1}^{S} \alpha_{ij} = 1.

    Every token is labelled (the key labels turn 45 degrees); pass the same ``vmax`` to
    several panels to share their scale, and ``colorbar=False`` to all but one.
    :func:`~attention_book.interpret.attention_view` is the interactive counterpart.

    Args:
        weights: ``(L, S)`` non-negative weights, any device and floating dtype; detached
            and moved to the CPU.
        tokens: The ``L`` query tokens (rows).
        key_tokens: The ``S`` key tokens (columns); required when ``S != L``, else ``tokens``.
        ax: The axes to draw on; ``None`` makes a new figure sized to the tokens.
        xlabel: Label under the keys.
        ylabel: Label beside the queries.
        cmap: A matplotlib colour map name or object.
        vmax: Weight drawn with the darkest colour; ``None`` for the largest entry.
        annotate: Write each weight (two decimals) in its cell.
        colorbar: Add a colour bar beside the axes.

    Returns:
        The :class:`~matplotlib.axes.Axes` drawn on (its figure is ``ax.figure``).

    Raises:
        TypeError: If ``weights`` is not a floating-point tensor, or ``tokens`` or
            ``key_tokens`` is not a sequence of strings.
        ValueError: If ``weights`` is not 2-D, is empty or has a negative entry, ``tokens``
            or ``key_tokens`` does not have one entry per row or column, or ``vmax <= 0``.

    Example:
        >>> weights = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
        >>> ax = token_heatmap(weights, ["le", "chat"], ["the", "cat", "."], annotate=True)
        >>> [label.get_text() for label in ax.get_xticklabels()]
        ['the', 'cat', '.']
        >>> ax.images[0].get_clim()[0]  # the scale starts at 0
        0.0
        >>> plt.close(ax.figure)
    """
    weights = check_float("weights", weights)
    check_exact_ndim("weights", weights, 2, "(L, S)")
    matrix = weights.detach().to(device="cpu", dtype=torch.float32)
    L, S = matrix.shape
    if matrix.numel() == 0:
        msg = f"weights must not be empty; got shape {tuple(matrix.shape)}"
        raise ValueError(msg)
    if bool((matrix < 0).any()):
        msg = f"weights must be non-negative; got a minimum of {matrix.min().item():.3g}"
        raise ValueError(msg)
    rows, columns = _token_names(tokens, key_tokens, L, S, "rows", "columns")
    if vmax is not None and vmax <= 0:
        msg = f"vmax must be greater than 0; got {vmax}"
        raise ValueError(msg)
    high = vmax if vmax is not None else max(matrix.max().item(), 1e-12)

    if ax is None:
        size = (1.2 + 0.38 * S + (1.0 if colorbar else 0.0), 1.0 + 0.38 * L)
        ax = plt.figure(figsize=size, layout="constrained").add_subplot()
    image = ax.imshow(matrix.numpy(), cmap=cmap, vmin=0.0, vmax=high, aspect="auto")
    ax.set_xticks(range(S), columns, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(L), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate:
        for i in range(L):
            for j in range(S):
                value = matrix[i, j].item()
                colour = "white" if value > 0.6 * high else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
    return ax
