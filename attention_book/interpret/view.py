"""An interactive attention view that works offline: in the built book, JupyterLab and HTML files.

:func:`attention_view` wraps a tensor of weights and the tokens they connect; the object it
returns shows itself in a notebook through ``_repr_html_``: one ``<div>`` that holds the
weights as JSON (rounded to 3 decimals), a little CSS and the package's own script
(``attention_view.js``, plain JavaScript shipped as package data). It loads nothing from
anywhere and its HTML holds no URL, so it works with the network cut; it defines no global
name, so several views share a page. Hover over a query token, or focus it with the keyboard
(Tab, then the arrow keys, Home and End), to shade its keys by weight; the exact weight is in
each key's tooltip; the pickers choose the layer and the head, or the mean of the heads.

The view's own few words (*Layer*, *Head*, ...) follow the page's language: a page whose
``<html lang>`` starts with ``zh`` gets Chinese, any other English, so one code cell serves
both editions of the book. Light and dark colours follow the theme of the page around the
view: the book theme's switch (``<html data-theme="dark">``), JupyterLab's theme
(``<body data-jp-theme-light="false">``) or VS Code's (``<body class="vscode-dark">``), and
where none of them is set, the reader's system setting (``prefers-color-scheme``). Each view's
script sets up the ``<div>`` it sits in, so a view shown twice in one document (two open
notebooks in JupyterLab) works twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from html import escape
from importlib.resources import files

import torch
from torch import Tensor

from attention_book._checks import check_float, fmt_shape

__all__ = ["AttentionView", "attention_view"]

_SCRIPT_NAME = "attention_view.js"

_LIGHT = "--ab-attn-rgb:200,30,30;--ab-attn-fg:#1b1b1b;--ab-attn-line:#8a8a8a;--ab-attn-strong:#fff"
_DARK = "--ab-attn-rgb:255,125,100;--ab-attn-fg:#e8e8e8;--ab-attn-line:#777;--ab-attn-strong:#111"
# Light or dark, from the most specific signal present: the book theme's switch (pydata
# <html data-theme>), JupyterLab's theme (<body data-jp-theme-light>), VS Code's (<body
# class="vscode-dark">); with none of them, the reader's system setting.
_STYLE = f"""
.ab-attn{{{_LIGHT};color:var(--ab-attn-fg);font:14px/1.4 system-ui,sans-serif;margin:.5em 0}}
@media (prefers-color-scheme:dark){{.ab-attn{{{_DARK}}}}}
html[data-theme=light] .ab-attn,body[data-jp-theme-light=true] .ab-attn,
body.vscode-light .ab-attn{{{_LIGHT}}}
html[data-theme=dark] .ab-attn,body[data-jp-theme-light=false] .ab-attn,
body.vscode-dark .ab-attn{{{_DARK}}}
.ab-attn-bar{{display:flex;gap:1em;flex-wrap:wrap;margin-bottom:.4em}}
.ab-attn select{{color:inherit;background:transparent;border:1px solid var(--ab-attn-line);
 border-radius:3px;font:inherit}}
.ab-attn select option{{color:#1b1b1b;background:#fff}}
.ab-attn-row{{display:flex;flex-wrap:wrap;align-items:flex-start;gap:3px;margin:.25em 0}}
.ab-attn-label{{min-width:4.5em;font-size:.85em;opacity:.8;padding-top:.2em}}
.ab-attn-q,.ab-attn-k{{display:inline-flex;flex-direction:column;align-items:center;
 padding:.1em .35em;border:1px solid var(--ab-attn-line);border-radius:3px;white-space:pre}}
.ab-attn-q{{cursor:pointer}}
.ab-attn-q.ab-attn-on{{border-color:currentColor;box-shadow:0 0 0 2px rgba(var(--ab-attn-rgb),.9)}}
.ab-attn-q:focus-visible{{outline:2px solid currentColor;outline-offset:2px}}
.ab-attn-k.ab-attn-strong{{color:var(--ab-attn-strong)}}
.ab-attn-w{{font-size:.7em;opacity:.85}}
"""


# The script's own <div>: its parent while it runs (JupyterLab re-inserts output scripts, so
# two open notebooks may hold views with the same id), else the id (classic Notebook runs
# output scripts with eval, where there is no current script).
_ROOT_OF_SCRIPT = (
    "document.currentScript && document.currentScript.parentElement"
    ' || document.getElementById("{view_id}")'
)

#: How many views this process has rendered (part of each view's element id).
_RENDERED = itertools.count()


class AttentionView:
    r"""Attention weights and their tokens, shown as an interactive view in a notebook.

    Made by :func:`attention_view`, which checks its inputs; Jupyter, JupyterLab and the
    book's build call ``_repr_html_()``, and :meth:`html_page` makes a standalone HTML page.
    The key tokens of query :math:`i` are shaded by the weight of the chosen head, or by the
    mean of the heads of the chosen layer:

    .. math::

        \bar\alpha_{ij} = \frac{1}{H} \sum_{h=1}^{H} \alpha^{(h)}_{ij}.

    Attributes:
        weights: ``(layers, heads, L, S)``, on the CPU, float32, detached.
        tokens: The ``L`` query tokens.
        key_tokens: The ``S`` key tokens.
        layer_names: One name per layer.
        head_names: One name per head.

    Example:
        >>> view = attention_view(torch.tensor([[0.75, 0.25], [0.5, 0.5]]), ["a", "b"])
        >>> view.weights.shape
        torch.Size([1, 1, 2, 2])
        >>> view._repr_html_().startswith('<div class="ab-attn"')
        True
    """

    def __init__(
        self,
        weights: Tensor,
        tokens: Sequence[str],
        key_tokens: Sequence[str],
        layer_names: Sequence[str],
        head_names: Sequence[str],
    ) -> None:
        self.weights = weights
        self.tokens = list(tokens)
        self.key_tokens = list(key_tokens)
        self.layer_names = list(layer_names)
        self.head_names = list(head_names)

    def __repr__(self) -> str:
        layers, heads, L, S = self.weights.shape
        return f"AttentionView(layers={layers}, heads={heads}, L={L}, S={S})"

    def _repr_html_(self) -> str:
        """The view as one self-contained ``<div>``: data, style and script, no URL."""
        scale = max(1.0, float(self.weights.max()))
        data = {
            "tokens": self.tokens,
            "keys": self.key_tokens,
            "layerNames": self.layer_names,
            "headNames": self.head_names,
            "scale": round(scale, 3),
            "weights": _rounded(self.weights),
        }
        # "</script>" or "<!--" in a token would break out of the <script>: escape every "<"
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        payload = payload.replace("<", "\\u003c")
        # the same views in the same order get the same ids, so a page executed twice gives
        # byte-identical output; the counter keeps two renderings of one view apart
        digest = hashlib.sha1(f"{next(_RENDERED)}:{payload}".encode(), usedforsecurity=False)
        view_id = f"ab-attn-{digest.hexdigest()[:12]}"
        tokens = " ".join(escape(token) for token in self.tokens)
        return (
            f'<div class="ab-attn" id="{view_id}">'
            f"<style>{_STYLE.strip()}</style>"
            f'<div class="ab-attn-fallback">{tokens}</div>'
            f'<script type="application/json" class="ab-attn-data">{payload}</script>'
            f"<script>{_script().strip()}({_ROOT_OF_SCRIPT.format(view_id=view_id)});</script>"
            "</div>"
        )

    def html_page(self, *, lang: str = "en") -> str:
        """The view as a standalone HTML page, to write to a file and open in any browser.

        Args:
            lang: The page's language (``"en"``, ``"zh-CN"``, ...): it picks the view's words.

        Returns:
            A whole HTML document; write it with ``encoding="utf-8"``.
        """
        return (
            f'<!DOCTYPE html>\n<html lang="{escape(lang)}">\n<head><meta charset="utf-8">'
            f"<title>attention view</title></head>\n<body>\n{self._repr_html_()}\n</body>\n</html>\n"
        )


def attention_view(
    weights: Tensor,
    tokens: Sequence[str],
    *,
    key_tokens: Sequence[str] | None = None,
    layer_names: Sequence[str] | None = None,
    head_names: Sequence[str] | None = None,
) -> AttentionView:
    r"""An interactive view of attention weights: hover or focus a query to shade its keys.

    Query :math:`i` shades key :math:`j` by the weight :math:`\alpha_{ij}` of the chosen layer
    and head, or by the mean over the :math:`H` heads,
    :math:`\bar\alpha_{ij} = \frac{1}{H}\sum_h \alpha^{(h)}_{ij}`:

    .. math::

        \text{shade}_{ij} = \min\Bigl(1, \frac{\alpha_{ij}}{\max(1, \max \alpha)}\Bigr).

    The view works in the built book with the network cut, in JupyterLab (in a trusted
    notebook, where outputs may run scripts) and in a plain HTML file (:meth:`AttentionView.html_page`).

    Args:
        weights: ``(layers, heads, L, S)``, ``(heads, L, S)`` or ``(L, S)``: non-negative,
            finite weights (rows of softmax weights sum to 1). Any device; detached and
            copied to the CPU.
        tokens: The ``L`` query tokens (rows).
        key_tokens: The ``S`` key tokens (columns); required when ``S != L``, else
            ``tokens``.
        layer_names: One name per layer for the picker; ``None`` gives ``"1"``, ``"2"``, ...
        head_names: One name per head for the picker; ``None`` gives ``"1"``, ``"2"``, ...

    Returns:
        An :class:`AttentionView`; a notebook shows it as the cell's output.

    Raises:
        TypeError: If ``weights`` is not a floating-point tensor, or a list of tokens or
            names is a string or not a sequence.
        ValueError: If ``weights`` does not have 2, 3 or 4 dims, is empty, negative or not
            finite; or ``tokens``, ``key_tokens``, ``layer_names`` or ``head_names`` does not
            have one entry per query, key, layer or head.

    Example:
        >>> weights = torch.softmax(torch.randn(2, 4, 3, 3), dim=-1)  # (layers, heads, L, S)
        >>> view = attention_view(weights, ["the", "cat", "sat"])
        >>> view
        AttentionView(layers=2, heads=4, L=3, S=3)
        >>> "://" in view._repr_html_()  # no URL: nothing to load
        False
    """
    weights = check_float("weights", weights)
    if not 2 <= weights.ndim <= 4:
        msg = (
            "weights must have 4 dims (layers, heads, L, S), 3 dims (heads, L, S) or "
            f"2 dims (L, S); got shape {fmt_shape(weights.shape)}"
        )
        raise ValueError(msg)
    # (L, S) or (heads, L, S) or (layers, heads, L, S) -> (layers, heads, L, S)
    grid = weights.detach().to(device="cpu", dtype=torch.float32)
    grid = grid.reshape((1,) * (4 - grid.ndim) + tuple(grid.shape)).clone()
    layers, heads, L, S = grid.shape
    if grid.numel() == 0:
        msg = f"weights must not be empty; got shape {fmt_shape(weights.shape)}"
        raise ValueError(msg)
    if not bool(torch.isfinite(grid).all()) or bool((grid < 0).any()):
        msg = "weights must be finite and non-negative; got a negative or non-finite entry"
        raise ValueError(msg)
    tokens, key_tokens = _token_names(tokens, key_tokens, L, S, "queries", "keys")
    layer_names = _default_names(layer_names, layers)
    head_names = _default_names(head_names, heads)
    layer_names = _names(
        "layer_names", layer_names, layers, "layers, dim 0 of (layers, heads, L, S)"
    )
    head_names = _names("head_names", head_names, heads, "heads, dim 1 of (layers, heads, L, S)")
    return AttentionView(grid, tokens, key_tokens, layer_names, head_names)


def _default_names(names: Sequence[str] | None, count: int) -> Sequence[str]:
    return [str(i + 1) for i in range(count)] if names is None else names


def _names(name: str, values: object, count: int, meaning: str) -> list[str]:
    """Raise unless ``values`` is a sequence of ``count`` strings (not a string); return it."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        msg = f"{name} must be a sequence of strings; got {type(values).__name__}"
        raise TypeError(msg)
    if len(values) != count:
        msg = f"{name} must have {count} entries ({meaning}); got {len(values)}"
        raise ValueError(msg)
    return [str(value) for value in values]


def _token_names(
    tokens: object, key_tokens: object, L: int, S: int, rows: str, columns: str
) -> tuple[list[str], list[str]]:
    """Check the query and key tokens of ``(L, S)`` weights; keys default to the queries."""
    queries = _names("tokens", tokens, L, f"L, the {rows} of weights")
    if key_tokens is None:
        if S != L:
            msg = f"key_tokens is required when S != L; weights has L = {L} and S = {S}"
            raise ValueError(msg)
        return queries, queries
    return queries, _names("key_tokens", key_tokens, S, f"S, the {columns} of weights")


def _rounded(weights: Tensor) -> list[object]:
    """Nested lists of weights rounded to 3 decimals; whole numbers as ints (``0``, ``1``)."""
    values = torch.round(weights.double(), decimals=3).tolist()

    def compact(item: object) -> object:
        if isinstance(item, list):
            return [compact(sub) for sub in item]
        assert isinstance(item, float)
        return int(item) if item.is_integer() else item

    result = compact(values)
    assert isinstance(result, list)
    return result


def _script() -> str:
    """The package's own script, read from the package data (``attention_view.js``)."""
    return files("attention_book.interpret").joinpath(_SCRIPT_NAME).read_text(encoding="utf-8")
