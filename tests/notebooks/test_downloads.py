"""Every downloadable notebook of one edition runs in plain Jupyter and shows its figures.

Run by ``nox -s notebooks`` after ``nox -s docs``: the session's kernel has the package
(with torch and matplotlib) and nothing of the book's build (no MyST-NB, no Sphinx). Each
``.ipynb`` the site offers for download is executed from top to bottom with ``nbclient``,
as Jupyter or Colab would run it; every figure cell must display an image, and the
Markdown must read without MyST (no roles, no directive fences left).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

SITE = Path(os.environ.get("ATTENTION_BOOK_SITE", "docs/_build/html"))
EDITION = os.environ.get("ATTENTION_BOOK_EDITION", "en")
SOURCES = SITE / EDITION / "_sources"
MYST_ROLE = re.compile(r"\{[\w:.-]+\}`")
MYST_FENCE = re.compile(r"^(:{3,}|`{3,})\{[\w:-]+\}", re.MULTILINE)
BUILD_ONLY = ("myst_nb", "sphinx", "jupyter_cache", "glue(")
IMAGES = ("image/png", "image/svg+xml")


def downloads() -> list[str]:
    return sorted(p.relative_to(SOURCES).as_posix() for p in SOURCES.rglob("*.ipynb"))


def source(cell: Any) -> str:
    return "".join(cell.source)


def is_figure_cell(cell: Any) -> bool:
    options = cell.get("metadata", {}).get("mystnb", {})
    return isinstance(options, dict) and "figure" in options


def shows_image(cell: Any) -> bool:
    return any(any(mime in output.get("data", {}) for mime in IMAGES) for output in cell.outputs)


def test_the_site_offers_downloads() -> None:
    assert SOURCES.is_dir(), f"{SOURCES} is missing: run `nox -s docs` first"
    assert len(downloads()) >= 5


@pytest.mark.parametrize("name", downloads())
def test_notebook_reads_without_myst(name: str) -> None:
    notebook = nbformat.read(SOURCES / name, as_version=4)
    code = [source(c) for c in notebook.cells if c.cell_type == "code"]
    if code:  # a page with code starts by installing the package
        assert "%pip install" in code[0]
        assert re.search(r"attention_book(\[\w+\])? @ git\+", code[0]), code[0]
    for text in code:
        for word in BUILD_ONLY:
            assert word not in text, f"{name}: a cell needs {word!r}, which only the build has"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = source(cell)
            assert not MYST_ROLE.search(text), f"{name}: MyST role left: {text[:200]!r}"
            assert not MYST_FENCE.search(text), f"{name}: MyST directive left: {text[:200]!r}"
            assert not re.search(r"^\([\w.:-]+\)=", text, re.MULTILINE), f"{name}: MyST target"


@pytest.mark.parametrize("name", downloads())
def test_notebook_runs_in_a_plain_kernel_and_shows_its_figures(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = nbformat.read(SOURCES / name, as_version=4)
    for cell in notebook.cells:  # run from scratch, as a reader would
        if cell.cell_type == "code":
            cell.outputs = []
    # a reader's Jupyter: matplotlib's own defaults, not the book's matplotlibrc
    monkeypatch.delenv("MATPLOTLIBRC", raising=False)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    figures = [c for c in notebook.cells if c.cell_type == "code" and is_figure_cell(c)]
    for cell in figures:
        assert shows_image(cell), f"{name}: figure cell shows no image:\n{source(cell)[:300]}"
    for cell in notebook.cells:
        if cell.cell_type == "code" and "plt.show()" in source(cell):
            assert shows_image(cell), f"{name}: plt.show() showed nothing:\n{source(cell)[:300]}"
