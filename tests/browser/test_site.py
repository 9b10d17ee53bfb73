"""Fixtures for the browser tests: the built site served on localhost, and headless Chromium.

These tests read the site that ``nox -s docs`` built; ``nox -s browser`` runs them and
sets ``ATTENTION_BOOK_SITE`` to ``docs/_build/html``. Every request the page makes that
is not to localhost fails (Chromium resolves no other host name), and is reported.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
BROWSER_SCHEMES = {"chrome", "chrome-extension", "chrome-untrusted", "devtools"}


def _site() -> Path | None:
    value = os.environ.get("ATTENTION_BOOK_SITE")
    return Path(value) if value else None


def pages(edition: str) -> list[str]:
    """Every HTML page of an edition, relative to the edition's folder."""
    site = _site()
    if site is None:
        return []
    root = site / edition
    skip = ("_static", "_sources", "_images", "_downloads")
    found = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if not p.relative_to(root).as_posix().startswith(skip)
    )
    if not found:
        msg = f"no HTML pages under {root}: build the site first with `nox -s docs`"
        raise RuntimeError(msg)
    return found


@pytest.fixture(scope="session")
def site() -> Path:
    site = _site()
    if site is None:
        pytest.skip("browser tests need a built site: run them with `nox -s browser`")
    return site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def base_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            msg = f"{path} not found: install Debian's chromium and chromium-driver"
            raise RuntimeError(msg)
    profile = tempfile.mkdtemp(prefix="attention-book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
        # The network is cut for the page: no host name but localhost resolves.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artefacts(site: Path) -> Path:
    folder = site.parent / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def network_events(driver: Any) -> tuple[list[str], list[str]]:
    """Drain the performance log: (every requested URL, every failed request)."""
    requested: dict[str, str] = {}
    failed: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            if urlsplit(params.get("documentURL", "")).scheme in BROWSER_SCHEMES:
                continue  # the browser's own pages (new tab), not the site
            requested[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived" and params["requestId"] in requested:
            status = params["response"]["status"]
            if status >= 400:
                failed.append(f"{params['response']['url']} -> HTTP {status}")
        elif (
            method == "Network.loadingFailed"
            and not params.get("canceled")
            and params["requestId"] in requested
        ):
            failed.append(f"{requested[params['requestId']]} -> {params.get('errorText')}")
    return list(requested.values()), failed


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"data", "blob", "about"} or parts.hostname in LOCAL_HOSTS


# --------------------------------------------------------------------------- the checks

EDITIONS = ("en", "zh")
OTHER = {"en": "zh", "zh": "en"}
SEARCHES = {"en": "Nadaraya", "zh": "注意力汇聚"}
SEARCH_TARGET = "foundations/attention-pooling.html"
SCREENSHOTS = (
    "index.html",
    "foundations/attention-cues.html",
    "foundations/attention-pooling.html",
)
ALL_PAGES = [pytest.param(e, p, id=f"{e}/{p}") for e in EDITIONS for p in pages(e)]

WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
const ready = window.MathJax && MathJax.startup && MathJax.startup.promise;
if (ready) { MathJax.startup.promise.then(() => done("ok"), (e) => done(String(e))); }
else { done(document.querySelector(".math") ? "MathJax did not load" : "ok"); }
"""


def load(driver: Any, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


@pytest.mark.parametrize(("edition", "page"), ALL_PAGES)
def test_page_loads_cleanly(driver: Any, base_url: str, edition: str, page: str) -> None:
    """No console error, no failed or outside request, every image loaded, math typeset."""
    network_events(driver)  # forget the previous page's requests
    driver.get_log("browser")
    load(driver, f"{base_url}/{edition}/{page}")
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
    assert driver.execute_async_script(WAIT_FOR_MATH) == "ok"
    untypeset = driver.execute_script(
        "return [...document.querySelectorAll('.math')]"
        ".filter(m => !m.querySelector('mjx-container') && m.tagName !== 'MJX-CONTAINER')"
        ".map(m => m.textContent.slice(0, 60));"
    )
    assert untypeset == [], f"math left untypeset: {untypeset}"
    assert driver.execute_script("return document.querySelectorAll('mjx-merror').length") == 0
    broken = driver.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src);"
    )
    assert broken == [], f"images that did not load: {broken}"
    requested, failed = network_events(driver)
    outside = [url for url in requested if not is_local(url)]
    assert outside == [], f"requests to other hosts: {outside}"
    assert failed == [], f"failed requests: {failed}"
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}"
    lang = driver.execute_script("return document.documentElement.lang")
    assert lang == {"en": "en", "zh": "zh-CN"}[edition]


@pytest.mark.parametrize(("edition", "page"), ALL_PAGES)
def test_language_switcher(driver: Any, base_url: str, edition: str, page: str) -> None:
    """The switcher leads to the same page in the other edition."""
    from selenium.webdriver.common.by import By

    load(driver, f"{base_url}/{edition}/{page}")
    switch = driver.find_elements(By.CSS_SELECTOR, "a.lang-switch")
    assert len(switch) == 1, "no language switcher on the page"
    switch[0].click()
    load(driver, driver.current_url)
    expected = f"{base_url}/{OTHER[edition]}/{page}"
    assert driver.current_url.split("#")[0] == expected
    assert "404" not in driver.title


@pytest.mark.parametrize("edition", EDITIONS)
def test_search_finds_the_pooling_chapter(driver: Any, base_url: str, edition: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    load(driver, f"{base_url}/{edition}/search.html?q={SEARCHES[edition]}")

    def hits(d: Any) -> list[str]:
        found: list[str] = d.execute_script(
            "return [...document.querySelectorAll('#search-results a')].map(a => a.href);"
        )
        return found

    WebDriverWait(driver, 30).until(lambda d: any(SEARCH_TARGET in h for h in hits(d)))


@pytest.mark.parametrize("edition", EDITIONS)
def test_dark_mode_toggle(driver: Any, base_url: str, edition: str) -> None:
    from selenium.webdriver.common.by import By

    load(driver, f"{base_url}/{edition}/index.html")
    driver.execute_script("localStorage.setItem('mode', 'light'); location.reload();")
    load(driver, driver.current_url)
    theme = "return document.documentElement.dataset.theme"
    background = (
        "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);"
        "return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;"
    )
    assert driver.execute_script(theme) == "light"
    assert driver.execute_script(background) > 0.7
    toggles = [
        b for b in driver.find_elements(By.CSS_SELECTOR, ".theme-switch-button") if b.is_displayed()
    ]
    assert toggles, "no visible light/dark toggle"
    toggles[0].click()  # opens the menu of modes
    choices = driver.find_elements(By.CSS_SELECTOR, ".theme-change-button[data-mode='dark']")
    visible = [c for c in choices if c.is_displayed()]
    assert visible, "the toggle did not open its menu"
    visible[0].click()
    assert driver.execute_script(theme) == "dark"
    assert driver.execute_script(background) < 0.3


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", SCREENSHOTS)
def test_screenshots(
    driver: Any, base_url: str, artefacts: Path, site: Path, edition: str, page: str
) -> None:
    """Saves screenshots of three pages per edition (build artefacts, not committed)."""
    assert (site / edition / page).is_file(), f"{edition}/{page} was not built"
    driver.set_window_size(1280, 1000)
    load(driver, f"{base_url}/{edition}/{page}")
    driver.execute_script("localStorage.setItem('mode', 'light'); location.reload();")
    load(driver, driver.current_url)
    driver.execute_async_script(WAIT_FOR_MATH)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height), 16000))
    target = artefacts / f"{edition}-{page.replace('/', '-').removesuffix('.html')}.png"
    assert driver.save_screenshot(str(target)), f"could not save {target}"
    driver.set_window_size(1280, 1000)
    assert target.stat().st_size > 10_000


PAGE_WEIGHT_LIMIT = 500 * 1024


def test_page_weights(site: Path, artefacts: Path) -> None:
    """Every page's own HTML and the figures it shows stay under 500 KB.

    Writes the weights, heaviest first, to ``page-weights.txt`` beside the screenshots.
    """
    weights = {}
    for edition in EDITIONS:
        for page in pages(edition):
            path = site / edition / page
            figures = set(re.findall(r'<img[^>]+src="([^"]+)"', path.read_text(encoding="utf-8")))
            weights[f"{edition}/{page}"] = path.stat().st_size + sum(
                (path.parent / f).stat().st_size for f in figures
            )
    ranked = sorted(weights.items(), key=lambda item: -item[1])
    report = "\n".join(f"{w / 1024:7.0f} KB  {name}" for name, w in ranked)
    (artefacts / "page-weights.txt").write_text(report + "\n", encoding="utf-8")
    heavy = [f"{name} ({w / 1024:.0f} KB)" for name, w in ranked if w >= PAGE_WEIGHT_LIMIT]
    assert heavy == [], f"pages over {PAGE_WEIGHT_LIMIT // 1024} KB: {heavy}"


def test_root_page_routes_to_the_editions(driver: Any, base_url: str) -> None:
    load(driver, f"{base_url}/index.html?choose")
    links = driver.execute_script("return [...document.links].map(a => a.href);")
    assert f"{base_url}/en/index.html" in links
    assert f"{base_url}/zh/index.html" in links
    load(driver, f"{base_url}/index.html")
    assert driver.current_url.rsplit("/", 2)[-2] in EDITIONS


def test_not_found_page_leads_back_to_both_editions(driver: Any, base_url: str) -> None:
    load(driver, f"{base_url}/404.html")
    links = driver.execute_script("return [...document.links].map(a => a.href);")
    assert f"{base_url}/en/index.html" in links
    assert f"{base_url}/zh/index.html" in links


PARTS = ("foundations/", "models/", "variants/", "interpret/")  # Parts I to IV
CHAPTERS = sorted({p for e in EDITIONS for p in pages(e) if p.startswith(PARTS)})


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", CHAPTERS)
def test_downloads_executed_notebook_and_source(
    driver: Any, base_url: str, edition: str, page: str
) -> None:
    """The download menu offers the executed notebook (with outputs) and the source."""
    load(driver, f"{base_url}/{edition}/{page}")
    fetch = """
    const done = arguments[arguments.length - 1];
    const link = document.querySelector(arguments[0]);
    if (!link) { done(null); return; }
    fetch(link.href).then(r => r.text().then(t => done([r.status, t])), e => done(String(e)));
    """
    status, text = driver.execute_async_script(fetch, "a.btn-download-notebook-button")
    assert status == 200
    notebook = json.loads(text)
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs, f"{page}: the downloadable notebook has no outputs"
    status, text = driver.execute_async_script(fetch, "a.btn-download-source-button")
    assert status == 200
    assert text.startswith("---\njupytext:")


PHONE = {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": True}
EQUATION_LAYOUT = """
return [...document.querySelectorAll('div.math')].map(m => {
  const eq = m.querySelector('mjx-container');
  const no = m.querySelector('span.eqno');
  if (!eq) { return null; }
  const a = eq.getBoundingClientRect();
  const b = no ? no.getBoundingClientRect() : null;
  const overlap = b !== null && a.left < b.right && b.left < a.right && a.top < b.bottom
    && b.top < a.bottom;
  const cut = eq.scrollWidth > eq.clientWidth + 1
    && !['auto', 'scroll'].includes(getComputedStyle(eq).overflowX);
  const outside = a.right > window.innerWidth + 1;
  return (overlap || cut || outside) ? m.id || m.textContent.slice(0, 40) : null;
}).filter(x => x);
"""


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", CHAPTERS)
def test_equations_fit_a_phone(driver: Any, base_url: str, edition: str, page: str) -> None:
    """On a 420-px screen a display equation fits or scrolls, and its number never covers it."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        load(driver, f"{base_url}/{edition}/{page}")
        assert driver.execute_async_script(WAIT_FOR_MATH) == "ok"
        # a phone widens the layout to the widest element: nothing may be wider than the screen
        width = driver.execute_script("return document.documentElement.scrollWidth")
        bad = driver.execute_script(EQUATION_LAYOUT)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert width == PHONE["width"], f"{edition}/{page} is {width} px wide on a 420-px phone"
    assert bad == [], f"equations cut off or covered by their numbers at 420 px: {bad}"


CODE_OVERFLOW = """
return [...document.querySelectorAll('article div.highlight pre')]
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => pre.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), ''));
"""


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("page", CHAPTERS)
def test_code_fits_its_box(driver: Any, base_url: str, edition: str, page: str) -> None:
    """On a 1440-px laptop screen no code box (cell, output or listing) scrolls sideways.

    With both sidebars shown the box holds about 88 characters of code.
    """
    driver.set_window_size(1440, 1000)
    try:
        load(driver, f"{base_url}/{edition}/{page}")
        wide = driver.execute_script(CODE_OVERFLOW)
    finally:
        driver.set_window_size(1280, 1000)
    assert wide == [], f"{edition}/{page}: lines wider than their box: {wide}"


@pytest.mark.parametrize("edition", EDITIONS)
def test_numbers_from_cells_read_as_text(driver: Any, base_url: str, edition: str) -> None:
    """Numbers pasted from executed cells ({glue:text}) have the weight of the prose."""
    load(driver, f"{base_url}/{edition}/foundations/attention-pooling.html")
    weights = driver.execute_script(
        "return [...document.querySelectorAll('p span.pasted-text')].map(s => "
        "[getComputedStyle(s).fontWeight, getComputedStyle(s.closest('p')).fontWeight]);"
    )
    assert weights, "no pasted number on the page"
    assert all(own == prose for own, prose in weights), weights


@pytest.mark.parametrize("page", CHAPTERS)
def test_chinese_figures_are_the_translated_ones(
    driver: Any, base_url: str, site: Path, page: str
) -> None:
    """Every figure a cell draws on a Chinese page is its translated SVG, with Chinese text."""
    load(driver, f"{base_url}/zh/{page}")
    sources = driver.execute_script(
        "return [...document.querySelectorAll('.cell_output img')].map(i => i.src);"
    )
    assert sources, f"zh/{page}: no figure"
    for source in sources:
        assert source.endswith(".zh.svg"), f"zh/{page}: {source} is not a translated SVG"
    texts = "".join(
        (site / "zh" / "_images" / Path(urlsplit(s).path).name).read_text(encoding="utf-8")
        for s in sources
    )
    assert re.search(r"[\u4e00-\u9fff]", texts), f"zh/{page}: no Chinese text in its figures"


@pytest.mark.parametrize("edition", EDITIONS)
def test_chapters_are_numbered_once_across_the_parts(site: Path, edition: str) -> None:
    """Part II continues Part I's numbering (6, 7, ...) instead of starting again at 1."""
    numbers = []
    for page in pages(edition):
        text = (site / edition / page).read_text(encoding="utf-8")
        found = re.search(r'<h1>\s*<span class="section-number">(\d+)\.\s*</span>', text)
        if found:
            numbers.append(int(found.group(1)))
    assert len(numbers) >= 5
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), numbers
