"""How the book's pages are executed: reproducibly, in parallel or alone, keyed by device.

These tests start Jupyter kernels (a few seconds each) and read pages as MyST-NB does;
they need the docs toolchain (MyST-NB, jupyter-cache, ipykernel), which the ``tests``
group installs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))

import conf_common
import execute_pages

#: A short page with a figure and printed numbers.
PAGE = DOCS / "en" / "notation.md"
OTHER_PAGE = DOCS / "en" / "index.md"
DRIFT = {
    # matplotlib dates its SVGs; SOURCE_DATE_EPOCH=0 fixes the date at 1970-01-01
    "a date in a figure": re.compile(r"<dc:date>(?!1970-01-01T00:00:00)"),
    "a memory address": re.compile(r"\bat 0x[0-9a-f]{6,}"),
}


def outputs(notebook: Any) -> list[Any]:
    return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def alone() -> Any:
    """The page executed alone, as MyST-NB would execute it."""
    import nbformat

    result = execute_pages.execute(PAGE)
    assert result.error is None, result.error
    return nbformat.reads(result.notebook or "", as_version=4)


def test_the_page_has_figures_and_numbers(alone: Any) -> None:
    found = [o for cell in outputs(alone) for o in cell]
    assert any("image/svg+xml" in o.get("data", {}) for o in found), "no SVG figure"
    assert any(o.get("output_type") == "stream" or "text/plain" in o.get("data", {}) for o in found)


def test_outputs_carry_no_date_and_no_address(alone: Any) -> None:
    text = str(outputs(alone))
    for what, pattern in DRIFT.items():
        assert not pattern.search(text), f"{PAGE.name}: {what} in the outputs changes every run"


def test_executed_twice_in_parallel_or_alone_gives_identical_outputs(
    alone: Any, tmp_path: Path
) -> None:
    """The second execution runs in the parallel executor, beside another page."""
    from jupyter_cache import get_cache

    failed = execute_pages.run([PAGE, OTHER_PAGE], tmp_path / "cache", 2, None)
    assert failed == 0
    cache = get_cache(str(tmp_path / "cache"))
    _, cached = cache.merge_match_into_notebook(execute_pages.read_page(PAGE))
    assert outputs(cached) == outputs(alone)


def test_a_failing_page_is_reported_and_left_out(tmp_path: Path) -> None:
    page = tmp_path / "en" / "broken.md"
    page.parent.mkdir()
    page.write_text(
        PAGE.read_text(encoding="utf-8").split("\n---\n", 1)[0]
        + "\n---\n\n# Broken\n\n```{code-cell} ipython3\nraise RuntimeError('cell 1 fails')\n```\n",
        encoding="utf-8",
    )
    result = execute_pages.execute(page)
    assert result.notebook is None
    assert "cell 1 fails" in (result.error or "")


def test_pages_are_found_in_the_english_edition() -> None:
    found = {p.relative_to(DOCS / "en").as_posix() for p in execute_pages.pages()}
    assert {"index.md", "notation.md", "foundations/attention-cues.md"} <= found


def test_the_cache_is_keyed_by_device_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    import attention_book.device

    monkeypatch.delenv(conf_common.DEVICE_KIND_ENV_VAR, raising=False)
    assert conf_common.device_kind() == "cpu"
    cpu = conf_common.execution_cache_key()
    assert cpu == conf_common.execution_cache_key("cpu")
    monkeypatch.setattr(attention_book.device, "get_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert conf_common.device_kind() == "cuda-sm90"
    assert conf_common.execution_cache_key() != cpu
    assert conf_common.execution_cache_key("cuda-sm80") != conf_common.execution_cache_key()


def test_kernels_get_one_thread_and_the_book_style() -> None:
    env = conf_common.KERNEL_ENVIRONMENT
    assert env["OMP_NUM_THREADS"] == "1"
    assert Path(env["MATPLOTLIBRC"]).is_file()
    assert env["SOURCE_DATE_EPOCH"] == "0"


def test_both_editions_share_a_cache_entry(tmp_path: Path) -> None:
    """A page's two editions differ in their captions only, and hash the same."""
    from jupyter_cache import get_cache

    conf_common.hash_code_not_captions()
    page = Path("foundations/attention-cues.md")
    en, zh = (execute_pages.read_page(DOCS / edition / page) for edition in ("en", "zh"))

    def captions(notebook: Any) -> list[str]:
        return [
            c.metadata["mystnb"]["figure"]["caption"]
            for c in notebook.cells
            if "figure" in c.get("metadata", {}).get("mystnb", {})
        ]

    assert captions(en)
    assert captions(en) != captions(zh)
    cache = get_cache(str(tmp_path / "cache"))
    assert cache.create_hashed_notebook(en)[1] == cache.create_hashed_notebook(zh)[1]


def test_the_device_kind_can_be_handed_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """nox finds the device kind once and hands it to the build's processes."""
    monkeypatch.setenv(conf_common.DEVICE_KIND_ENV_VAR, "cuda-sm90")
    assert conf_common.device_kind() == "cuda-sm90"
    assert conf_common.execution_cache_key() == conf_common.execution_cache_key("cuda-sm90")
