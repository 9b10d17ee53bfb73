"""Sphinx settings shared by both editions of the book.

Each edition's ``conf.py`` (``docs/en/conf.py``, ``docs/zh/conf.py``) sets its
``language`` and then calls :func:`configure`, which fills in everything else.
Keeping the settings here means the two editions can never drift apart. The
book's own build hooks live in ``book_extension.py`` beside this file.
"""

from __future__ import annotations

import hashlib
import os
import sys
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


#: Most seconds one page may take to execute; the build fails, naming the page, beyond it.
PAGE_BUDGET_S = 60.0

#: What every kernel that executes a page gets, whichever way it is started (MyST-NB
#: inside Sphinx, or ``docs/execute_pages.py`` in parallel before it): the book's
#: figure style, a fixed date in SVG figures (matplotlib reads ``SOURCE_DATE_EPOCH``),
#: and one thread for torch's operators, so that pages executed side by side do not
#: fight over the cores and give the same numbers as a page executed alone.
KERNEL_ENVIRONMENT = {
    "MATPLOTLIBRC": str(DOCS / "matplotlibrc"),
    "SOURCE_DATE_EPOCH": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


#: Set by ``nox -s docs`` to the value of :func:`device_kind` for the processes it starts.
DEVICE_KIND_ENV_VAR = "ATTENTION_BOOK_DEVICE_KIND"


def set_kernel_environment() -> None:
    """Give the kernels started from this process :data:`KERNEL_ENVIRONMENT`."""
    os.environ.update(KERNEL_ENVIRONMENT)


def device_kind() -> str:
    """The kind of device the pages execute on: ``cpu``, ``mps`` or ``cuda-sm<major><minor>``.

    It names the execution cache, so a GPU build never serves a CPU build's outputs or the
    reverse (numbers and timings may differ between devices). ``nox -s docs`` finds it once
    and hands it to the processes it starts in ``ATTENTION_BOOK_DEVICE_KIND``, which spares
    each of them the import of torch.
    """
    if os.environ.get(DEVICE_KIND_ENV_VAR):
        return os.environ[DEVICE_KIND_ENV_VAR]
    import torch

    sys.path.insert(0, str(ROOT))
    try:
        from attention_book.device import get_device
    finally:
        sys.path.remove(str(ROOT))
    device = get_device()
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda-sm{major}{minor}"
    return device.type


def hash_code_not_captions() -> None:
    """Make the execution cache ignore figure captions, so both editions share each entry.

    jupyter-cache hashes a notebook's code cells with all their metadata; a figure cell
    carries its caption in ``mystnb: figure: caption``, which is prose and differs between
    the editions. Without this, the Chinese edition would execute every page again. The
    hash is taken of a copy without the captions; a cached notebook merged into a page keeps
    the page's own metadata, captions included. Idempotent.
    """
    import copy

    from jupyter_cache.cache.main import JupyterCacheBase

    original = JupyterCacheBase.create_hashed_notebook
    if getattr(original, "ignores_captions", False):
        return

    def create_hashed_notebook(self: Any, nb: Any, *args: Any, **kwargs: Any) -> Any:
        nb = copy.deepcopy(nb)
        for cell in nb.cells:
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
            if isinstance(figure, dict):
                figure.pop("caption", None)
        return original(self, nb, *args, **kwargs)

    create_hashed_notebook.ignores_captions = True  # type: ignore[attr-defined]
    JupyterCacheBase.create_hashed_notebook = create_hashed_notebook  # type: ignore[method-assign]


def execution_cache_key(kind: str | None = None) -> str:
    """Hash of the package sources, the toolchain, the figure style and the device kind.

    MyST-NB's cache keys on the code cells only, so a change to the library the
    cells import would otherwise serve stale outputs. Naming the cache folder
    by this hash makes any change to ``attention_book/``, to the pinned
    toolchain, to the kernels' environment or to the kind of device
    (:func:`device_kind`, or ``kind`` when given) start from an empty cache.
    """
    digest = hashlib.sha256()
    digest.update(f"device={kind or device_kind()}\0".encode())
    for name, value in sorted(KERNEL_ENVIRONMENT.items()):
        if name != "MATPLOTLIBRC":  # a path: the file's contents are hashed below
            digest.update(f"{name}={value}\0".encode())
    files = sorted((ROOT / "attention_book").rglob("*.py"))
    files += [ROOT / "constraints.txt", DOCS / "matplotlibrc"]
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


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
            "book_extension",  # docs/book_extension.py: this book's own build hooks
            "myst_nb",
            "sphinx.ext.autodoc",
            "sphinx.ext.viewcode",  # the API reference links every name to its source
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
