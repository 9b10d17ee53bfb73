"""Sphinx settings shared by both editions of the book.

Each edition's ``conf.py`` (``docs/en/conf.py``, ``docs/zh/conf.py``) sets its
``language`` and then calls :func:`configure`, which fills in everything else.
Keeping the settings here means the two editions can never drift apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

#: Where the hosted repository lives; the "edit this page" and "report an
#: issue" links are derived from it. Change it here and nowhere else.
REPOSITORY_URL = "https://github.com/attention-book/attention_book"
REPOSITORY_BRANCH = "main"
#: Where the site is published (the sitemap's absolute addresses start here).
SITE_URL = "https://attention-book.github.io/attention_book/"

EDITIONS = {
    "en": {
        "language": "en",
        "title": "Attention Mechanisms",
        "other": "zh",
        "label": "中文",
        "show": "Click to show",
        "hide": "Click to hide",
        "show_code": "Show code cell {type}",
        "hide_code": "Hide code cell {type}",
    },
    "zh": {
        "language": "zh_CN",
        "title": "注意力机制",
        "other": "en",
        "label": "English",
        "show": "点击展开",
        "hide": "点击收起",
        "show_code": "显示代码",
        "hide_code": "隐藏代码",
    },
}


def execution_cache_key() -> str:
    """Hash of the package sources, the constraints file and the figures' matplotlibrc.

    MyST-NB's cache keys on the code cells only, so a change to the library the
    cells import would otherwise serve stale outputs. Naming the cache folder
    by this hash makes any change to ``attention_book/`` or to the pinned
    toolchain start from an empty cache.
    """
    digest = hashlib.sha256()
    files = sorted((ROOT / "attention_book").rglob("*.py"))
    files += [ROOT / "constraints.txt", DOCS / "matplotlibrc"]
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _copy_executed_notebooks(app: Any, exception: Exception | None) -> None:
    """Publish each executed notebook, with its outputs, next to its source for download.

    MyST-NB writes a page's notebook with outputs only when it executed it in this build;
    a page served from the cache (every page of the edition built second, and any page
    whose prose alone changed) is written without them. The outputs are merged back from
    the execution cache here, so the download always carries them.
    """
    if exception is not None or app.builder.format != "html":
        return
    import nbformat
    from jupyter_cache import get_cache

    config = app.env.mystnb_config
    cache = get_cache(config.execution_cache_path)
    executed = Path(config.output_folder)
    for docname in sorted(app.env.found_docs):
        source = executed / f"{docname}.ipynb"
        if not source.is_file():
            continue
        notebook = nbformat.read(source, as_version=4)
        # A notebook missing from the cache (a failed execution) is published as written.
        with contextlib.suppress(KeyError):
            _, notebook = cache.merge_match_into_notebook(notebook)
        target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)


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


def configure(namespace: dict[str, Any], edition: str) -> None:
    """Fill an edition's ``conf.py`` namespace with the shared settings."""
    info = EDITIONS[edition]
    settings: dict[str, Any] = {
        "project": info["title"],
        "author": "attention_book authors",
        "copyright": "2026, attention_book authors (text CC BY-SA 4.0, code MIT)",
        "language": info["language"],
        "edition": edition,
        "extensions": [
            "myst_nb",
            "sphinx.ext.autodoc",
            "sphinx.ext.napoleon",
            "sphinx_autodoc_typehints",
            "sphinx.ext.mathjax",
            "sphinx-mathjax-offline",  # MathJax served from the site, no CDN
            "sphinx_copybutton",
            "sphinx_togglebutton",  # folds the solutions
            "sphinx_exercise",
            "sphinxcontrib.bibtex",
            "sphinx_sitemap",
        ],
        "templates_path": [str(DOCS / "_templates")],
        "html_static_path": [str(DOCS / "_static")],
        "html_css_files": ["book.css"],
        "exclude_patterns": ["_build", "**.ipynb_checkpoints", "jupyter_execute"],
        "source_suffix": {".md": "myst-nb"},
        # MyST and MyST-NB
        "myst_enable_extensions": [
            "amsmath",
            "colon_fence",
            "deflist",
            "dollarmath",
            "fieldlist",
            "substitution",
        ],
        "myst_heading_anchors": 3,
        "myst_dmath_double_inline": True,
        "nb_execution_mode": "cache",
        "nb_execution_timeout": 300,
        # A failing cell is a warning naming the page, with the cell's source and traceback;
        # -W turns it into a failed build once every page has been tried (--keep-going).
        "nb_execution_raise_on_error": False,
        "nb_execution_allow_errors": False,
        "nb_execution_show_tb": True,
        "nb_merge_streams": True,
        "nb_code_prompt_show": info["show_code"],
        "nb_code_prompt_hide": info["hide_code"],
        "nb_render_markdown_format": "myst",
        # Numbered figures and equations, referenced by label.
        "numfig": True,
        "math_numfig": True,
        "math_eqref_format": "({number})",
        # Bibliography shared by both editions.
        "bibtex_bibfiles": [str(DOCS / "references.bib")],
        "bibtex_default_style": "plain",
        "bibtex_reference_style": "author_year",
        # API reference.
        "autodoc_member_order": "bysource",
        "autodoc_typehints": "description",
        "typehints_use_signature": True,
        "typehints_use_signature_return": True,
        "napoleon_google_docstring": True,
        "napoleon_numpy_docstring": False,
        # Folded solutions, with the hint in the edition's language.
        "togglebutton_hint": info["show"],
        "togglebutton_hint_hide": info["hide"],
        # Copy buttons skip prompts and outputs.
        "copybutton_exclude": ".linenos, .gp, .go",
        "copybutton_prompt_text": r">>> |\.\.\. |\$ ",
        "copybutton_prompt_is_regexp": True,
        # Strict references: these targets live in libraries whose inventories
        # are not available offline (no intersphinx at build time).
        "nitpick_ignore_regex": [
            ("py:class", r"torch\..*"),  # Tensor, device, dtype, nn.Module, ...
            ("py:func", r"torch\..*"),  # scaled_dot_product_attention, bmm, ...
            ("py:class", r"matplotlib\..*"),  # Figure, Colormap
            ("py:class", r"Tensor|Module|Figure"),  # short names in signatures
            ("py:class", r"collections\.abc\..*|typing\..*"),  # stdlib, no inventory
            ("py:data", r"typing\..*"),  # Union, Literal
            ("py:class", r"optional|callable"),  # napoleon's type words
        ],
        # HTML
        "html_theme": "sphinx_book_theme",
        "html_title": info["title"],
        "html_favicon": str(DOCS / "_static" / "favicon.svg"),
        "html_baseurl": f"{SITE_URL}{edition}/",
        "html_last_updated_fmt": None,
        "html_copy_source": True,
        "html_show_sourcelink": True,
        "sitemap_url_scheme": "{link}",
        # Chinese search: jieba splits the text; the glossary's terms are added to its
        # dictionary so that a search for a whole term (注意力汇聚) finds it.
        "html_search_options": {"dict": str(DOCS / "search-terms-zh.txt")}
        if edition == "zh"
        else {},
        "html_theme_options": {
            "repository_url": REPOSITORY_URL,
            "repository_branch": REPOSITORY_BRANCH,
            "path_to_docs": f"docs/{edition}",
            "use_repository_button": True,
            "use_edit_page_button": True,
            "use_issues_button": True,
            "use_download_button": True,
            "use_sidenotes": True,
            "show_toc_level": 2,
            "article_header_end": ["lang-switch.html", "article-header-buttons.html"],
        },
        "html_context": {"default_mode": "auto"},
        "suppress_warnings": ["mystnb.unknown_mime_type"],
    }
    namespace.update(settings)
    namespace["setup"] = _setup


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


def _setup(app: Any) -> None:
    _fix_chinese_stemmer()
    app.add_config_value("edition", "en", "env", types=[str])
    app.connect("builder-inited", _place_build_folders, priority=600)
    app.connect("doctree-read", _join_chinese_lines)
    app.connect("doctree-resolved", _translate_exec_table)
    app.connect("html-page-context", _add_page_context, priority=400)
    app.connect("build-finished", _copy_executed_notebooks)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # The kernels that execute the pages inherit this: the book's figure style.
    os.environ["MATPLOTLIBRC"] = str(DOCS / "matplotlibrc")
