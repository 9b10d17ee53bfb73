"""The interactive attention view (``attention_book.interpret.attention_view``) in Chromium.

Checked on the chapter page of both editions of the built site, with the network cut (see
``test_site.py``): no console error, no request to another host, hovering and focusing a
query token shade its keys, the shown weights of a query sum to 1, the pickers change the
view, two views are independent, and the view reads in dark mode. Screenshots of the views
join the browser artefacts. The helpers below take a driver and the CSS selector of one
view's root, so other browser tests (and a standalone HTML file) can reuse them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

# the driver, the local server and the artefacts folder are the site tests' fixtures
_spec = importlib.util.spec_from_file_location(
    "attention_book_browser_site", Path(__file__).with_name("test_site.py")
)
assert _spec is not None
assert _spec.loader is not None
_site_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_site_tests)
site = _site_tests.site
base_url = _site_tests.base_url
driver = _site_tests.driver
artefacts = _site_tests.artefacts
load = _site_tests.load
network_events = _site_tests.network_events
is_local = _site_tests.is_local

EDITIONS = ("en", "zh")
PAGE = "interpret/seeing-attention.html"
WORDS = {"en": "Layer", "zh": "层"}

# --------------------------------------------------------------------------- reusable helpers


def view_roots(driver: Any) -> list[str]:
    """CSS selectors (``#id``) of every attention view on the page, in page order."""
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('div.ab-attn')].map(d => d.id);"
    )
    return [f"#{i}" for i in ids]


def shown_weights(driver: Any, root: str) -> list[float]:
    """The weights the view shows on its keys now (``data-weight``, 3 decimals)."""
    values: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .ab-attn-k')]"
        ".map(k => k.dataset.weight);",
        root,
    )
    return [float(v) for v in values]


def shades(driver: Any, root: str) -> list[str]:
    """The computed background colours of the key tokens."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .ab-attn-k')]"
        ".map(k => getComputedStyle(k).backgroundColor);",
        root,
    )
    return found


def queries(driver: Any, root: str) -> list[Any]:
    """The query token elements."""
    from selenium.webdriver.common.by import By

    found: list[Any] = driver.find_elements(By.CSS_SELECTOR, f"{root} .ab-attn-q")
    return found


def chosen_query(driver: Any, root: str) -> int:
    """Index of the query the view shows now."""
    index: str = driver.execute_script(
        "return document.querySelector(arguments[0] + ' .ab-attn-q.ab-attn-on').dataset.index;",
        root,
    )
    return int(index)


def hover(driver: Any, element: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    ActionChains(driver).move_to_element(element).perform()


def pickers(driver: Any, root: str) -> list[Any]:
    """The view's two ``<select>`` elements: layer, then head."""
    from selenium.webdriver.common.by import By

    found: list[Any] = driver.find_elements(By.CSS_SELECTOR, f"{root} select")
    return found


def text_luminance(driver: Any, root: str) -> float:
    """Relative luminance (0 black .. 1 white) of the view's text colour."""
    value: float = driver.execute_script(
        "const c = getComputedStyle(document.querySelector(arguments[0]))"
        ".color.match(/[\\d.]+/g).map(Number);"
        "return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;",
        root,
    )
    return value


def settle_theme_listener(driver: Any) -> None:
    """Wait until the theme has answered a change of the system's colour scheme.

    In its "auto" mode the book theme listens for ``prefers-color-scheme`` changes and
    sets ``data-theme`` itself. The change event comes a frame after the emulation, so
    a ``data-theme`` written by the test before that frame is overwritten. Waiting for
    the theme's own write removes that race.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    mode = driver.execute_script("return document.documentElement.dataset.mode || 'auto';")
    if mode != "auto":
        return  # the theme does not listen outside auto mode
    WebDriverWait(driver, 5).until(
        lambda d: d.execute_script("return document.documentElement.dataset.theme;") == "dark",
        "the theme did not follow the emulated dark system setting",
    )


def check_hover_and_focus(driver: Any, root: str) -> None:
    """Hovering and focusing queries shade other keys; arrows move; weights sum to 1."""
    from selenium.webdriver.common.keys import Keys

    tokens = queries(driver, root)
    assert len(tokens) >= 2, f"{root}: fewer than two query tokens"
    seen = []
    for i, token in enumerate(tokens):
        hover(driver, token)
        assert chosen_query(driver, root) == i
        weights = shown_weights(driver, root)
        assert abs(sum(weights) - 1) <= 0.0005 * len(weights) + 1e-9, (root, i, weights)
        seen.append((tuple(weights), tuple(shades(driver, root))))
    assert len({w for w, _ in seen}) > 1, f"{root}: every query shows the same weights"
    assert len({s for _, s in seen}) > 1, f"{root}: every query shades the keys alike"
    driver.execute_script("arguments[0].focus();", tokens[0])
    assert chosen_query(driver, root) == 0
    tokens[0].send_keys(Keys.ARROW_RIGHT)
    assert chosen_query(driver, root) == 1
    assert driver.switch_to.active_element == tokens[1], "the arrow key did not move the focus"
    assert tokens[1].get_attribute("tabindex") == "0"
    assert tokens[0].get_attribute("tabindex") == "-1"
    tokens[1].send_keys(Keys.END)
    assert chosen_query(driver, root) == len(tokens) - 1
    title = driver.execute_script(
        "return document.querySelector(arguments[0] + ' .ab-attn-k').title;", root
    )
    assert any(ch.isdigit() for ch in title), f"{root}: no weight in the tooltip {title!r}"


def check_pickers(driver: Any, root: str) -> None:
    """Choosing another layer or head changes the weights shown (for some query)."""
    from selenium.webdriver.support.ui import Select

    layer, head = (Select(s) for s in pickers(driver, root))
    tokens = queries(driver, root)

    def everything() -> list[list[float]]:
        rows = []
        for token in tokens:
            hover(driver, token)
            rows.append(shown_weights(driver, root))
        return rows

    heads = len(head.options)
    if heads > 1:
        head.select_by_index(heads - 1)  # the mean of the heads
        mean = everything()
        head.select_by_index(0)
        assert everything() != mean, f"{root}: the head picker changed nothing"
    layers = len(layer.options)
    if layers > 1:
        layer.select_by_index(layers - 1)
        last = everything()
        layer.select_by_index(0)
        assert everything() != last, f"{root}: the layer picker changed nothing"
    assert heads > 1 or layers > 1 or len(pickers(driver, root)) == 2


# --------------------------------------------------------------------------- the checks


@pytest.fixture
def page(site: Path, base_url: str, driver: Any, request: pytest.FixtureRequest) -> str:
    edition = request.param
    if not (site / edition / PAGE).is_file():
        pytest.skip(f"{edition}/{PAGE} is not built yet (the chapter on seeing attention)")
    network_events(driver)  # forget earlier requests
    driver.get_log("browser")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    load(driver, f"{base_url}/{edition}/{PAGE}")
    driver.execute_script("document.documentElement.dataset.theme = 'light';")
    return str(edition)


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_views_load_offline(driver: Any, page: str) -> None:
    """Two or more views, distinct ids, the page's words, no error, nothing from elsewhere."""
    roots = view_roots(driver)
    assert len(roots) >= 2, f"{page}: expected two attention views, found {len(roots)}"
    assert len(set(roots)) == len(roots)
    for root in roots:
        label = driver.execute_script(
            "return document.querySelector(arguments[0] + ' .ab-attn-pick').textContent;", root
        )
        assert label.startswith(WORDS[page]), f"{root}: picker says {label!r}"
        left = driver.execute_script(
            "return document.querySelectorAll(arguments[0] + ' .ab-attn-fallback').length;", root
        )
        assert left == 0, f"{root}: the script did not run"
    requested, failed = network_events(driver)
    outside = [url for url in requested if not is_local(url)]
    assert outside == [], f"requests to other hosts: {outside}"
    assert failed == [], f"failed requests: {failed}"
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors: {errors}"


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_hover_focus_and_keyboard(driver: Any, page: str) -> None:
    for root in view_roots(driver):
        check_hover_and_focus(driver, root)


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_pickers_change_the_view(driver: Any, page: str) -> None:
    for root in view_roots(driver):
        check_pickers(driver, root)


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_views_are_independent(driver: Any, page: str) -> None:
    first, second = view_roots(driver)[:2]
    hover(driver, queries(driver, second)[0])
    before = chosen_query(driver, second), shown_weights(driver, second)
    for token in queries(driver, first)[1:]:
        hover(driver, token)
    assert (chosen_query(driver, second), shown_weights(driver, second)) == before


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_dark_mode(driver: Any, artefacts: Path, page: str) -> None:
    """The theme's dark switch and the system's dark setting both give light text."""
    roots = view_roots(driver)
    element = driver.find_element("css selector", roots[0])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    hover(driver, queries(driver, roots[0])[1])
    assert text_luminance(driver, roots[0]) < 0.4, "light mode: the text is not dark"
    element.screenshot(str(artefacts / f"{page}-attention-view-light.png"))
    driver.execute_script("document.documentElement.dataset.theme = 'dark';")
    assert text_luminance(driver, roots[0]) > 0.6, "data-theme=dark: the text is not light"
    element.screenshot(str(artefacts / f"{page}-attention-view-dark.png"))
    # no theme attribute: the system's setting decides
    driver.execute_script("document.documentElement.removeAttribute('data-theme');")
    dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", dark)
    try:
        settle_theme_listener(driver)
        driver.execute_script("document.documentElement.removeAttribute('data-theme');")
        assert text_luminance(driver, roots[0]) > 0.6, "prefers dark: the text is not light"
        driver.execute_script("document.documentElement.dataset.theme = 'light';")
        assert text_luminance(driver, roots[0]) < 0.4, "data-theme=light beats the system"
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    for path in artefacts.glob(f"{page}-attention-view-*.png"):
        assert path.stat().st_size > 2_000


# Body markers of notebook front ends, each with the text luminance it must give.
HOST_THEMES = (
    ("document.body.dataset.jpThemeLight = 'false';", "JupyterLab dark", True),
    ("document.body.dataset.jpThemeLight = 'true';", "JupyterLab light", False),
    ("document.body.classList.add('vscode-dark');", "VS Code dark", True),
    ("document.body.classList.add('vscode-light');", "VS Code light", False),
)


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_notebook_front_end_themes(driver: Any, page: str) -> None:
    """Without the book's switch, JupyterLab's and VS Code's theme markers decide the colours."""
    root = view_roots(driver)[0]
    clear = (
        "document.documentElement.removeAttribute('data-theme');"
        "delete document.body.dataset.jpThemeLight;"
        "document.body.classList.remove('vscode-dark', 'vscode-light');"
    )
    try:
        for script, host, light_text in HOST_THEMES:
            driver.execute_script(clear + script)
            luminance = text_luminance(driver, root)
            if light_text:
                assert luminance > 0.6, f"{host}: the text is not light ({luminance:.2f})"
            else:
                assert luminance < 0.4, f"{host}: the text is not dark ({luminance:.2f})"
    finally:
        driver.execute_script(clear + "document.documentElement.dataset.theme = 'light';")


@pytest.mark.parametrize("page", EDITIONS, indirect=True)
def test_a_copy_with_the_same_id_sets_up_itself(driver: Any, page: str) -> None:
    """A view's script finds its own view, not the first element with its id.

    JupyterLab runs an output's scripts by inserting fresh copies of them, and two open
    notebooks (or two views of one notebook) hold views with the same id in one document.
    The test inserts the page's first view, as served, a second time and runs its scripts
    the same way: the copy must come alive and answer the mouse on its own.
    """
    first = view_roots(driver)[0]
    original = f"{first}:not(#ab-copy *)"  # the id alone now matches both
    before = shown_weights(driver, original)
    driver.execute_async_script(
        """
        const [selector, done] = arguments;
        fetch(location.href).then(r => r.text()).then(text => {
          const served = new DOMParser().parseFromString(text, "text/html");
          const holder = document.createElement("div");
          holder.id = "ab-copy";
          holder.innerHTML = served.querySelector(selector).outerHTML;  // scripts do not run
          document.querySelector(selector).after(holder);
          for (const old of holder.querySelectorAll("script")) {
            const fresh = document.createElement("script");
            for (const a of old.attributes) { fresh.setAttribute(a.name, a.value); }
            fresh.textContent = old.textContent;
            old.replaceWith(fresh);  // runs now, as JupyterLab's output scripts do
          }
          done();
        });
        """,
        first,
    )
    copy = "#ab-copy .ab-attn"
    assert (
        driver.execute_script("return document.querySelector(arguments[0]).id;", copy)
        == (first[1:])
    ), "the copy should carry the same id"
    left = driver.execute_script(
        "return document.querySelectorAll(arguments[0] + ' .ab-attn-fallback').length;", copy
    )
    assert left == 0, "the copy's script did not set up the copy"
    assert len(pickers(driver, copy)) == 2
    check_hover_and_focus(driver, copy)
    assert shown_weights(driver, original) == before, "the copy's events reached the original"
