"""The big-screen viewer in a real headless Chromium: the style loads, the town is drawn,
layers toggle and a click shows a feature card.

Chromium is Debian's (``run.sh test`` installs it); Playwright drives it, rendering
WebGL with SwiftShader. Screenshots land in the test's tmp folder for a look.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("TWIN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _town_centre(town_store) -> tuple[float, float]:
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    return (minx + maxx) / 2, (miny + maxy) / 2


def _open(browser, live_url, town_store, zoom: float, tmp_path, name: str):
    lon, lat = _town_centre(town_store)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_url}/#{zoom}/{lat}/{lon}/0/0")
    page.wait_for_function("window.twinViewer !== undefined", timeout=20_000)
    page.evaluate("window.twinViewer.ready")
    page.wait_for_function("window.twinMap.loaded() && window.twinMap.areTilesLoaded()", timeout=60_000)
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    return page, errors


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_viewer_draws_the_whole_town_from_the_style(browser, live_url, town_store, tmp_path):
    page, errors = _open(browser, live_url, town_store, 15, tmp_path, "town-z15")
    assert errors == [] and page.evaluate("window.twinViewer.errors") == []
    style_sources = page.evaluate("Object.keys(window.twinMap.getStyle().sources)")
    assert style_sources, "the style has no sources"
    drawn = set(page.evaluate(
        "[...new Set(window.twinMap.queryRenderedFeatures().map(f => f.sourceLayer).filter(Boolean))]"))
    # at z15 over the town centre: buildings, roads, grids and the planning layers are on screen
    assert {"buildings", "roads", "grids"} <= drawn, drawn
    assert drawn & {"zones", "control_lines", "farmland"}, drawn
    # the raster base is part of the style and loads without errors
    assert any(s.get("type") == "raster" for s in page.evaluate("Object.values(window.twinMap.getStyle().sources)"))


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_layer_toggle_hides_a_layer(browser, live_url, town_store, tmp_path):
    page, _ = _open(browser, live_url, town_store, 15, tmp_path, "toggle")
    box = page.locator('#layer-list input[data-layer="buildings"]')
    assert box.is_checked()
    box.uncheck()
    page.wait_for_function("window.twinMap.loaded()")
    left = page.evaluate("window.twinMap.queryRenderedFeatures().filter(f => f.sourceLayer === 'buildings').length")
    assert left == 0


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_clicking_a_building_shows_its_card(browser, live_url, town_store, tmp_path):
    page, _ = _open(browser, live_url, town_store, 16, tmp_path, "card")
    target = page.evaluate("""() => {
        const m = window.twinMap, c = m.getCanvas();
        for (let y = 60; y < c.clientHeight - 60; y += 12)
          for (let x = 60; x < c.clientWidth - 60; x += 12) {
            const fs = m.queryRenderedFeatures([x, y]).filter(f => f.sourceLayer);
            if (fs.length && fs[0].sourceLayer === 'buildings') return {x, y, id: fs[0].id};
          }
        return null; }""")
    assert target is not None, "no building rendered at z16 over the town centre"
    page.mouse.click(target["x"], target["y"])
    page.wait_for_selector("#card:not([hidden])", timeout=10_000)
    assert page.text_content("#card-title") == f"buildings #{target['id']}"
    card = page.inner_text("#card-props")
    assert "height_m" in card and "address" in card  # full attributes fetched from the feature service
