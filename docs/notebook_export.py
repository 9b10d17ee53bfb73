"""The downloadable notebook of a page: runs in plain Jupyter or Colab, reads without MyST.

A page's executed notebook is MyST: roles such as ``{eq}`` or ``{cite:p}``, directives
(exercises, admonitions, ``literalinclude``), glue calls that need ``myst_nb``, and captions
held in cell options. :func:`export_notebook` turns it into an ordinary notebook:

- a first code cell installs the package from the book's repository (and does nothing
  where ``attention_book`` is already installed);
- hidden bookkeeping cells lose their ``glue`` calls and ``myst_nb`` imports (and go when
  nothing is left);
- Markdown gets numbers, titles and links instead of roles (equation, figure and exercise
  numbers as in the book; section links to the hosted page; glued numbers as their values;
  citations as "Author (year)"), exercises and admonitions as bold headings and quotes, and
  ``literalinclude`` as the source it includes;
- each figure cell is followed by its caption;
- in the Chinese edition, the figures' text is translated as on the site.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Words of the exported text, per edition.
WORDS = {
    "en": {
        "figure": "Figure",
        "exercise": "Exercise",
        "solution": "Solution to Exercise {number}",
        "note": (
            "This notebook is a page of *{title}* ({url}). Its first code cell installs the "
            "book's package, `attention_book`, from the book's repository ({repository}) "
            "where it is not installed yet; then run the cells in order. JupyterLab and Jupyter "
            "Notebook show the saved figures and interactive views of a downloaded notebook "
            "only once it is trusted: run its cells, or choose *Trust Notebook* in the command "
            "palette."
        ),
        "install": "install the book's package, unless it is installed already",
    },
    "zh": {
        "figure": "图",
        "exercise": "练习",
        "solution": "练习 {number} 解答",
        "note": (
            "本笔记本是《{title}》（{url}）中的一页。第一个代码单元从本书的代码仓库"
            "（{repository}）安装本书的包 `attention_book`（已安装时跳过），然后依次运行各单元即可。"
            "JupyterLab 和 Jupyter Notebook 只有在笔记本受信任之后，才会显示其中保存的图和交互视图："
            "运行各单元即可，也可以在命令面板中选择 *Trust Notebook*。"
        ),
        "install": "install the book's package, unless it is installed already",
    },
}

ADMONITIONS = {
    "en": {"note": "Note", "tip": "Tip", "important": "Important", "warning": "Warning",
           "seealso": "See also", "hint": "Hint", "caution": "Caution", "attention": "Attention"},
    "zh": {"note": "注", "tip": "提示", "important": "重要", "warning": "警告",
           "seealso": "另见", "hint": "提示", "caution": "注意", "attention": "注意"},
}  # fmt: skip


@dataclass
class Book:
    """What the export needs to know about the whole book (read from Sphinx's environment).

    Attributes:
        edition: ``"en"`` or ``"zh"``.
        title: The book's title in that edition.
        site_url: Address of the edition's hosted pages, ending in ``/``.
        repository: Address of the book's repository.
        labels: Section label -> (docname, anchor, title).
        equations: Equation label -> docname.
        numbers: Docname -> kind (``figure``, ``displaymath``, ``exercise``) -> id -> number.
        citations: Bib key -> (authors, year).
        docs: Folder of the edition's sources (for ``literalinclude``).
    """

    edition: str
    title: str
    site_url: str
    repository: str
    labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    equations: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, dict[str, dict[str, tuple[int, ...]]]] = field(default_factory=dict)
    citations: dict[str, tuple[str, str]] = field(default_factory=dict)
    docs: Path = Path()

    def url(self, docname: str, anchor: str = "") -> str:
        """The hosted address of a page (and an anchor in it)."""
        return f"{self.site_url}{docname}.html" + (f"#{anchor}" if anchor else "")

    def number(self, docname: str, kind: str, ident: str) -> str:
        """A figure, equation or exercise number as the book prints it, e.g. ``3.2``."""
        found = self.numbers.get(docname, {}).get(kind, {}).get(ident)
        return ".".join(str(n) for n in found) if found else "?"


ROLE = re.compile(r"\{([\w:.-]+)\}`([^`]*)`")
TARGET_LINE = re.compile(r"^\([\w.:-]+\)=[ \t]*\n", re.MULTILINE)
LABELLED_MATH = re.compile(r"^\$\$(.*?)^\$\$[ \t]*\(([\w.:-]+)\)[ \t]*$", re.MULTILINE | re.DOTALL)
DIRECTIVE = re.compile(
    r"^(?P<fence>:{3,}|`{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>[^\n]*)\n"
    r"(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
OPTION = re.compile(r"^:([\w-]+):[ \t]*(.*)$")
EXPLICIT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.DOTALL)


def _split_options(body: str) -> tuple[dict[str, str], str]:
    """A directive's ``:key: value`` lines and the rest of its body."""
    options: dict[str, str] = {}
    lines = body.split("\n")
    while lines and OPTION.match(lines[0]):
        match = OPTION.match(lines.pop(0))
        assert match is not None
        options[match.group(1)] = match.group(2).strip()
    return options, "\n".join(lines).strip("\n")


def _pyobject(path: Path, name: str) -> str:
    """The source of a function, class or ``Class.method`` in a Python file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    scope: list[ast.stmt] = ast.parse(source).body
    node: ast.AST | None = None
    for part in name.split("."):
        node = next(
            (n for n in scope if getattr(n, "name", None) == part and hasattr(n, "body")), None
        )
        if node is None:
            return f"# {name} not found in {path.name}"
        scope = node.body  # type: ignore[attr-defined]
    assert node is not None
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    body = lines[start - 1 : node.end_lineno]
    indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
    return "\n".join(line[indent:] for line in body)


class MarkdownExport:
    """Turns one page's MyST Markdown into Markdown that Jupyter renders."""

    def __init__(self, book: Book, docname: str, glue: dict[str, str]) -> None:
        self.book = book
        self.docname = docname
        self.glue = glue
        self.words = WORDS[book.edition]

    def convert(self, text: str) -> str:
        """The Markdown of one cell, without MyST."""
        text = TARGET_LINE.sub("", text)
        text = LABELLED_MATH.sub(self._math, text)
        text = DIRECTIVE.sub(self._directive, text)
        return ROLE.sub(self._role, text).strip("\n")

    def _math(self, match: re.Match[str]) -> str:
        number = self.book.number(self.docname, "displaymath", f"equation-{match.group(2)}")
        return f"$${match.group(1).rstrip()}\n\\tag{{{number}}}\n$$"

    def _directive(self, match: re.Match[str]) -> str:
        name, arg = match.group("name"), match.group("arg").strip()
        options, body = _split_options(match.group("body"))
        body = DIRECTIVE.sub(self._directive, body)  # nested directives
        if name == "exercise":
            number = self.book.number(self.docname, "exercise", options.get("label", ""))
            return f"**{self.words['exercise']} {number}.** {body}"
        if name == "solution-start":
            number = self.book.number(self.docname, "exercise", arg)
            return f"**{self.words['solution'].format(number=number)}**"
        if name == "solution-end":
            return ""
        if name == "literalinclude":
            path = (self.book.docs / Path(self.docname).parent / arg).resolve()
            code = (
                _pyobject(path, options["pyobject"])
                if "pyobject" in options
                else (path.read_text(encoding="utf-8"))
            )
            return f"```python\n{code}\n```"
        if name in ("code-block", "code"):
            return f"```{arg}\n{body}\n```"
        if name in ("math",):
            return f"$$\n{body}\n$$"
        titles = ADMONITIONS[self.book.edition]
        if name in titles or name == "admonition":
            title = arg if name == "admonition" else titles[name]
            quoted = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
            return f"> **{title}.**\n>\n{quoted}"
        return body

    def _role(self, match: re.Match[str]) -> str:
        role, content = match.group(1), match.group(2)
        explicit = EXPLICIT.match(content)
        text, target = (explicit.group(1), explicit.group(2)) if explicit else ("", content)
        if role == "eq":
            return f"({self._equation(target)})"
        if role in ("ref", "numref"):
            return self._reference(role, text, target)
        if role == "doc":
            docname = str((Path(self.docname).parent / target).as_posix())
            return f"[{text or target}]({self.book.url(docname)})"
        if role.startswith("cite"):
            return self._cite(role, target)
        if role in ("glue", "glue:text"):
            name, _, spec = target.partition(":")
            return self._glued(name, spec)
        if role == "math":
            return f"${target}$"
        if role in ("func", "class", "meth", "attr", "mod", "data", "obj") or role.startswith(
            "py:"
        ):
            name = target.lstrip("~")
            shown = name.rsplit(".", 1)[-1] if target.startswith("~") else name
            suffix = "()" if role.endswith(("func", "meth")) else ""
            api = self.book.url("reference/api", name)
            return f"[`{text or shown + suffix}`]({api})"
        return text or target  # term, abbr and other roles: their text

    def _equation(self, label: str) -> str:
        docname = self.book.equations.get(label, self.docname)
        return self.book.number(docname, "displaymath", f"equation-{label}")

    def _reference(self, role: str, text: str, target: str) -> str:
        if target not in self.book.labels:
            return text or target
        docname, anchor, title = self.book.labels[target]
        number = self.book.number(docname, "figure", anchor)
        if number == "?":
            number = self.book.number(docname, "exercise", anchor)
        if role == "numref":
            shown = (
                (text or f"{self.words['figure']} %s")
                .replace("%s", number)
                .replace("{number}", number)
            )
        else:
            shown = text or title
        return f"[{shown}]({self.book.url(docname, anchor)})"

    def _cite(self, role: str, keys: str) -> str:
        found = [self.book.citations.get(k.strip(), (k.strip(), "")) for k in keys.split(",")]
        if role.endswith(":t"):
            return "; ".join(f"{authors} ({year})" for authors, year in found)
        return "(" + "; ".join(f"{authors}, {year}" for authors, year in found) + ")"

    def _glued(self, name: str, spec: str) -> str:
        value = self.glue.get(name)
        if value is None:
            return name
        if spec:
            try:
                return format(ast.literal_eval(value), spec)
            except (ValueError, SyntaxError, TypeError):
                return value
        return value.strip("'\"")


def _glued_values(notebook: Any) -> dict[str, str]:
    """``glue`` name -> the text of the value, from the executed notebook's outputs."""
    values: dict[str, str] = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
            if text is not None:
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def _is_bookkeeping(statement: ast.stmt) -> bool:
    """A ``glue(...)`` call or an import of ``myst_nb``: needed by the build only."""
    if isinstance(statement, ast.ImportFrom):
        return (statement.module or "").startswith("myst_nb")
    if isinstance(statement, ast.Import):
        return any(alias.name.startswith("myst_nb") for alias in statement.names)
    if isinstance(statement, ast.For | ast.If | ast.With) and not getattr(statement, "orelse", []):
        return all(_is_bookkeeping(inner) for inner in statement.body)  # a loop of glue calls
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id == "glue"
    )


def _without_glue(source: str) -> str | None:
    """A hidden cell without its glue calls and ``myst_nb`` imports; None if nothing is left.

    A hidden cell that still calls ``glue`` inside other code is left out whole: hidden
    cells are bookkeeping, and what such a cell computes only feeds the prose.
    """
    lines = source.splitlines()
    # IPython magics are not Python: hide them from the parser, keep them in the cell
    masked = ["#" + line if line.lstrip().startswith(("%", "!")) else line for line in lines]
    try:
        tree = ast.parse("\n".join(masked))
    except SyntaxError:
        return source
    dropped: set[int] = set()
    for statement in tree.body:
        if _is_bookkeeping(statement):
            dropped.update(range(statement.lineno, (statement.end_lineno or 0) + 1))
    if not dropped:
        return None if "glue(" in source else source
    kept = [line for number, line in enumerate(lines, start=1) if number not in dropped]
    if all(not line.strip() or line.lstrip().startswith("#") for line in kept):
        return None
    result = "\n".join(kept).strip("\n")
    # glue still called inside other code (a loop that also unpacks its values): the whole
    # hidden cell only feeds the prose, so the download leaves it out
    return None if "glue(" in result else result


#: Packages a page may import beyond the package's own dependencies: import name ->
#: what pip installs (``attention_flow`` needs networkx, which the ``interpret`` extra brings).
OPTIONAL_IMPORTS = {"captum": "captum", "networkx": "networkx"}


def page_needs(code: str) -> list[str]:
    """The optional packages a page's code uses (sorted import names)."""
    needed = {name for name in OPTIONAL_IMPORTS if re.search(rf"\b(import|from) {name}\b", code)}
    if "attention_flow" in code:
        needed.add("networkx")
    return sorted(needed)


def install_cell_source(repository: str, branch: str, needs: Sequence[str] = ()) -> str:
    """The first code cell of every download: install what is missing, the package first."""
    modules = ["attention_book", *needs]
    extra = "[interpret]" if "networkx" in needs else ""
    others = "".join(f" {OPTIONAL_IMPORTS[name]}" for name in needs if name != "networkx")
    return (
        "# Install the book's package (from its repository) unless it is installed already.\n"
        "import importlib.util\n\n"
        f"if any(importlib.util.find_spec(name) is None for name in {modules!r}):\n"
        f'    %pip install --quiet "attention_book{extra} @ git+{repository}@{branch}"{others}'
    )


def export_notebook(
    notebook: Any,
    book: Book,
    docname: str,
    *,
    branch: str = "main",
    translate_svg: Callable[[str], str] | None = None,
) -> Any:
    """The downloadable version of one executed page (``nbformat`` notebook, not modified)."""
    import copy

    import nbformat

    notebook = copy.deepcopy(notebook)
    markdown = MarkdownExport(book, docname, _glued_values(notebook))
    words = WORDS[book.edition]
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = markdown.convert("".join(cell.source))
            if text.strip():
                cell.source = text
                cells.append(cell)
            continue
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "remove-cell" in tags:
            source = _without_glue("".join(cell.source))
            if source is None:
                continue
            if source != "".join(cell.source):
                cell.source = source
                cell.outputs = [o for o in cell.outputs if "scrapbook" not in o.get("metadata", {})]
        cells.append(cell)
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if isinstance(figure, dict) and figure.get("caption"):
            number = book.number(docname, "figure", str(figure.get("name", "")))
            caption = markdown.convert(str(figure["caption"])).replace("\n", " ")
            cells.append(nbformat.v4.new_markdown_cell(f"*{words['figure']} {number}: {caption}*"))
    note = nbformat.v4.new_markdown_cell(
        words["note"].format(title=book.title, url=book.url(docname), repository=book.repository)
    )
    code = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
    install = nbformat.v4.new_code_cell(
        install_cell_source(book.repository, branch, page_needs(code))
    )
    first = 1 if cells and cells[0].cell_type == "markdown" else 0
    notebook.cells = [*cells[:first], note, install, *cells[first:]]
    if translate_svg is not None:
        from figure_text import translate_notebook_outputs

        translate_notebook_outputs(notebook, translate_svg)
    return notebook
