"""A twin with only OpenStreetMap buildings and roads (no rasters, no other layers) in real headless
Chromium: no failed request, the loaded extent is framed, the layer list shows only what has data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gis_api.test_viewer_browser import ARGS, CHROMIUM, Visit, wait_for
from tests.twin.test_load_own_data import make_pbf
from twin.loader import load_preset

pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)


def test_only_osm_buildings_and_roads_no_failed_request(empty_store, tmp_path: Path, serve_app):
    from playwright.sync_api import sync_playwright

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    load_preset(empty_store, make_pbf(tmp_path), "osm", layers=["buildings", "roads"])
    home = tmp_path / "home"  # no rasters in it: the style must not name dem/ortho
    settings = TwinSettings(home=home, database_url=empty_store.engine.url.render_as_string(hide_password=False))
    with serve_app(create_app(settings, store=empty_store)) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            v = Visit(browser, f"{url}/")
            try:
                assert v.problems == [], v.problems
                assert v.eval("window.twinViewer.errors") == []
                west, south, east, north = v.eval("window.twinMap.getBounds().toArray().flat()")
                minx, miny, maxx, maxy = empty_store.summary("buildings").extent
                assert west <= minx and east >= maxx and south <= miny and north >= maxy, "data not framed"
                sources = v.eval("Object.keys(window.twinMap.getStyle().sources)")
                assert "ortho" not in sources and "dem" not in sources, sources
                wait_for(v.page, "document.querySelector('#layer-list input[data-layer]') !== null", 30)
                listed = set(v.eval("[...document.querySelectorAll('#layer-list input[data-layer]')]"
                                    ".map(i => i.dataset.layer)"))
                assert {"buildings", "roads"} <= listed and not listed & {"pipelines", "farmland", "grids"}, listed
            finally:
                v.close()
                browser.close()


def test_a_page_open_before_a_new_village_switches_to_the_new_label_glyphs(empty_store, tmp_path: Path, serve_app):
    """The style's glyph ranges hold only the characters the labels had when the page loaded. A
    village added later with a character no label had gets a new key on the server; the open page,
    when tiles come in (here: after a zoom out), asks for it and switches (map.setGlyphs), and the
    range of the new character — loaded before, as a subset without it — is fetched again with the
    new key (MapLibre lays the labels out again)."""
    from playwright.sync_api import sync_playwright
    from shapely.geometry import MultiPolygon, box

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    def village(code: str, name: str, x0: float, x1: float) -> dict:
        return {"code": code, "name": name, "level": "village", "parent_code": None,
                "geom": MultiPolygon([box(x0, 30.0 + x0 - 120.0, x1, 30.0 + x1 - 120.0)])}

    empty_store.write_features("grids", [village("V1", "和平村", 120.0, 120.004)])
    settings = TwinSettings(home=tmp_path / "home", tile_max_age_s=0,
                            database_url=empty_store.engine.url.render_as_string(hide_password=False))
    app = create_app(settings, store=empty_store)
    with serve_app(app) as url:
        app.state.glyph_prewarm.join(timeout=120)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            v = Visit(browser, f"{url}/")
            try:
                before = v.eval("window.twinMap.getGlyphs()")
                assert "?labels=" in before, before
                # a second village, inside the first (in the view), with a character no label had
                empty_store.write_features("grids", [village("V2", "哈村", 120.001, 120.003)])
                v.eval("window.twinViewer.checkLabelGlyphsSoon()")
                v.eval("window.twinMap.zoomTo(window.twinMap.getZoom() - 1, {duration: 0})")
                wait_for(v.page, f"window.twinMap.getGlyphs() !== {before!r}", 30)
                after = v.eval("window.twinMap.getGlyphs()")
                assert "?labels=" in after and after != before
                v.settle()
                # MapLibre holds the new character's glyph (its range was already loaded, as a subset
                # without it, when the village was added); internal state, read only by this test
                wait_for(v.page, "!!window.twinMap.style.glyphManager.entries['Twin Sans'].glyphs"
                                 f"[{ord('哈')}]", 30)
                assert v.problems == [], v.problems
                assert v.eval("window.twinViewer.errors") == []
            finally:
                v.close()
                browser.close()
