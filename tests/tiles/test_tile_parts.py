"""A composite tile re-rendered after an edit encodes only the layers that changed, and is byte for
byte what a full render gives (tiles/mvt_parts.py, TileService.render), on both backends."""

from __future__ import annotations

import datetime as dt
import gzip
import time

import mapbox_vector_tile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point
from sqlalchemy import text

from tiles.cache import TileCache
from tiles.mvt_parts import split_layers
from tiles.service import TileService
from tiles.tms import Tile

Z = 15
LON, LAT = 121.0 + 0.5 * 360 / 2**Z, 31.7  # the centre of a z15 tile column (its row: see live_town)


def tile_at(lon: float, lat: float, z: int) -> Tile:
    import math

    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(layers=st.dictionaries(names, st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 4095),
                                                          st.integers(0, 10**6)), min_size=1, max_size=20),
                              min_size=1, max_size=6))
def test_split_layers_gives_back_each_layer_and_joins_to_the_tile(layers):
    tile = mapbox_vector_tile.encode(
        [{"name": n, "features": [{"geometry": f"POINT({x} {y})", "properties": {"v": v}} for x, y, v in pts]}
         for n, pts in layers.items()])
    parts = split_layers(tile)
    assert list(parts) == list(layers)
    assert b"".join(parts.values()) == tile
    for n, part in parts.items():
        assert list(mapbox_vector_tile.decode(part)) == [n]


@given(junk=st.binary(min_size=1, max_size=64))
def test_split_layers_refuses_what_is_not_a_tile(junk):
    try:
        parts = split_layers(junk)
    except ValueError:
        return
    assert b"".join(parts.values()) == junk  # it was (by chance) a well-formed run of layers


def _event(i: int, lon: float, lat: float) -> dict:
    return {"id": i, "code": f"EV-{i}", "source": "hotline", "category": "litter", "title": f"event {i}",
            "status": "reported", "reported_at": dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC), "geom": Point(lon, lat)}


def _device(i: int, lon: float, lat: float) -> dict:
    return {"id": i, "code": f"DV-{i}", "name": f"device {i}", "kind": "pm10", "status": "online", "geom": Point(lon, lat)}


@pytest.fixture
def live_town(empty_store):
    d = 0.0001  # all within one z15 tile (~0.011° wide)
    empty_store.write_features("events", [_event(i, LON + i * d, LAT) for i in range(1, 6)])
    empty_store.write_features("devices", [_device(i, LON + i * d, LAT + d) for i in range(1, 40)])
    empty_store.write_features("cameras", [{"id": 1, "code": "CAM-1", "name": "cam", "status": "online",
                                            "heading_deg": 90, "fov_deg": 60, "range_m": 50, "geom": Point(LON, LAT + 2 * d)}])
    yield empty_store
    empty_store.clear(["events", "devices", "cameras"])


def test_an_event_edit_re_encodes_the_events_only_and_the_tile_is_a_full_render(live_town):
    store = live_town
    svc = TileService(store, cache=TileCache(2**22), version_ttl=0.05)
    encoded: list[list[str]] = []
    try:
        real = svc.encoder.encode

        def counting(tile, plans, cap):  # noqa: ANN001 - the real encoder, counted
            encoded.append([p.spec.id for p in plans])
            return real(tile, plans, cap)

        svc.encoder.encode = counting  # type: ignore[method-assign]
        specs = svc.layer_specs("events,devices,cameras")
        t = tile_at(LON, LAT, Z)
        first = svc.tile(specs, t)
        assert set(mapbox_vector_tile.decode(gzip.decompress(first.body))) == {"events", "devices", "cameras"}
        for status in ("verified", "dispatched", "handled"):
            with store.engine.begin() as conn:  # another writer, by plain SQL
                conn.execute(text("UPDATE events SET status = :s WHERE id = 2"), {"s": status})
            time.sleep(0.06)  # past the version TTL
            encoded.clear()
            again = svc.tile(specs, t)
            assert again.etag != first.etag
            assert encoded and all(layers == ["events"] for layers in encoded[1:]), encoded
            fresh = TileService(store, cache=TileCache(2**22), version_ttl=0.05)  # nothing kept: a full render
            try:
                assert gzip.decompress(again.body) == gzip.decompress(fresh.tile(specs, t).body)
            finally:
                fresh.close()
            props = {f["id"]: f["properties"]["status"]
                     for f in mapbox_vector_tile.decode(gzip.decompress(again.body))["events"]["features"]}
            assert props[2] == status
        assert encoded == [["events"]], "from the second re-render on, only the changed layer is encoded"
    finally:
        svc.close()


def test_a_tile_rendered_for_br_is_a_hit_for_gzip_and_identity_clients(live_town):
    """Without Redis a render makes only the encoding asked for (browsers ask for br); a gzip or an
    identity client is then served from it, the same tile, without a render."""
    import brotli

    svc = TileService(live_town, cache=TileCache(2**22), version_ttl=0.05)
    try:
        specs = svc.layer_specs("events,devices,cameras")
        t = tile_at(LON, LAT, Z)
        br = svc.tile(specs, t, "br")
        assert svc.cache.get_memory(f"{br.etag}:gzip") is None, "no gzip copy made for nobody"
        rendered: list[int] = []
        real = svc.render
        svc.render = lambda *a, **k: rendered.append(1) or real(*a, **k)  # type: ignore[method-assign]
        gz = svc.tile(specs, t, "gzip")
        plain = svc.tile(specs, t, "identity")
        assert rendered == []
        assert gz.etag == br.etag == plain.etag
        assert gzip.decompress(gz.body) == brotli.decompress(br.body) == plain.body
    finally:
        svc.close()
