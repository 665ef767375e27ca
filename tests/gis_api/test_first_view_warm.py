"""TWIN_FIRST_VIEW_WARM: at start the server renders every tile of the viewer's first view into its
caches in the background, reported by /readyz; afterwards a client asking for those tiles (with the
style's and TileJSON's URLs, as MapLibre does) waits for no render. The browser test
(test_viewer_browser, bare_url) checks the same with a real MapLibre."""

from __future__ import annotations

import time

import pytest

from tiles.first_view import first_view_tiles

pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)


def _misses(client) -> dict[str, float]:  # noqa: ANN001
    out = {}
    for line in client.get("/metrics").text.splitlines():
        for name in ("twin_tile_cache_lookups_total", "twin_raster_tile_lookups_total"):
            if line.startswith(name + '{result="miss"}'):
                out[name] = float(line.rsplit(" ", 1)[1])
    return out


def test_the_first_view_is_rendered_at_start_and_served_without_a_render(town_store, town_settings, tmp_path):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    settings = TwinSettings(**{**town_settings.model_dump(), "first_view_warm": "1600x1080"})
    with TestClient(create_app(settings, store=town_store)) as client:
        deadline = time.monotonic() + 300
        while (status := client.get("/readyz").json()["checks"]["first view tiles"]).startswith("warming"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status.startswith("ok (") and client.get("/readyz").json()["status"] == "ok", status
        style = client.get("/styles/twin.json").json()
        bounds = style["metadata"]["twin:bounds"]
        urls = []
        for src in style["sources"].values():
            if src["type"] == "vector":
                tiles = first_view_tiles(bounds, [(1600, 1080)], minzoom=src["minzoom"], maxzoom=src["maxzoom"],
                                         source_bounds=src["bounds"])
                template = src["tiles"][0]
            else:
                tiles = first_view_tiles(bounds, [(1600, 1080)], tile_size=src["tileSize"], round_zoom=True,
                                         minzoom=src["minzoom"], maxzoom=src["maxzoom"], source_bounds=src["bounds"])
                template = src["tiles"][0]
            assert tiles, src
            urls += [template.format(z=t.z, x=t.x, y=t.y) for t in tiles]
        assert any("/raster/ortho/" in u for u in urls) and any(".mvt" in u for u in urls)
        before = _misses(client)
        assert len(before) == 2, before
        for url in urls:  # as a browser over http asks (gzip), and over https (br)
            for accept in ("gzip, deflate", "gzip, deflate, br, zstd"):
                r = client.get(url, headers={"Accept-Encoding": accept})
                assert r.status_code in (200, 204), (url, r.status_code)
        assert _misses(client) == before
        # a tile outside the first view is rendered on request (the warm-up is not the whole pyramid)
        z, x, y = (int(v) for v in urls[-1].rsplit("/", 3)[1:3] + [urls[-1].rsplit("/", 1)[1].split(".")[0]])
        client.get(urls[-1].replace(f"/{z}/{x}/{y}.", f"/{z + 2}/{4 * x}/{4 * y}."))
        assert _misses(client) != before


def test_the_warm_up_is_off_with_no_sizes(town_store, town_settings):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    settings = TwinSettings(**{**town_settings.model_dump(), "first_view_warm": ""})
    with TestClient(create_app(settings, store=town_store)) as client:
        assert "first view tiles" not in client.get("/readyz").json()["checks"]
        assert getattr(client.app.state, "first_view_warm", None) is None
    with pytest.raises(ValueError):
        TwinSettings(first_view_warm="1600 by 1080")


def test_no_first_view_warm_up_without_a_tile_cache(town_store, town_settings):
    """With TWIN_TILE_CACHE_MB=0 and no Redis nothing would keep the renders: the warm-up does not run
    (it would only take the CPU from the first visitor), and /readyz does not report it."""
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    settings = TwinSettings(**{**town_settings.model_dump(), "first_view_warm": "1600x1080", "tile_cache_mb": 0,
                               "redis_url": None})
    with TestClient(create_app(settings, store=town_store)) as client:
        assert getattr(client.app.state, "first_view_warm", None) is None
        checks = client.get("/readyz").json()["checks"]
        assert "first view tiles" not in checks
