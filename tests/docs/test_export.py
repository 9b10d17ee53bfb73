"""The build's figure translation and the plain-Jupyter notebook export (docs/*.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))

from figure_text import Catalogue, compact_svg, leftovers, translate_svg
from notebook_export import (
    Book,
    MarkdownExport,
    _without_glue,
    export_notebook,
    install_cell_source,
    page_needs,
)

SVG = (
    '<svg><text style="a" x="1">keys</text><text x="2">scale = 0.25</text>'
    '<text x="3">0.5</text><text x="4">h &amp; w</text><text x="5">untranslated</text></svg>'
)


@pytest.fixture
def catalogue() -> Catalogue:
    c = Catalogue()
    c.add("keys", "键")
    c.add("scale = {}", "缩放 = {}")
    c.add("h & w", "h 与 w")
    return c


def test_svg_text_is_translated_line_by_line(catalogue: Catalogue) -> None:
    svg, missing = translate_svg(SVG, catalogue)
    assert '<text style="a" x="1">键</text>' in svg
    assert ">缩放 = 0.25</text>" in svg
    assert ">h 与 w</text>" in svg
    assert ">0.5</text>" in svg  # numbers need no entry
    assert missing == ["untranslated"]  # reported, left as it is
    assert leftovers(svg, catalogue) == []
    assert leftovers(SVG, catalogue) == ["keys", "scale = 0.25", "h & w"]


def test_the_book_catalogue_loads_and_rejects_conflicts(tmp_path: Path) -> None:
    book = Catalogue.load(DOCS / "figure-text-zh")
    assert book.translate("keys") == "键"
    (tmp_path / "a.yaml").write_text("keys: 键\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("keys: 钥匙\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b.yaml: 'keys' is translated as '钥匙'"):
        Catalogue.load(tmp_path)


def test_compact_svg_shortens_coordinates_only() -> None:
    svg = (
        '<use xlink:href="#m06ef6c29eb" x="68.349567" y="-83.111946" style="fill-opacity: 0.4"/>'
        '<text x="1.234567">0.123456 and 12.345678</text>'
        '<path d="M 0.500000 12.123456" transform="scale(0.015625 -0.015625)"/>'
    )
    assert compact_svg(svg) == (
        '<use xlink:href="#m06ef6c29eb" x="68.34" y="-83.11" style="fill-opacity: 0.4"/>'
        '<text x="1.23">0.123456 and 12.345678</text>'
        '<path d="M 0.500000 12.12" transform="scale(0.015625 -0.015625)"/>'
    )


@pytest.fixture
def book() -> Book:
    return Book(
        edition="en",
        title="Attention Mechanisms",
        site_url="https://example.org/en/",
        repository="https://github.com/o/r",
        labels={"sec-a": ("part/a", "sec-a", "Section A"), "fig-x": ("part/a", "fig-x", "")},
        equations={"eq-e": "part/a"},
        numbers={
            "part/a": {
                "displaymath": {"equation-eq-e": (3, 2)},
                "figure": {"fig-x": (3, 1)},
                "exercise": {"ex-1": (3, 4)},
            }
        },
        citations={"vaswani2017": ("Vaswani et al.", "2017")},
        docs=DOCS / "en",
    )


def test_markdown_loses_its_myst(book: Book) -> None:
    export = MarkdownExport(book, "part/a", {"val": "0.12345", "name": "'text'"})
    text = (
        "(sec-a)=\n# A\n\nSee {eq}`eq-e`, {ref}`sec-a`, {numref}`fig-x`, {cite:p}`vaswani2017`, "
        "{cite:t}`vaswani2017`, {glue:text}`val:.2f`, {glue}`name`, {term}`keys <key>`, "
        "{func}`~attention_book.masked_softmax`.\n\n$$\nx = 1\n$$ (eq-e)\n\n"
        ":::{exercise}\n:label: ex-1\n\nDo it.\n:::\n\n::::{solution-start} ex-1\n:class: dropdown\n"
        "::::\n\n:::{note}\nCareful.\n:::\n"
    )
    out = export.convert(text)
    assert "(sec-a)=" not in out
    assert "See (3.2), [Section A](https://example.org/en/part/a.html#sec-a)" in out
    assert "[Figure 3.1](https://example.org/en/part/a.html#fig-x)" in out
    assert "(Vaswani et al., 2017), Vaswani et al. (2017), 0.12, text, keys," in out
    assert "[`masked_softmax()`](https://example.org/en/reference/api.html#attention_book." in out
    assert "$$\nx = 1\n\\tag{3.2}\n$$" in out
    assert "**Exercise 3.4.** Do it." in out
    assert "**Solution to Exercise 3.4**" in out
    assert "> **Note.**\n>\n> Careful." in out


def test_literalinclude_becomes_the_source(book: Book) -> None:
    export = MarkdownExport(book, "foundations/x", {})
    out = export.convert(
        "```{literalinclude} ../../../attention_book/masking.py\n:pyobject: masked_softmax\n```"
    )
    assert out.startswith("```python\ndef masked_softmax(")
    assert out.endswith("```")


def test_hidden_cells_lose_glue_only() -> None:
    assert _without_glue("%matplotlib inline\nfrom myst_nb import glue") == "%matplotlib inline"
    assert _without_glue('from myst_nb import glue\nglue("a", 1,\n     display=False)') is None
    assert _without_glue('x = 1\nfor k in "ab":\n    glue(k, x)') == "x = 1"
    assert _without_glue("y = 2") == "y = 2"
    mixed = "for k, v in d.items():\n    a = v[0]\n    glue(k, a, display=False)"
    assert _without_glue("from myst_nb import glue\n" + mixed) is None
    assert _without_glue(mixed) is None


def test_install_cell_brings_what_the_page_imports() -> None:
    plain = install_cell_source("https://github.com/o/r", "main")
    assert '%pip install --quiet "attention_book @ git+https://github.com/o/r@main"' in plain
    assert "['attention_book']" in plain
    code = "from captum.attr import IntegratedGradients\nflow = attention_flow(weights)"
    needs = page_needs(code)
    assert needs == ["captum", "networkx"]
    cell = install_cell_source("https://github.com/o/r", "main", needs)
    assert '"attention_book[interpret] @ git+https://github.com/o/r@main" captum' in cell
    assert "['attention_book', 'captum', 'networkx']" in cell
    assert page_needs("import networkx as nx") == ["networkx"]
    assert page_needs("x = captumish + 1") == []


def test_export_adds_install_cell_and_captions(book: Book) -> None:
    notebook = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_code_cell("plt.show()")
    figure.metadata["mystnb"] = {"figure": {"name": "fig-x", "caption": "A {eq}`eq-e` plot."}}
    hidden = nbformat.v4.new_code_cell('from myst_nb import glue\nglue("v", 1)')
    hidden.metadata["tags"] = ["remove-cell"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# A"), hidden, figure]
    out = export_notebook(notebook, book, "part/a")
    sources = ["".join(c.source) for c in out.cells]
    assert sources[0] == "# A"
    assert "https://example.org/en/part/a.html" in sources[1]
    assert '%pip install --quiet "attention_book @ git+https://github.com/o/r@main"' in sources[2]
    assert sources[3] == "plt.show()"
    assert sources[4] == "*Figure 3.1: A (3.2) plot.*"
    assert len(notebook.cells) == 3  # the input is left alone
    nbformat.validate(out)
