"""Tile cache: bytes-bounded LRU, data versions in the key, the Redis tier (real Redis), encodings."""

from __future__ import annotations

import gzip
import math
import uuid

import brotli
import mapbox_vector_tile
import pytest
import redis
from shapely.geometry import LineString, MultiPolygon, box

from tiles.cache import MemoryTileCache, TileCache
from tiles.service import TileService
from tiles.tms import Tile

REDIS_URL = "redis://127.0.0.1:6379/0"
LON, LAT = 120.95, 31.75


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def building(i: int, height: float = 9.0) -> dict:
    lon = LON + i * 0.0003
    return {"id": i, "code": f"C-{i}", "use": "residential", "floors": 3, "height_m": height,
            "geom": MultiPolygon([box(lon, LAT, lon + 0.0002, LAT + 0.0002)])}


def road(i: int) -> dict:
    return {"id": i, "code": f"CR-{i}", "road_class": "local",
            "geom": LineString([(LON - 0.001, LAT + 0.0001 * i), (LON + 0.003, LAT + 0.0001 * i)])}


@pytest.fixture
def cache_store(store):
    store.write_features("buildings", [building(1), building(2)], mode="replace")
    store.write_features("roads", [road(1)], mode="replace")
    yield store
    store.clear(["buildings", "roads"])


@pytest.fixture
def redis_prefix():
    prefix = f"twin-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_memory_cache_is_bounded_by_bytes_and_evicts_least_recently_used():
    c = MemoryTileCache(3_000)
    for i in range(3):
        c.set(f"k{i}", b"x" * 800)
    assert c.get("k0") is not None  # k0 is now the most recent
    c.set("k3", b"x" * 800)
    assert c.size_bytes <= 3_000
    assert c.get("k1") is None and c.get("k0") is not None and c.get("k3") is not None
    c.set("huge", b"x" * 10_000)  # larger than the whole cache: not stored
    assert c.get("huge") is None


def test_editing_a_layer_changes_its_tiles_etag_but_not_another_layers(cache_store):
    svc = TileService(cache_store, cache=TileCache(2**20))
    try:
        tile = tile_at(LON, LAT, 15)
        b_specs, r_specs = svc.layer_specs("buildings"), svc.layer_specs("roads")
        before_b, before_r = svc.tile(b_specs, tile).etag, svc.tile(r_specs, tile).etag
        both_before = svc.tile(svc.layer_specs("buildings,roads"), tile).etag
        cache_store.write_features("buildings", [building(3, height=30.0)])  # commit invalidates at once
        assert svc.versions.peek() is None
        after_b, after_r = svc.tile(b_specs, tile), svc.tile(r_specs, tile).etag
        assert after_b.etag != before_b
        assert after_r == before_r
        assert svc.tile(svc.layer_specs("buildings,roads"), tile).etag != both_before
        ids = {f["id"] for f in mapbox_vector_tile.decode(gzip.decompress(after_b.body))["buildings"]["features"]}
        assert 3 in ids
    finally:
        svc.close()


def test_redis_tier_stores_tiles_and_serves_another_process_without_rendering(cache_store, redis_prefix):
    tile = tile_at(LON, LAT, 15)
    first = TileService(cache_store, cache=TileCache(2**20, REDIS_URL, redis_prefix=redis_prefix))
    try:
        res = first.tile(first.layer_specs("buildings"), tile, "gzip")
        stored = redis.Redis.from_url(REDIS_URL).get(f"{redis_prefix}{res.etag}:gzip")
        assert stored == res.body and stored
    finally:
        first.close()
    second = TileService(cache_store, cache=TileCache(2**20, REDIS_URL, redis_prefix=redis_prefix))
    try:
        again = second.tile(second.layer_specs("buildings"), tile, "gzip")
        assert again.body == res.body and again.etag == res.etag
        assert second._encoder is None  # served from Redis: no encoder was ever needed
        assert second.cache.memory.get(f"{res.etag}:gzip") == res.body  # and promoted to memory
    finally:
        second.close()


def test_unreachable_redis_degrades_to_rendering(cache_store):
    svc = TileService(cache_store, cache=TileCache(2**20, "redis://127.0.0.1:1/0"))
    try:
        assert svc.tile(svc.layer_specs("buildings"), tile_at(LON, LAT, 15)).body
    finally:
        svc.close()


def test_encodings_are_negotiated_and_cached_compressed(cache_store):
    svc = TileService(cache_store, cache=TileCache(2**20))
    try:
        specs, tile = svc.layer_specs("buildings"), tile_at(LON, LAT, 15)
        raw = svc.render(specs, tile)
        assert gzip.decompress(svc.tile(specs, tile, "gzip").body) == raw
        assert brotli.decompress(svc.tile(specs, tile, "br").body) == raw
        assert svc.tile(specs, tile, "identity").body == raw
        key = svc.tile(specs, tile, "br").etag
        assert svc.cached(specs, tile, "br").body == svc.cache.memory.get(f"{key}:br")
    finally:
        svc.close()
