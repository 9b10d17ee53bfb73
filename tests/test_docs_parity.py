"""The two editions of the book mirror each other page for page.

Every page exists in ``docs/en`` and ``docs/zh``; their code cells are identical
(so one execution serves both editions); and they define the same section
labels, equation labels, figure names, glue names and exercise labels, so a
reference that resolves in one edition resolves in the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
EDITIONS = ("en", "zh")

CODE_CELL = re.compile(r"^(`{3,})\{code-cell\}[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
TARGET = re.compile(r"^\(([\w.:-]+)\)=[ \t]*$", re.MULTILINE)
EQUATION = re.compile(r"^\$\$[ \t]*\(([\w.:-]+)\)[ \t]*$", re.MULTILINE)
NAME_OPTION = re.compile(r"^:name:[ \t]*(\S+)", re.MULTILINE)
EXERCISE_LABEL = re.compile(r"^:label:[ \t]*(\S+)", re.MULTILINE)
GLUE_DIRECTIVE = re.compile(r"\{glue(?::figure|:math)?\}[ \t]+(\S+)")
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)")
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def pages(edition: str) -> list[str]:
    root = DOCS / edition
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md"))


def read(edition: str, page: str) -> str:
    return (DOCS / edition / page).read_text(encoding="utf-8")


def code_cells(text: str) -> list[str]:
    return [m.group(0).split("\n", 1)[1] for m in CODE_CELL.finditer(text)]


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
        assert a == b, f"{page}: code cell {i} differs between en and zh"


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        pytest.param("labels", TARGET, id="labels"),
        pytest.param("equation labels", EQUATION, id="equations"),
        pytest.param("figure/table names", NAME_OPTION, id="names"),
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
