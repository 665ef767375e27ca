"""Vector tile content on both backends: positions, ids, properties, composites, thinning, zoom range."""

from __future__ import annotations

import datetime as dt
import math

import mapbox_vector_tile
import pytest
from shapely.geometry import LineString, MultiPolygon, Point, box

from tiles.cache import TileCache
from tiles.mvt import plan_tile
from tiles.service import TileService
from tiles.tms import EXTENT, Tile, lonlat_to_mercator, tile_bounds

LON, LAT = 120.9, 31.7
M_LAT = 1 / 111_320
M_LON = 1 / (111_320 * math.cos(math.radians(LAT)))


def square(lon: float, lat: float, metres: float) -> MultiPolygon:
    return MultiPolygon([box(lon, lat, lon + metres * M_LON, lat + metres * M_LAT)])


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return Tile(z, x, y)


def grid_position(lon: float, lat: float, tile: Tile) -> tuple[float, float]:
    """Where a lon/lat point falls in the tile's 4096 grid (y down)."""
    mx, my = lonlat_to_mercator(lon, lat)
    minx, miny, maxx, maxy = tile_bounds(tile)
    return (mx - minx) / (maxx - minx) * EXTENT, (maxy - my) / (maxy - miny) * EXTENT


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}


BIG = 101  # 60 m × 60 m building
TINY = 102  # 4 m × 4 m shed
EVENT_AT = dt.datetime(2026, 11, 22, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tile_store(store):
    store.clear(["buildings", "roads", "events"])
    store.write_features("buildings", [
        {"id": BIG, "code": "B-BIG", "use": "commercial", "floors": 6, "height_m": 19.5,
         "geom": square(LON, LAT, 60)},
        {"id": TINY, "code": "B-TINY", "use": "residential", "floors": 1, "height_m": 3.0,
         "geom": square(LON + 100 * M_LON, LAT, 4)},
    ], mode="replace")
    store.write_features("roads", [
        {"id": 7, "code": "R-7", "name": "Riverside Road", "road_class": "arterial", "traffic_volume": 12000,
         "geom": LineString([(LON - 0.001, LAT - 0.0005), (LON + 0.002, LAT - 0.0005)])},
    ], mode="replace")
    store.write_features("events", [
        {"id": 55, "code": "E-55", "source": "hotline", "category": "dust", "title": "Dust on site",
         "status": "reported", "reported_at": EVENT_AT, "geom": Point(LON + 0.0003, LAT + 0.0002)},
    ], mode="replace")
    yield store
    store.clear(["buildings", "roads", "events"])


@pytest.fixture
def service(tile_store):
    svc = TileService(tile_store, cache=TileCache(8 * 2**20))
    yield svc
    svc.close()


def test_point_feature_lands_at_its_grid_position_with_id_and_properties(service):
    lon, lat = LON + 0.0003, LAT + 0.0002
    tile = tile_at(lon, lat, 16)
    layers = decode(service.render(service.layer_specs("events"), tile))
    (feature,) = layers["events"]["features"]
    assert feature["id"] == 55
    assert feature["properties"] == {"code": "E-55", "source": "hotline", "category": "dust",
                                     "status": "reported", "reported_at": "2026-11-22T08:30:00Z"}
    x, y = feature["geometry"]["coordinates"]
    ex, ey = grid_position(lon, lat, tile)
    assert abs(x - ex) <= 1 and abs(y - ey) <= 1
    assert layers["events"]["extent"] == 4096


def test_building_polygon_carries_tile_properties_only(service):
    tile = tile_at(LON + 0.0001, LAT + 0.0001, 16)
    feats = {f["id"]: f for f in decode(service.render(service.layer_specs("buildings"), tile))["buildings"]["features"]}
    big = feats[BIG]
    assert big["properties"] == {"use": "commercial", "floors": 6, "height_m": 19.5}  # no code: fetched by id
    assert big["geometry"]["type"] == "Polygon"
    xs = [p[0] for p in big["geometry"]["coordinates"][0]]
    ys = [p[1] for p in big["geometry"]["coordinates"][0]]
    ex0, ey1 = grid_position(LON, LAT, tile)
    ex1, ey0 = grid_position(LON + 60 * M_LON, LAT + 60 * M_LAT, tile)
    # clipped to the tile plus its 64-unit buffer
    ex0, ey0, ex1, ey1 = (min(max(v, -64), EXTENT + 64) for v in (ex0, ey0, ex1, ey1))
    assert abs(min(xs) - ex0) <= 1 and abs(max(xs) - ex1) <= 1
    assert abs(min(ys) - ey0) <= 1 and abs(max(ys) - ey1) <= 1


def test_composite_tile_has_one_layer_per_twin_layer(service):
    tile = tile_at(LON, LAT, 15)
    layers = decode(service.render(service.layer_specs("buildings,roads,events"), tile))
    assert set(layers) == {"buildings", "roads", "events"}
    assert [f["id"] for f in layers["roads"]["features"]] == [7]
    assert layers["roads"]["features"][0]["properties"]["name"] == "Riverside Road"


def test_tile_outside_the_data_extent_is_empty_and_plans_no_query(service):
    far = tile_at(10.0, 50.0, 14)
    specs = service.layer_specs("buildings,roads")
    assert plan_tile(far, specs, service.extents(specs, service.versions.get())) == []
    assert service.render(specs, far) == b""


def test_zoom_below_the_layer_minzoom_is_empty(service):
    specs = service.layer_specs("buildings")
    assert specs[0].min_zoom == 12
    assert service.render(specs, tile_at(LON, LAT, 11)) == b""
    assert service.render(specs, tile_at(LON, LAT, 14)) != b""  # z12–z13 draw building blocks (test_blocks.py)


def test_thinning_drops_subpixel_buildings_at_z14_but_keeps_them_at_z16(service):
    specs = service.layer_specs("buildings")
    z14 = {f["id"] for f in decode(service.render(specs, tile_at(LON, LAT, 14)))["buildings"]["features"]}
    z16 = {f["id"] for f in decode(service.render(specs, tile_at(LON + 100 * M_LON, LAT, 16)))["buildings"]["features"]}
    assert BIG in z14 and TINY not in z14
    assert TINY in z16


def test_feature_cap_bounds_features_per_layer(tile_store):
    svc = TileService(tile_store, feature_cap=1)
    try:
        layers = decode(svc.render(svc.layer_specs("buildings"), tile_at(LON, LAT, 16)))
        assert len(layers["buildings"]["features"]) == 1
    finally:
        svc.close()


def test_z14_building_inside_the_tile_lands_on_its_grid_with_an_exterior_ring_of_mvt_winding(service, store):
    """At z14 PostGIS translates outlines pre-snapped to the z14 grid (no per-building ST_AsMVTGeom);
    the result must be what the general path gives: exact grid positions and MVT ring order."""
    import shapely

    tile = tile_at(LON, LAT, 14)
    minx, miny, maxx, maxy = tile_bounds(tile)
    inside = minx < lonlat_to_mercator(LON, LAT)[0] and lonlat_to_mercator(LON + 60 * M_LON, LAT)[0] < maxx
    assert inside, "the 60 m building lies wholly inside its z14 tile"
    raw = service.render(service.layer_specs("buildings"), tile)
    big = next(f for f in decode(raw)["buildings"]["features"] if f["id"] == BIG)
    ring = big["geometry"]["coordinates"][0]
    ex0, ey1 = grid_position(LON, LAT, tile)
    ex1, ey0 = grid_position(LON + 60 * M_LON, LAT + 60 * M_LAT, tile)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert abs(min(xs) - ex0) <= 1 and abs(max(xs) - ex1) <= 1
    assert abs(min(ys) - ey0) <= 1 and abs(max(ys) - ey1) <= 1
    # decoded with y down, an exterior ring that MVT readers accept is counter-clockwise here
    assert shapely.Polygon(ring).exterior.is_ccw is shapely.Polygon(
        decode(service.render(service.layer_specs("buildings"), tile_at(LON + 0.0001, LAT + 0.0001, 16)))
        ["buildings"]["features"][0]["geometry"]["coordinates"][0]).exterior.is_ccw
    if store.dialect.name == "postgis":
        assert "buildings" in service.encoder.presnapped_layers  # the fast path was the one taken
