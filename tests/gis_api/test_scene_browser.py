"""The 3D page (/scene) in a real headless Chromium running CesiumJS from the project's npm install:
the twin's quantized-mesh terrain is requested and decoded (Cesium's ground height matches the
DEM), the 3D Tiles tileset loads, nothing fails, the canvas shows something, and a click on a
building whose id the test knows names that building and links to its feature.

Chromium is Debian's, WebGL through SwiftShader (see test_viewer_browser.py). Screenshots are
saved in the test's tmp folder (and copied to TWIN_TEST_SCREENSHOTS when that is set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.io import MemoryFile


def wait_for(page, expression: str, timeout_s: float, interval: float = 0.1) -> None:
    """Poll ``expression`` with ``page.evaluate`` until truthy (the page's CSP forbids the eval
    that Playwright's ``wait_for_function`` builds its predicate with)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expression}")
        time.sleep(interval)

CHROMIUM = os.environ.get("TWIN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
LOAD_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watch:
    """What a person would see go wrong: page errors, console errors, failed or refused requests."""

    def __init__(self, page):
        self.problems: list[str] = []
        self.terrain: list[tuple[str, int]] = []
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self._response)

    def _response(self, r):
        if r.status >= 400:
            self.problems.append(f"HTTP {r.status}: {r.url}")
        if "/terrain/" in r.url and ".terrain" in r.url:
            self.terrain.append((r.url, r.status))


def _open(browser, url: str, tmp_path: Path, name: str):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    watch = Watch(page)
    page.goto(url, timeout=90_000)
    wait_for(page, "window.twinScene !== undefined", 30)
    page.evaluate("window.twinScene.ready")
    wait_for(page, "window.twinScene.tilesLoaded()", LOAD_TIMEOUT_MS / 1000, interval=0.5)
    page.wait_for_timeout(500)  # one more frame after the last tile
    shot = _save(page, tmp_path / f"{name}.png")
    return page, watch, shot


def _save(page, shot: Path) -> Path:
    page.screenshot(path=str(shot))
    if os.environ.get("TWIN_TEST_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["TWIN_TEST_SCREENSHOTS"]) / shot.name)
    return shot


def _pixels(png: Path) -> np.ndarray:
    with MemoryFile(png.read_bytes()) as mem, mem.open() as ds:
        return ds.read()


def _dem_height(town_store, lon: float, lat: float) -> float:
    with rasterio.open(Path(town_store.raster_dir) / "dem.tif") as ds:
        from pyproj import Transformer

        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        return float(next(ds.sample([(x, y)]))[0])


def _big_building(live_url: str, town_store):
    """A large building near the town centre, found as a person would: through the features API."""
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    d = 0.004
    r = httpx.get(f"{live_url}/collections/buildings/items",
                  params={"bbox": f"{cx - d},{cy - d},{cx + d},{cy + d}", "limit": 500}, timeout=30)
    feats = r.json()["features"]
    assert feats, "no buildings near the town centre"
    best = max(feats, key=lambda f: shapely.geometry.shape(f["geometry"]).area)
    point = shapely.geometry.shape(best["geometry"]).representative_point()
    return best, point.x, point.y


@pytest.mark.slow  # the whole town in SwiftShader: ~50 s on a busy 2-core machine
@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_scene_page_draws_the_twins_terrain_and_tileset(browser, live_url, town_store, tmp_path):
    page, watch, shot = _open(browser, f"{live_url}/scene", tmp_path, "scene-town")
    assert watch.problems == [] and page.evaluate("window.twinScene.errors") == []
    # terrain tiles were asked for down to the town's detail levels, and all answered
    layer = httpx.get(f"{live_url}/terrain/layer.json").json()
    levels = {int(u.split("/terrain/")[1].split("/")[0]) for u, s in watch.terrain if s == 200}
    assert levels and max(levels) >= layer["maxzoom"] - 3, sorted(levels)
    # the tileset is there and drew content
    assert page.evaluate("window.twinScene.tileset !== null")
    assert page.evaluate("window.twinScene.tileset.statistics.numberOfFeaturesLoaded") > 0
    # and the canvas is not blank
    px = _pixels(shot)
    assert px.shape[0] >= 3 and float(px[:3].std()) > 10
    # the underground switch makes the ground see-through (pipes show below the street)
    page.check("#toggle-underground")
    assert page.evaluate("window.twinScene.viewer.scene.globe.translucency.enabled")
    page.wait_for_timeout(1500)
    _save(page, tmp_path / "scene-underground.png")
    assert watch.problems == [] and page.evaluate("window.twinScene.errors") == []
    page.close()


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_clicking_a_building_names_it_and_links_to_its_feature(browser, live_url, town_store, tmp_path):
    feature, lon, lat = _big_building(live_url, town_store)
    top = _dem_height(town_store, lon, lat) + float(feature["properties"].get("height_m") or 30)
    page, watch, shot = _open(browser, f"{live_url}/scene#camera={lon},{lat},{top + 180},0,-90", tmp_path,
                              "scene-pick-before")
    assert watch.problems == [] and page.evaluate("window.twinScene.errors") == []
    # the deepest terrain level was asked for and answered; the tileset drew features; the canvas shows them
    layer = httpx.get(f"{live_url}/terrain/layer.json").json()
    assert layer["maxzoom"] in {int(u.split("/terrain/")[1].split("/")[0]) for u, s in watch.terrain if s == 200}
    assert page.evaluate("window.twinScene.tileset.statistics.numberOfFeaturesLoaded") > 0
    assert float(_pixels(shot)[:3].std()) > 10
    # close up, Cesium draws the deepest terrain level: its ground height is the DEM's (it decoded the tiles)
    ground = page.evaluate(
        "([lon, lat]) => window.twinScene.viewer.scene.globe.getHeight(Cesium.Cartographic.fromDegrees(lon, lat))",
        [lon, lat])
    assert ground is not None and abs(ground - _dem_height(town_store, lon, lat)) < 0.3
    size = page.viewport_size
    page.mouse.click(size["width"] / 2, size["height"] / 2)  # the camera looks straight down at the building
    page.wait_for_selector("#card:not([hidden])", timeout=10_000)
    assert page.text_content("#card-title") == f"buildings #{feature['id']}"
    href = page.get_attribute("#card-link", "href")
    assert href.endswith(f"/collections/buildings/items/{feature['id']}")
    wait_for(page, "document.querySelectorAll('#card-props tr').length > 3", 10)
    assert "height_m" in page.inner_text("#card-props")
    _save(page, tmp_path / "scene-pick.png")
    assert watch.problems == [] and page.evaluate("window.twinScene.errors") == []
    page.close()
