"""The warm pyramid: every tile of the style's sources cached after the walk; an edit re-renders
exactly the tiles it touched (both backends)."""

from __future__ import annotations

import datetime as dt
import gzip
import math
import time

import mapbox_vector_tile
import pytest
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import text

from tiles.cache import TileCache
from tiles.service import TileService
from tiles.tms import Tile
from tiles.warm import TileWarmer, parse_zoom_range
from twin.catalog import CLOSED_EVENTS_ZOOM

SOURCES = {"twin": ("buildings",), "twin-live": ("events",)}
P, FAR = (121.02, 31.75), (121.031, 31.75)  # 1 km apart


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def event(i: int, lon: float, lat: float) -> dict:
    return {"id": i, "code": f"EV-{i}", "source": "hotline", "category": "litter", "title": f"event {i}",
            "status": "reported", "reported_at": dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC), "geom": Point(lon, lat)}


def building(i: int, lon: float, lat: float) -> dict:
    return {"id": i, "code": f"WB-{i}", "use": "residential", "floors": 3, "height_m": 9.0,
            "geom": MultiPolygon([box(lon, lat, lon + 0.0004, lat + 0.0004)])}


@pytest.fixture
def warm_store(empty_store):
    empty_store.write_features("events", [event(1, *P), event(2, *FAR)])
    empty_store.write_features("buildings", [building(1, *P), building(2, *FAR)])
    yield empty_store
    empty_store.clear(["events", "buildings"])


@pytest.fixture
def warmer(warm_store):
    svc = TileService(warm_store, cache=TileCache(64 * 2**20), version_ttl=0.05)
    w = TileWarmer(svc, SOURCES, zooms=range(13, 17), cpu_share=1.0, encoding="gzip", poll_s=0.05)
    yield w
    w.stop()
    svc.close()


def test_the_walk_leaves_every_tile_of_the_pyramid_cached(warmer):
    warmer.run_pass()
    tiles = warmer.pyramid()
    assert tiles and warmer.walked == len(tiles)
    svc = warmer.service
    svc.versions.get()
    assert all(svc.cache.get_memory(f"{svc.etag(warmer.specs[name], t)}:{warmer.encoding}") is not None for name, t in tiles)
    assert warmer.rendered == len(tiles)
    warmer.run_pass()  # a second walk finds everything cached: nothing rendered again
    assert warmer.rendered == len(tiles)


def test_an_edit_re_renders_only_the_touched_tiles_of_the_source_holding_the_layer(warmer, warm_store):
    warmer.run_pass()
    svc = warmer.service
    live = svc.layer_specs("events")
    for z in warmer.zooms:  # a viewer looks at the place (re-renders follow demand)
        svc.tile(live, tile_at(*P, z), "gzip")
    warmer.start()
    with warm_store.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code = 'EV-1'"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (warmer.rerendered and warmer.idle()):
        time.sleep(0.05)
    assert warmer.idle()
    # one to a few tiles per zoom around P, all in the live source; the buildings were not touched
    assert len(warmer.zooms) <= warmer.rerendered <= 4 * len(warmer.zooms)
    for z in warmer.zooms:
        svc.versions.get()
        hit = svc.cache.get_memory(f"{svc.etag(live, tile_at(*P, z))}:gzip")
        assert hit is not None, f"z{z} tile around the edit is warm again"
        feats = mapbox_vector_tile.decode(gzip.decompress(hit)).get("events", {"features": []})["features"]
        # closed events are in tiles from CLOSED_EVENTS_ZOOM on: closing it took it out of the coarser ones
        want = {"closed"} if z >= CLOSED_EVENTS_ZOOM else set()
        assert {f["properties"]["status"] for f in feats if f["id"] == 1} == want, f"z{z}"


def _edit_both_events(store) -> None:
    with store.engine.begin() as conn:  # one transaction: both edits are learned in the same poll
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code IN ('EV-1', 'EV-2')"))
    time.sleep(0.1)  # past the version TTL


def test_a_requested_touched_tile_re_renders_before_an_unrequested_one(warm_store):
    svc = TileService(warm_store, cache=TileCache(64 * 2**20), version_ttl=0.05)
    w = TileWarmer(svc, SOURCES, zooms=range(15, 17), cpu_share=1.0, encoding="gzip", poll_s=0.05,
                   demand_window_s=None)  # keep every touched tile queued, to see the order
    try:
        w.run_pass()
        live = svc.layer_specs("events")
        asked = tile_at(*P, 15)
        svc.tile(live, asked, "gzip")  # a viewer looks at the place of EV-1, not at EV-2's
        _edit_both_events(warm_store)
        w.run_pass()  # pulls the changes, serves the queue first, then walks
        order = list(w.recent)
        assert order[0] == ("twin-live", asked)
        far = {("twin-live", tile_at(*FAR, z)) for z in w.zooms}
        assert far <= set(order[1:]), "unrequested touched tiles are re-rendered after the requested one"
        assert all(name == "twin-live" for name, _ in order), "an event edit costs no building tile"
    finally:
        w.stop()
        svc.close()


def test_touched_slow_tiles_nobody_asked_for_are_dropped_and_render_on_demand(warm_store):
    svc = TileService(warm_store, cache=TileCache(64 * 2**20), version_ttl=0.05)
    w = TileWarmer(svc, SOURCES, zooms=range(15, 17), cpu_share=1.0, encoding="gzip", poll_s=0.05,
                   demand_window_s=300.0)  # TWIN_TILE_WARM_DEMAND_S=300
    try:
        w.run_pass()
        slow = svc.layer_specs("buildings")
        asked = tile_at(*P, 16)
        svc.tile(slow, asked, "gzip")  # a viewer looks at building 1, nobody at building 2
        w.start()
        with warm_store.engine.begin() as conn:
            conn.execute(text("UPDATE buildings SET height_m = 30 WHERE code IN ('WB-1', 'WB-2')"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (w.rerendered and w.idle()):
            time.sleep(0.05)
        assert w.idle()
        assert ("twin", asked) in w.recent and w.dropped > 0
        assert not any(t in {tile_at(*FAR, z) for z in w.zooms} for _, t in w.recent)
        # the z17 tile above the walked zooms: not kept until someone asks for it
        assert not any(t.z == 17 for _, t in w.recent)
        # a viewer who then looks at building 2 gets the current version, rendered on demand
        body = svc.tile(slow, tile_at(*FAR, 16), "gzip").body
        feats = mapbox_vector_tile.decode(gzip.decompress(body))["buildings"]["features"]
        assert {f["properties"]["height_m"] for f in feats if f["id"] == 2} == {30}
    finally:
        w.stop()
        svc.close()


def test_touched_live_tiles_stay_queued_after_the_requested_ones(warm_store):
    svc = TileService(warm_store, cache=TileCache(64 * 2**20), version_ttl=0.05)
    w = TileWarmer(svc, SOURCES, zooms=range(15, 17), cpu_share=1.0, encoding="gzip", poll_s=0.05)
    try:
        w.run_pass()
        _edit_both_events(warm_store)  # nobody asked for these tiles: cheap, re-rendered anyway
        w.run_pass()
        assert {("twin-live", tile_at(*lonlat, z)) for lonlat in (P, FAR) for z in w.zooms} <= set(w.recent)
        assert w.dropped == 0
    finally:
        w.stop()
        svc.close()


def test_zoom_ranges_parse_and_bad_ones_are_refused():
    assert parse_zoom_range("10-16") == range(10, 17)
    assert parse_zoom_range("14") == range(14, 15)
    for bad in ("16-10", "x", "10-40"):
        with pytest.raises(ValueError):
            parse_zoom_range(bad)


def test_the_server_warms_its_style_sources_and_reports_metrics(warm_store, client_for):
    client = client_for(warm_store, tile_warm=True, tile_warm_zooms="14-15", tile_warm_cpu_share=1.0)
    with client:
        warmer = client.app.state.tile_warmer
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not warmer.idle():
            time.sleep(0.05)
        assert warmer.idle() and warmer.rendered > 0
        t = tile_at(*P, 15)
        style = client.get("/styles/twin.json").json()
        live_url = style["sources"]["twin-live"]["tiles"][0].removeprefix("http://testserver")
        layers = live_url.split("/")[2]
        r = client.get(f"/tiles/{layers}/{t.z}/{t.x}/{t.y}.mvt", headers={"accept-encoding": "br"})
        assert r.status_code == 200
        metrics = client.get("/metrics").text
        assert 'twin_tile_warm_renders_total{reason="walk"}' in metrics
        assert 'twin_tile_cache_lookups_total{result="hit"}' in metrics
