"""The big-screen viewer in a real headless Chromium, opened as a person opens it: the bare
URL, no ``#zoom/lat/lon``. The town is framed, nothing fails to load, the page speaks Chinese
(English on the switch), layers toggle and a click shows a feature card.

Chromium is Debian's (``run.sh test`` installs it); Playwright drives it, rendering
WebGL with SwiftShader. Screenshots land in ``TWIN_SCREENSHOT_DIR`` (default: the test's tmp
folder) for a look and for ``docs/viewer.md``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TWIN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TWIN_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def wait_for(page, expression: str, timeout_s: float = 60.0) -> None:
    """Poll ``expression`` with ``page.evaluate`` until it is truthy. (Playwright's
    ``wait_for_function`` builds its predicate with eval, which the page's Content-Security-Policy
    rightly forbids; ``evaluate`` goes through the DevTools protocol and is not affected.)"""
    import time

    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if page.evaluate(expression):
                return
        except PlaywrightError as exc:  # the page navigated (e.g. reloaded after a log-in): poll again
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expression}")
        time.sleep(0.1)


class Visit:
    """A page opened at the bare URL, with every console error, failed request and 4xx/5xx kept."""

    def __init__(self, browser, url: str, *, locale: str = "zh-CN", size=(1920, 1080)):
        self.context = browser.new_context(locale=locale, viewport={"width": size[0], "height": size[1]})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.page.goto(url)
        wait_for(self.page, "window.twinViewer !== undefined", 20)
        self.page.evaluate("window.twinViewer.ready")
        self.settle()

    def settle(self) -> None:
        wait_for(self.page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)

    def eval(self, js: str):
        return self.page.evaluate(js)

    def close(self) -> None:
        self.context.close()


def _town_bounds(town_store) -> tuple[float, float, float, float]:
    return town_store.summary("buildings").extent


def _wait_for_glyph_warm_up(town_store, town_settings, timeout_s: float = 180.0) -> float:
    """Wait until the server's start-up warm-up has put every glyph range of the town's labels
    (village and road names) on disk, as it has long done on a demo server that a visitor opens;
    returns the seconds waited."""
    import time

    from gis_api.routers.fonts import label_texts
    from tiles.glyphs import GlyphCache, ranges_for

    cache = GlyphCache(town_settings.home / "glyphs")
    ranges = ranges_for(label_texts(town_store))
    started = time.perf_counter()
    while not all(cache.path(s, e).is_file() for s, e in ranges):
        assert time.perf_counter() - started < timeout_s, "glyph warm-up did not finish"
        time.sleep(0.2)
    return time.perf_counter() - started


def _wait_for_first_view_warm_up(url: str, timeout_s: float = 180.0) -> tuple[float, str]:
    """Wait until the server's start-up warm-up has rendered every tile of the first view
    (``TWIN_FIRST_VIEW_WARM``, reported by ``/readyz``), as a running demo has long done when a
    visitor opens it; returns the seconds waited and the status."""
    import time

    import httpx

    started = time.perf_counter()
    while True:
        status = httpx.get(url + "/readyz", timeout=10).json()["checks"]["first view tiles"]
        if not status.startswith("warming"):
            assert status.startswith("ok"), status
            return time.perf_counter() - started, status
        assert time.perf_counter() - started < timeout_s, "first view warm-up did not finish"
        time.sleep(0.2)


def _tile_misses(url: str) -> dict[str, float]:
    """Tiles rendered while a client waited, from ``/metrics`` (vector and raster)."""
    import httpx

    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        for name in ("twin_tile_cache_lookups_total", "twin_raster_tile_lookups_total"):
            if line.startswith(name + '{result="miss"}'):
                out[name] = float(line.rsplit(" ", 1)[1])
    return out


def test_bare_url_frames_the_whole_town_in_chinese_with_nothing_failing(browser, live_url, town_store,
                                                                         town_settings, tmp_path):
    import time

    waited = _wait_for_glyph_warm_up(town_store, town_settings)
    print(f"glyph warm-up after server start: {waited:.2f} s more")
    waited, status = _wait_for_first_view_warm_up(live_url)
    print(f"first view tiles warm-up: {waited:.2f} s more ({status})")
    misses = _tile_misses(live_url)
    assert len(misses) == 2, misses
    started = time.perf_counter()
    v = Visit(browser, live_url + "/")
    # first full render: the page, the style, every tile of the first view drawn (issue 10 asks <= 3 s)
    print(f"first full render of / : {time.perf_counter() - started:.2f} s")
    try:
        # the warm-up rendered exactly the tiles the first view asks for: no vector or orthophoto
        # tile was rendered while this visitor waited
        assert _tile_misses(live_url) == misses, (misses, _tile_misses(live_url))
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-first-view.png"))
        assert v.problems == [], v.problems
        assert v.eval("window.twinViewer.errors") == []
        # the whole town is in view, and it fills a good part of the screen (not a world map)
        west, south, east, north = v.eval("window.twinMap.getBounds().toArray().flat()")
        minx, miny, maxx, maxy = _town_bounds(town_store)
        assert west <= minx and east >= maxx and south <= miny and north >= maxy, "town not framed"
        town_area = (maxx - minx) * (maxy - miny)
        assert town_area / ((east - west) * (north - south)) > 0.15, "the town is a speck on the screen"
        # something is drawn: the planning layers, grids and roads over the town
        drawn = set(v.eval(
            "[...new Set(window.twinMap.queryRenderedFeatures().map(f => f.sourceLayer).filter(Boolean))]"))
        assert {"grids", "roads"} <= drawn and drawn & {"zones", "control_lines", "farmland"}, drawn
        # Chinese first: page language, titles, layer names, and a village label drawn from our glyphs
        assert v.eval("document.documentElement.lang") == "zh-CN"
        panel = v.page.inner_text("#panel")
        assert "图层" in panel and "建筑" in panel and "地下管线" in panel, panel
        # the account line names the role a guest has here (the tests' TWIN_ANONYMOUS_ROLE is operator)
        who = v.page.text_content("#who")
        if town_settings.anonymous_role == "public":
            assert who == "访客（公开图层）", who
        else:
            assert who.startswith("访客（未登录）") and "公开图层" not in who, who
            assert town_settings.anonymous_role != "operator" or "值班员" in who, who
        labels = v.eval("window.twinMap.queryRenderedFeatures({layers: ['grids-label']}).length")
        assert labels > 0, "no grid name label rendered"
        # the glyph ranges fetched hold only the labels' characters (the full ranges were ~5.4 MB
        # of SDF bitmaps, parsed on the page's main thread)
        glyphs = v.eval("performance.getEntriesByType('resource').filter(r => r.name.includes('/fonts/'))"
                        ".map(r => [r.name, r.decodedBodySize])")
        assert glyphs and all("labels=" in url for url, _ in glyphs), glyphs
        assert sum(size for _, size in glyphs) < 500_000, glyphs
        # the canvas is not blank
        png = v.page.locator("#map canvas").screenshot()
        assert len(set(png[1000:20000])) > 50
    finally:
        v.close()


def test_english_switch_and_browser_language(browser, live_url, tmp_path):
    v = Visit(browser, live_url + "/", locale="en-US")
    try:
        # an English-only browser gets English; the switch goes to Chinese and stays there
        assert "Layers" in v.page.text_content("#panel")
        v.page.click("#lang")
        v.page.wait_for_load_state("load")
        wait_for(v.page, "window.twinViewer !== undefined && document.documentElement.lang === 'zh-CN'", 30)
        wait_for(v.page, "document.querySelector('#layer-list li') !== null", 30)
        assert "图层" in v.page.text_content("#panel")
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_layer_toggle_hides_a_layer(browser, live_url, town_store, tmp_path):
    v = Visit(browser, live_url + "/")
    try:
        box = v.page.locator('#layer-list input[data-layer="roads"]')
        assert box.is_checked()
        assert v.eval("window.twinMap.queryRenderedFeatures().filter(f => f.sourceLayer === 'roads').length") > 0
        box.uncheck()
        # the map repaints on its next frame: wait until no road is drawn
        wait_for(v.page, "window.twinMap.queryRenderedFeatures().filter(f => f.sourceLayer === 'roads').length === 0",
                 20)
        assert v.eval("window.twinMap.getLayoutProperty('roads', 'visibility')") == "none"
    finally:
        v.close()


def test_clicking_a_building_shows_its_card(browser, live_url, town_store, tmp_path):
    v = Visit(browser, live_url + "/")
    try:
        minx, miny, maxx, maxy = _town_bounds(town_store)
        # the user zooms into the centre (as with the scroll wheel), then clicks a building
        v.eval(f"window.twinMap.jumpTo({{center: [{(minx + maxx) / 2}, {(miny + maxy) / 2}], zoom: 16.5}})")
        v.settle()
        target = v.eval("""() => {
            const m = window.twinMap, c = m.getCanvas();
            for (let y = 60; y < c.clientHeight - 60; y += 12)
              for (let x = 60; x < c.clientWidth - 60; x += 12) {
                const fs = m.queryRenderedFeatures([x, y]).filter(f => f.sourceLayer);
                if (fs.length && fs[0].sourceLayer === 'buildings') return {x, y, id: fs[0].id};
              }
            return null; }""")
        assert target is not None, "no building rendered at z16.5 over the town centre"
        v.page.mouse.click(target["x"], target["y"])
        v.page.wait_for_selector("#card:not([hidden])", timeout=10_000)
        assert v.page.text_content("#card-title") == f"建筑 #{target['id']}"
        # full attributes fetched from the feature service, labelled in Chinese
        assert v.page.locator('#card-props tr[data-field="address"]').count() == 1
        assert "高度（米）" in v.page.inner_text("#card-props")
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-card.png"))
        assert v.problems == [], v.problems
    finally:
        v.close()


@pytest.fixture(scope="module")
def public_url(town_store, town_settings, serve_app):
    """The viewer as shipped: anonymous callers are `public` (no pipelines); a demo login."""
    from gis_api.app import create_app
    from twin.security.accounts import Accounts
    from twin.settings import TwinSettings

    settings = TwinSettings(**{**town_settings.model_dump(), "anonymous_role": "public", "secret_key": "v" * 40})
    try:
        Accounts(town_store, settings).create_user("viewer-operator", "Viewer-Operator-2026", ["operator"])
    except Exception:  # noqa: BLE001 - exists from an earlier module run
        pass
    with serve_app(create_app(settings, store=town_store)) as url:
        yield url


def test_guest_sees_public_layers_and_a_login_shows_the_rest(browser, public_url, tmp_path):
    v = Visit(browser, public_url + "/")
    try:
        assert v.problems == [], v.problems  # no 401 for layers a guest may not see: the style leaves them out
        layers = v.eval("[...document.querySelectorAll('#layer-list input')].map(i => i.dataset.layer)")
        assert "buildings" in layers and "pipelines" not in layers
        assert "访客" in v.page.text_content("#who")
        v.page.click("#login-open")
        v.page.fill("#login-user", "viewer-operator")
        v.page.fill("#login-pass", "wrong-Password-1")
        v.page.click("#login-form button[type=submit]")
        v.page.wait_for_selector("#login-error:not(:empty)", timeout=10_000)
        assert "错误" in v.page.text_content("#login-error")
        v.page.fill("#login-pass", "Viewer-Operator-2026")
        v.page.click("#login-form button[type=submit]")
        v.page.wait_for_load_state("load")
        wait_for(v.page, "window.twinViewer !== undefined && document.querySelector('#layer-list input') !== null", 30)
        wait_for(v.page, "document.querySelector('#layer-list input[data-layer=\"pipelines\"]') !== null", 30)
        assert "viewer-operator" in v.page.text_content("#who")
        v.settle()
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-logged-in.png"))
        assert [p for p in v.problems if "wrong" not in p and "401" not in p] == [], v.problems
    finally:
        v.close()
