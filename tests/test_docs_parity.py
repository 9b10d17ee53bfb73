"""The two editions of the book mirror each other page for page, and follow the page rules.

Every page exists in ``docs/en`` and ``docs/zh``; their code cells are identical
(so one execution serves both editions), except for the figure captions in the
cells' ``mystnb: figure:`` options, which are prose; and they define the same section
labels, equation labels, figure names, glue names and exercise labels, so a
reference that resolves in one edition resolves in the other. Figures are the outputs
of their cells (no glued figures, no ``plt.close``), and ``glue`` lives in hidden cells.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).resolve().parent.parent / "docs"
EDITIONS = ("en", "zh")

CODE_CELL = re.compile(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
TARGET = re.compile(r"^\(([\w.:-]+)\)=[ \t]*$", re.MULTILINE)
EQUATION = re.compile(r"^\$\$[ \t]*\(([\w.:-]+)\)[ \t]*$", re.MULTILINE)
NAME_OPTION = re.compile(r"^:name:[ \t]*(\S+)", re.MULTILINE)
EXERCISE_LABEL = re.compile(r"^:label:[ \t]*(\S+)", re.MULTILINE)
GLUE_DIRECTIVE = re.compile(r"\{glue(?::figure|:math)?\}[ \t]+(\S+)")
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)")
FIGURE_NAME = re.compile(r"^    name:[ \t]*(fig-\S+)", re.MULTILINE)
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def pages(edition: str) -> list[str]:
    root = DOCS / edition
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md"))


def read(edition: str, page: str) -> str:
    return (DOCS / edition / page).read_text(encoding="utf-8")


def code_cells(text: str) -> list[str]:
    return [m.group(0).split("\n", 1)[1] for m in CODE_CELL.finditer(text)]


def split_cell(cell: str) -> tuple[dict[str, object], str]:
    """A code cell's options (YAML block or ``:key: value`` lines) and its code."""
    options: dict[str, object] = {}
    if cell.startswith("---\n"):
        head, _, code = cell[4:].partition("\n---\n")
        options = yaml.safe_load(head) or {}
        return options, code
    lines = cell.split("\n")
    while lines and lines[0].startswith(":"):
        key, _, value = lines.pop(0)[1:].partition(":")
        options[key.strip()] = yaml.safe_load(value)
    return options, "\n".join(lines)


def without_caption(options: dict[str, object]) -> dict[str, object]:
    """The options with the figure caption (prose, per edition) left out."""
    mystnb = dict(options.get("mystnb") or {})  # type: ignore[call-overload]
    figure = dict(mystnb.get("figure") or {})
    figure.pop("caption", None)
    if figure:
        mystnb["figure"] = figure
    else:
        mystnb.pop("figure", None)
    return (
        {**options, "mystnb": mystnb}
        if mystnb
        else {k: v for k, v in options.items() if k != "mystnb"}
    )


def tags(options: dict[str, object]) -> list[str]:
    value = options.get("tags") or []
    return list(value) if isinstance(value, list) else [str(value)]


def test_found_pages() -> None:
    assert "index.md" in pages("en")
    assert len(pages("en")) >= 5


def test_every_page_exists_in_both_editions() -> None:
    en, zh = set(pages("en")), set(pages("zh"))
    assert en - zh == set(), f"pages only in docs/en: {sorted(en - zh)}"
    assert zh - en == set(), f"pages only in docs/zh: {sorted(zh - en)}"


@pytest.mark.parametrize("page", pages("en"))
def test_front_matter_identical(page: str) -> None:
    en, zh = (FRONT_MATTER.match(read(e, page)) for e in EDITIONS)
    assert (en and en.group(1)) == (zh and zh.group(1)), f"{page}: jupytext headers differ"


@pytest.mark.parametrize("page", pages("en"))
def test_code_cells_identical(page: str) -> None:
    en, zh = (code_cells(read(e, page)) for e in EDITIONS)
    assert len(en) == len(zh), f"{page}: {len(en)} code cells in en, {len(zh)} in zh"
    for i, (a, b) in enumerate(zip(en, zh, strict=True), start=1):
        (options_en, code_en), (options_zh, code_zh) = split_cell(a), split_cell(b)
        assert code_en == code_zh, f"{page}: code cell {i} differs between en and zh"
        assert without_caption(options_en) == without_caption(options_zh), (
            f"{page}: the options of code cell {i} differ between en and zh (beyond the caption)"
        )


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", pages("en"))
def test_page_rules(page: str, edition: str) -> None:
    """Figures are cell outputs with a caption; glue and print options stay hidden."""
    text = read(edition, page)
    assert "{glue:figure}" not in text, f"{edition}/{page}: figures are cell outputs, not glued"
    for i, cell in enumerate(code_cells(text), start=1):
        options, code = split_cell(cell)
        hidden = "remove-cell" in tags(options)
        where = f"{edition}/{page}, code cell {i}"
        assert "plt.close" not in code, f"{where}: plt.close (the figure is the cell's output)"
        if not hidden:
            for word in ("glue(", "myst_nb", "set_printoptions"):
                assert word not in code, f"{where}: {word!r} belongs in a remove-cell cell"
        mystnb = options.get("mystnb")
        figure = mystnb.get("figure") if isinstance(mystnb, dict) else None
        if isinstance(figure, dict):
            assert figure.get("name"), f"{where}: a figure cell needs a name"
            assert str(figure.get("caption", "")).strip(), f"{where}: a figure needs a caption"
            body = code.rstrip().removesuffix("```").rstrip()  # without the closing fence
            assert body.endswith("plt.show()"), f"{where}: end a figure cell with plt.show()"


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        pytest.param("labels", TARGET, id="labels"),
        pytest.param("equation labels", EQUATION, id="equations"),
        pytest.param("figure/table names", NAME_OPTION, id="names"),
        pytest.param("figure cells", FIGURE_NAME, id="figure-cells"),
        pytest.param("exercise labels", EXERCISE_LABEL, id="exercises"),
        pytest.param("glued figures", GLUE_DIRECTIVE, id="glue-figures"),
        pytest.param("glued values", GLUE_ROLE, id="glue-values"),
    ],
)
@pytest.mark.parametrize("page", pages("en"))
def test_same_labels(page: str, kind: str, pattern: re.Pattern[str]) -> None:
    en, zh = (sorted(pattern.findall(read(e, page))) for e in EDITIONS)
    assert en == zh, (
        f"{page}: {kind} differ: only en {set(en) - set(zh)}, only zh {set(zh) - set(en)}"
    )


def test_patterns_find_what_they_look_for() -> None:
    sample = (
        "(sec-a)=\n# A\n\n$$\nx\n$$ (eq-a)\n\n```{code-cell} ipython3\n:tags: [x]\nprint(1)\n```\n"
        "```{glue:figure} fig-a\n:name: fig-a\n\nCap.\n```\n:::{exercise}\n:label: ex-a\n:::\n"
    )
    assert TARGET.findall(sample) == ["sec-a"]
    assert EQUATION.findall(sample) == ["eq-a"]
    assert code_cells(sample) == [":tags: [x]\nprint(1)\n```"]
    assert NAME_OPTION.findall(sample) == ["fig-a"]
    assert EXERCISE_LABEL.findall(sample) == ["ex-a"]
    assert GLUE_DIRECTIVE.findall(sample) == ["fig-a"]
    assert GLUE_ROLE.findall("{glue:text}`n-val:.3f` and {glue}`m`") == ["n-val", "m"]


def test_cell_options_are_read() -> None:
    figure_cell = (
        "---\nmystnb:\n  figure:\n    name: fig-a\n    caption: |\n      Cap.\n"
        "tags: [hide-input]\n---\nplt.show()\n```"
    )
    options, code = split_cell(figure_cell)
    assert code == "plt.show()\n```"
    assert tags(options) == ["hide-input"]
    assert without_caption(options) == {
        "mystnb": {"figure": {"name": "fig-a"}},
        "tags": ["hide-input"],
    }
    assert FIGURE_NAME.findall(figure_cell) == ["fig-a"]
    assert split_cell(":tags: [remove-cell]\nglue(1)") == ({"tags": ["remove-cell"]}, "glue(1)")
