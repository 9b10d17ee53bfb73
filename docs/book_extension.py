"""The book's own Sphinx hooks, shared by both editions (loaded by ``conf_common``).

- Build folders: one execution cache for both editions, executed notebooks kept apart.
- Downloads: each page's executed notebook, with its outputs, next to its source.
- Glossary: a term is found by its own name, without the translation in parentheses.
- Page context: the link to the same page in the other edition, ``hreflang`` and a
  description for search engines.
- Figures: each edition's copy of a cell's SVG figure, with short coordinates.
- Chinese edition: figure text translated from ``docs/figure-text-zh/`` (and checked),
  wrapped lines joined, exercise solutions
  titled in Chinese word order, the execution table's headers translated, and Sphinx
  9.0's Chinese search script repaired.
"""

from __future__ import annotations

import contextlib
import html
import re
from pathlib import Path
from typing import Any

from conf_common import (
    DOCS,
    EDITIONS,
    PAGE_BUDGET_S,
    REPOSITORY_BRANCH,
    REPOSITORY_URL,
    SITE_URL,
    execution_cache_key,
    hash_code_not_captions,
    set_kernel_environment,
)
from figure_text import Catalogue, compact_svg, leftovers, translate_svg, unique
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The Chinese edition's catalogue of figure text.
FIGURE_TEXT_ZH = DOCS / "figure-text-zh"
#: MyST-NB names a cell's image output by the SHA-256 of its bytes.
_OUTPUT_IMAGE = re.compile(r"^[0-9a-f]{64}(\.(en|zh))?\.(svg|png|jpe?g)$")


def _copy_executed_notebooks(app: Any, exception: Exception | None) -> None:
    """Publish each page's notebook for download: executed, and runnable in plain Jupyter.

    MyST-NB writes a page's notebook with outputs only when it executed it in this build;
    a page served from the cache (every page of the edition built second, and any page
    whose prose alone changed) is written without them. The outputs are merged back from
    the execution cache here, and :func:`notebook_export.export_notebook` turns the MyST
    notebook into one that runs and reads in Jupyter or Colab.
    """
    if exception is not None or app.builder.format != "html":
        return
    import nbformat
    from jupyter_cache import get_cache
    from notebook_export import export_notebook

    config = app.env.mystnb_config
    cache = get_cache(config.execution_cache_path)
    executed = Path(config.output_folder)
    book = _book(app)
    translate = None
    if app.config.edition == "zh":
        catalogue = _catalogue(app)

        def translate(svg: str) -> str:
            return translate_svg(svg, catalogue)[0]

    for docname in sorted(app.env.found_docs):
        source = executed / f"{docname}.ipynb"
        if not source.is_file():
            continue
        notebook = nbformat.read(source, as_version=4)
        # A notebook missing from the cache (a failed execution) is published as written.
        with contextlib.suppress(KeyError):
            _, notebook = cache.merge_match_into_notebook(notebook)
        notebook = export_notebook(
            notebook, book, docname, branch=REPOSITORY_BRANCH, translate_svg=translate
        )
        target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)


def _book(app: Any) -> Any:
    """What the notebook export needs to know of the book: numbers, titles, citations."""
    from notebook_export import Book
    from pybtex.database import parse_file

    env = app.env
    edition = app.config.edition
    citations = {}
    for key, entry in parse_file(str(DOCS / "references.bib")).entries.items():
        people = entry.persons.get("author", [])
        last = [" ".join(person.last_names) for person in people]
        authors = (
            last[0]
            if len(last) == 1
            else (f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al.")
        )
        citations[key] = (authors or key, entry.fields.get("year", ""))
    std = env.domaindata["std"]
    return Book(
        edition=edition,
        title=EDITIONS[edition]["title"],
        site_url=f"{SITE_URL}{edition}/",
        repository=REPOSITORY_URL,
        labels={k: v for k, v in std["labels"].items() if v[1]},
        equations={k: v[0] for k, v in env.domaindata["math"]["objects"].items()},
        numbers=env.toc_fignumbers,
        citations=citations,
        docs=Path(app.srcdir),
    )


def _add_page_context(
    app: Any, pagename: str, _templatename: str, context: dict[str, Any], _doctree: Any
) -> None:
    """Offer the executed notebook for download and link the other edition."""
    if pagename in app.env.found_docs:
        executed = Path(app.env.mystnb_config.output_folder) / f"{pagename}.ipynb"
        if executed.is_file():
            context["ipynb_source"] = f"{pagename}.ipynb"
    edition = EDITIONS[app.config.edition]
    other = edition["other"]
    context["edition"] = app.config.edition
    context["other_edition"] = other
    context["other_edition_label"] = edition["label"]
    context["other_edition_language"] = EDITIONS[other]["language"].replace("_", "-")
    context["other_edition_uri"] = context["pathto"](f"../{other}/{pagename}.html", 1)
    alternate = (
        f'<link rel="alternate" hreflang="{context["other_edition_language"]}" '
        f'href="{context["other_edition_uri"]}">'
    )
    tags = [alternate]
    description = _description(_doctree)
    if description:
        tags.append(f'<meta name="description" content="{html.escape(description)}">')
    context["metatags"] = context.get("metatags", "") + "\n".join(tags) + "\n"


def _description(doctree: Any, limit: int = 160) -> str:
    """The first paragraph of a page, shortened for search engines' snippets."""
    if doctree is None:
        return ""
    from docutils import nodes

    for paragraph in doctree.findall(nodes.paragraph):
        if paragraph.next_node(nodes.Admonition) or paragraph.parent.tagname != "section":
            continue
        text = " ".join(paragraph.astext().split())
        if len(text) < 40:
            continue
        if len(text) <= limit:
            return text
        cut = text[: limit - 1]
        space = cut.rfind(" ")
        # Cut English at a word boundary; Chinese has no spaces to respect.
        return (cut[:space] if space > limit - 25 else cut) + "…"
    return ""


def _place_build_folders(app: Any) -> None:
    """Put the execution cache and the executed notebooks beside the site.

    For an output folder ``<build>/html/<edition>`` the cache goes to
    ``<build>/.jupyter_cache/<hash>`` (one cache for both editions, so the
    second edition executes nothing) and the executed notebooks and their
    images to ``<build>/jupyter_execute/<edition>``. MyST-NB's own choice,
    ``<outdir>/../jupyter_execute``, would sit inside the published site and be
    shared by both editions. Runs right after MyST-NB has made its settings.
    """
    build = Path(app.outdir).resolve().parent.parent
    app.env.mystnb_config = app.env.mystnb_config.copy(
        output_folder=str(build / "jupyter_execute" / app.config.edition),
        execution_cache_path=str(build / ".jupyter_cache" / execution_cache_key()),
    )


def _catalogue(app: Any) -> Catalogue:
    """The figure-text catalogue, loaded once per build."""
    if getattr(app, "_figure_text_zh", None) is None:
        app._figure_text_zh = Catalogue.load(FIGURE_TEXT_ZH)
    return app._figure_text_zh  # type: ignore[no-any-return]


def _image_path(app: Any, image: Any) -> Path:
    """The file behind an image node (MyST-NB's URIs are relative to the source folder)."""
    uri = image["uri"]
    return (
        (Path(app.srcdir) / uri.lstrip("/")).resolve()
        if uri.startswith("/")
        else (Path(app.srcdir) / Path(app.env.current_document.docname).parent / uri).resolve()
    )


def _prepare_figures(app: Any, doctree: Any) -> None:
    """Point each SVG cell output at the edition's copy, ``<hash>.en.svg`` or ``<hash>.zh.svg``.

    The executed figure stays as it is in ``<hash>.svg``. The edition's copy has its
    coordinates shortened (:func:`figure_text.compact_svg`: a lighter page, the same
    picture) and, in the Chinese edition, its text translated from the catalogue, whose files
    are then dependencies of the page: an edited catalogue rebuilds the pages it concerns,
    with no execution.
    """
    from docutils import nodes

    edition = app.config.edition
    catalogue = _catalogue(app) if edition == "zh" else None
    folder = Path(app.env.mystnb_config.output_folder).resolve()
    missing: list[str] = []
    for image in doctree.findall(nodes.image):
        uri = image["uri"]
        path = _image_path(app, image)
        if not _OUTPUT_IMAGE.match(path.name) or path.suffixes != [".svg"]:
            continue
        if folder not in path.parents:
            continue
        svg = path.read_text(encoding="utf-8")
        if catalogue is not None:
            for catalogue_file in catalogue.files:
                app.env.note_dependency(str(catalogue_file))
            svg, untranslated = translate_svg(svg, catalogue)
            missing += untranslated
        svg = compact_svg(svg)
        target = path.with_name(f"{path.stem}.{edition}.svg")
        if not target.is_file() or target.read_text(encoding="utf-8") != svg:
            target.write_text(svg, encoding="utf-8")
        image["uri"] = uri[: -len(".svg")] + f".{edition}.svg"
    if missing:
        logger.info(
            "figure text with no entry in docs/figure-text-zh/: %s",
            ", ".join(repr(text) for text in unique(missing)),
            location=app.env.current_document.docname,
        )


def _check_figures(app: Any, doctree: Any, docname: str) -> None:
    """Fail the Chinese edition if a figure still shows text that the catalogue translates.

    Also flags a cell's PNG output: its text is pixels and cannot be translated (figures
    are SVG: ``%config InlineBackend.figure_formats = ["svg"]`` in the setup cell).
    """
    if app.config.edition != "zh":
        return
    from docutils import nodes

    catalogue = _catalogue(app)
    for image in doctree.findall(nodes.image):
        path = _image_path(app, image)
        if not _OUTPUT_IMAGE.match(path.name) or not path.is_file():
            continue
        if path.suffix != ".svg":
            logger.warning(
                "a cell's figure is a %s: its text cannot be translated (make it SVG)",
                path.suffix,
                location=(docname, image.line),
            )
            continue
        left = leftovers(path.read_text(encoding="utf-8"), catalogue)
        if left:
            logger.warning(
                "English figure text that docs/figure-text-zh/ translates is left in a figure: %s",
                ", ".join(repr(text) for text in unique(left)),
                location=(docname, image.line),
            )


def _short_terms(app: Any, doctree: Any) -> None:
    """Let ``{term}`attention pooling``` find the headword ``attention pooling (注意力汇聚)``.

    A glossary headword names the term and, in parentheses, its name in the other
    language; chapters refer to the term by its own name alone.
    """
    from docutils import nodes

    std = app.env.domains.standard_domain
    docname = app.env.current_document.docname
    for term in doctree.findall(nodes.term):
        text = term.astext()
        short = re.split(r"\s*[（(]", text, maxsplit=1)[0].strip()
        if short != text and short and term["ids"]:
            std._terms.setdefault(short.lower(), (docname, term["ids"][0]))


#: A solution's title as sphinx-exercise writes it in Chinese: "解答 练习 1.1".
_SOLUTION_TITLE_ZH = re.compile(
    r'(<p class="admonition-title">)解答\s*(<a [^>]*>)\s*(练习[^<]*?)\s*(</a>)'
)


def _chinese_solution_titles(
    app: Any, _pagename: str, _templatename: str, context: dict[str, Any], _doctree: Any
) -> None:
    """Write "练习 1.1 解答", the natural Chinese order, for a solution's title."""
    if app.config.edition == "zh" and "body" in context:
        context["body"] = _SOLUTION_TITLE_ZH.sub(r"\1\2\3\4 解答", context["body"])


_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_CJK_LINE_BREAK = re.compile(f"(?<=[{_CJK}])[ \\t]*\\n[ \\t]*(?=[{_CJK}])")


def _join_chinese_lines(app: Any, doctree: Any) -> None:
    """Drop the line breaks that wrap Chinese prose in the sources.

    A browser shows a line break inside a paragraph as a space, which is wrong
    between two Chinese characters; authors may still wrap their lines.
    """
    if app.config.edition != "zh":
        return
    from docutils import nodes

    cjk = re.compile(f"[{_CJK}]")
    for text in list(doctree.findall(nodes.Text)):
        parent = text.parent
        if parent is None or isinstance(
            parent, nodes.literal_block | nodes.math_block | nodes.raw | nodes.literal
        ):
            continue
        content = text.astext()
        joined = _CJK_LINE_BREAK.sub("", content)
        if content.strip() == "" and "\n" in content:
            # MyST gives each soft line break a node of its own.
            index = parent.index(text)
            before = parent[index - 1].astext()[-1:] if index > 0 else ""
            after = parent[index + 1].astext()[:1] if index + 1 < len(parent) else ""
            if cjk.match(before) and cjk.match(after):
                joined = ""
        if joined != content:
            parent.replace(text, nodes.Text(joined))


#: Headers of MyST-NB's execution-statistics table, which it writes in English only.
_EXEC_TABLE_HEADERS_ZH = {
    "Document": "页面",
    "Modified": "执行时间",
    "Method": "方式",
    "Run Time (s)": "耗时（秒）",
    "Status": "状态",
}


def _translate_exec_table(app: Any, doctree: Any, _docname: str) -> None:
    """Give the execution-statistics table Chinese headers in the Chinese edition."""
    if app.config.edition != "zh":
        return
    from docutils import nodes

    for head in doctree.findall(nodes.thead):
        for paragraph in head.findall(nodes.paragraph):
            text = paragraph.astext()
            if text in _EXEC_TABLE_HEADERS_ZH:
                paragraph.replace(paragraph[0], nodes.Text(_EXEC_TABLE_HEADERS_ZH[text]))


def _continue_chapter_numbers() -> None:
    """Number the chapters of every part in one sequence: Part II starts at 6, not at 1.

    The book's parts are numbered toctrees of the landing page (each with its own caption
    in the sidebar), and Sphinx starts every numbered toctree at 1, so Part II's chapters
    would repeat Part I's numbers and share their figure and exercise numbers. After Sphinx
    has numbered the sections, each part's chapters are moved up by the number of chapters
    before them: section numbers, the numbers in the tables of contents and, since figure
    numbers are derived from them afterwards, figures, equations and exercises too.
    """
    from docutils import nodes
    from sphinx import addnodes
    from sphinx.environment.collectors.toctree import TocTreeCollector

    original = TocTreeCollector.assign_section_numbers
    if getattr(original, "continues_across_parts", False):
        return

    def shift(number: Any, offset: int) -> Any:
        return (number[0] + offset, *number[1:]) if number else number

    def assign_section_numbers(self: Any, env: Any) -> list[str]:
        before = env.toc_secnumbers  # Sphinx replaces the dict; this one keeps the old numbers
        original(self, env)
        for docname in env.numbered_toctrees:
            offset = 0
            for toctree in env.get_doctree(docname).findall(addnodes.toctree):
                if not toctree.get("numbered"):
                    continue
                refs = [ref for _title, ref in toctree["entries"] if ref in env.toc_secnumbers]
                for ref in refs if offset else []:
                    numbers = env.toc_secnumbers[ref]
                    env.toc_secnumbers[ref] = {a: shift(n, offset) for a, n in numbers.items()}
                    for node in env.tocs[ref].findall(nodes.reference):
                        if node.get("secnumber"):
                            node["secnumber"] = list(shift(node["secnumber"], offset))
                    title = env.titles.get(ref)
                    if title is not None and title.get("secnumber"):
                        title["secnumber"] = list(shift(title["secnumber"], offset))
                offset += len(refs)
        # rewrite only the pages whose numbers changed (as Sphinx does), not every later part
        return [ref for ref, numbers in env.toc_secnumbers.items() if numbers != before.get(ref)]

    assign_section_numbers.continues_across_parts = True  # type: ignore[attr-defined]
    TocTreeCollector.assign_section_numbers = assign_section_numbers  # type: ignore[method-assign]


def _fix_chinese_stemmer() -> None:
    """Work around Sphinx 9.0's Chinese search script.

    The Chinese index stems Latin words with the English stemmer, but Sphinx
    writes ``window.Stemmer = ChineseStemmer`` (named after the language), an
    undefined name that breaks every page of the Chinese edition with a
    console error. Naming the language's stemmer "English" makes the line
    ``window.Stemmer = EnglishStemmer``, which is what the index was built with.
    """
    from sphinx import search
    from sphinx.search.zh import SearchChinese

    class ChineseWithEnglishStemmer(SearchChinese):
        language_name = "English"

    search.languages["zh"] = ChineseWithEnglishStemmer


def _check_execution_budget(app: Any, exception: Exception | None) -> None:
    """Print each page's execution time; a page over the budget fails the build, named."""
    if exception is not None:
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    times = {}
    for docname in sorted(app.env.found_docs):
        data = NbMetadataCollector.get_exec_data(app.env, docname) or {}
        if data.get("runtime") is not None:
            times[docname] = float(data["runtime"])
    if not times:
        return
    listing = ", ".join(f"{doc} {seconds:.1f} s" for doc, seconds in times.items())
    logger.info("execution time of each page (budget %.0f s): %s", PAGE_BUDGET_S, listing)
    for docname, seconds in times.items():
        if seconds > PAGE_BUDGET_S:
            logger.warning(
                "executing this page took %.1f s, over the budget of %.0f s a page "
                "(PAGE_BUDGET_S in docs/conf_common.py)",
                seconds,
                PAGE_BUDGET_S,
                location=docname,
            )


def setup(app: Any) -> dict[str, Any]:
    """Register the hooks (Sphinx calls this when it loads the extension)."""
    _fix_chinese_stemmer()
    _continue_chapter_numbers()
    app.add_config_value("edition", "en", "env", types=[str])
    app.connect("builder-inited", _place_build_folders, priority=600)
    app.connect("doctree-read", _prepare_figures, priority=400)  # before images are collected
    app.connect("doctree-read", _join_chinese_lines)
    app.connect("doctree-read", _short_terms)
    app.connect("doctree-resolved", _check_figures)
    app.connect("html-page-context", _chinese_solution_titles)
    app.connect("doctree-resolved", _translate_exec_table)
    app.connect("html-page-context", _add_page_context, priority=400)
    app.connect("build-finished", _copy_executed_notebooks)
    app.connect("build-finished", _check_execution_budget)
    # The kernels that execute the pages inherit this (figure style, SVG date, threads).
    set_kernel_environment()
    hash_code_not_captions()  # both editions share one cache entry per page
    # env_version: bump it when a hook changes what the environment stores (doctrees are re-read)
    return {"env_version": 2, "parallel_read_safe": True, "parallel_write_safe": True}
