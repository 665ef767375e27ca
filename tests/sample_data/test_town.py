"""The sample town: deterministic, complete, and internally consistent."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import shapely

from sample_data import build_sample_town, generate_town, write_rasters
from twin.schema import LAYER_MODELS

SCALE = 0.08
GEOM_TYPES = {"Point": ("Point",), "LineString": ("LineString",), "MultiPolygon": ("Polygon", "MultiPolygon")}


@pytest.fixture(scope="module")
def town():
    return generate_town(scale=SCALE)


@pytest.fixture(scope="module")
def rasters(town, tmp_path_factory):
    return write_rasters(town, tmp_path_factory.mktemp("rasters"))


def _frozen(rows):
    return [{k: (v.wkb if k == "geom" else v) for k, v in r.items()} for r in rows]


def _poly(layer_rows, **match):
    return shapely.union_all([r["geom"] for r in layer_rows if all(r[k] == v for k, v in match.items())])


def _inside(a, b, tol=1e-6) -> bool:
    """``a`` lies in ``b`` (area outside below ``tol`` of a's area: float noise after reprojection)."""
    return shapely.difference(a, b).area <= tol * max(a.area, 1e-12)


def test_deterministic_for_a_seed(town):
    again = generate_town(scale=SCALE)
    for layer in town.layers:
        assert _frozen(again.layers[layer]) == _frozen(town.layers[layer]), layer
    other = generate_town(seed=7, scale=SCALE)
    assert _frozen(other.layers["buildings"]) != _frozen(town.layers["buildings"])


def test_every_layer_present_with_schema_columns_and_valid_geometry(town):
    assert set(town.layers) == set(LAYER_MODELS)
    lon0, lat0, lon1, lat1 = town.bounds
    assert 120.7 < lon0 < lon1 < 121.1 and 31.5 < lat0 < lat1 < 31.9
    for layer, rows in town.layers.items():
        assert rows, layer
        cols = {c.name for c in LAYER_MODELS[layer].__table__.columns} - {"id"}
        from twin.catalog import LAYERS
        want = GEOM_TYPES[LAYERS[layer].geometry_type]
        for r in rows:
            assert set(r) <= cols, (layer, set(r) - cols)
            assert r["geom"].geom_type in want and r["geom"].is_valid and not r["geom"].is_empty, (layer, r["code"])
        codes = [r["code"] for r in rows]
        assert len(set(codes)) == len(codes), layer


def test_grid_hierarchy(town):
    g = town.layers["grids"]
    levels = {lv: [r for r in g if r["level"] == lv] for lv in ("town", "village", "unit")}
    assert len(levels["town"]) == 1 and levels["village"] and len(levels["unit"]) >= 3
    village_codes = {r["code"] for r in levels["village"]}
    assert all(r["parent_code"] == levels["town"][0]["code"] for r in levels["village"])
    assert all(r["parent_code"] in village_codes and r["code"].startswith(r["parent_code"]) for r in levels["unit"])
    # unit grids tile the town
    units = shapely.union_all([r["geom"] for r in levels["unit"]])
    assert abs(units.area - levels["town"][0]["geom"].area) / units.area < 1e-6
    unit_codes = {r["code"] for r in levels["unit"]}
    seen = [c for e in town.layers["evaluation_grids"] for c in e["unit_grid_codes"]]
    assert set(seen) == unit_codes and len(seen) == len(unit_codes)
    eg_codes = {e["code"] for e in town.layers["evaluation_grids"]}
    assert all(p["evaluation_grid_code"] in eg_codes for p in town.layers["evaluation_points"])


def test_buildings_do_not_overlap_and_sit_in_their_grid(town):
    b = town.layers["buildings"]
    geoms = np.array([r["geom"] for r in b], dtype=object)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    assert np.all(i == j), "overlapping buildings"
    river = town.frame.to_lonlat(np.array([town.layout.river], dtype=object))[0]
    assert not shapely.intersects(river, geoms).any()
    units = [r for r in town.layers["grids"] if r["level"] == "unit"]
    ugeoms = np.array([u["geom"] for u in units], dtype=object)
    bi, ui = shapely.STRtree(ugeoms).query(shapely.centroid(geoms), predicate="within")
    containing = {int(a): units[int(c)]["code"] for a, c in zip(bi, ui, strict=True)}
    assert all(containing[k] == r["grid_code"] for k, r in enumerate(b))
    for r in b:
        assert r["floors"] >= 1 and r["height_m"] > 2
        assert (r["households"] or 0) >= (1 if r["use"] == "residential" else 0)


def test_gravity_pipes_fall_and_networks_join_at_nodes(town):
    nodes = {n["code"]: n for n in town.layers["pipe_nodes"]}
    utilities = {p["utility"] for p in town.layers["pipelines"]}
    assert {"water_supply", "rain", "sewage", "gas"} <= utilities
    for p in town.layers["pipelines"]:
        a, b = nodes[p["start_node_code"]], nodes[p["end_node_code"]]
        assert a["utility"] == b["utility"] == p["utility"]
        coords = shapely.get_coordinates(p["geom"])
        assert tuple(coords[0]) == (a["geom"].x, a["geom"].y)
        assert tuple(coords[-1]) == (b["geom"].x, b["geom"].y)
        if p["gravity"]:
            assert p["start_invert_m"] > p["end_invert_m"], p["code"]
            assert p["pressure_mpa"] is None
        elif p["utility"] in ("water_supply", "gas", "heat"):
            assert p["pressure_mpa"] > 0
        assert p["start_depth_m"] > 0.3 and p["end_depth_m"] > 0.3
    assert any(n["kind"] == "outfall" for n in nodes.values())
    assert any(n["kind"] == "valve" and n["utility"] == "water_supply" for n in nodes.values())
    lengths = np.array([p["length_m"] for p in town.layers["pipelines"]])
    assert np.mean((lengths >= 30) & (lengths <= 120)) > 0.9


def test_three_zones_three_lines_are_consistent(town):
    z, lines, farm = town.layers["zones"], town.layers["control_lines"], town.layers["farmland"]
    eco, agri, urban = (_poly(z, kind=k) for k in ("ecological", "agricultural", "urban"))
    red = _poly(lines, kind="ecological_red_line")
    pbf = _poly(lines, kind="permanent_basic_farmland")
    udb = _poly(lines, kind="urban_development_boundary")
    assert _inside(red, eco) and _inside(pbf, agri) and _inside(udb, urban)
    assert shapely.intersection(eco, urban).area < 1e-9
    perm = [f for f in farm if f["is_permanent_basic"]]
    assert perm and len(perm) < len(farm) + 1
    for f in perm:
        assert _inside(f["geom"], pbf) and _inside(f["geom"], agri), f["code"]
    for f in farm:
        assert 1 <= f["grade"] <= 10 and 500 < f["area_m2"] < 10000


def _farmland_is_clear(town) -> None:
    """Fields lie off roads, buildings and the ecological red line; permanent-basic ones in the agricultural zone."""
    farm = np.array([f["geom"] for f in town.layers["farmland"]], dtype=object)
    tree = shapely.STRtree(farm)
    for layer in ("roads", "buildings", "construction_sites"):
        hit = tree.query(np.array([r["geom"] for r in town.layers[layer]], dtype=object), predicate="intersects")
        assert hit.size == 0, layer
    red = _poly(town.layers["control_lines"], kind="ecological_red_line")
    assert not shapely.intersects(red, farm).any()
    agri = _poly(town.layers["zones"], kind="agricultural")
    perm = shapely.union_all([f["geom"] for f in town.layers["farmland"] if f["is_permanent_basic"]])
    assert _inside(perm, agri)


def test_farmland_is_clear_of_roads_buildings_and_the_red_line(town):
    _farmland_is_clear(town)


@pytest.mark.slow
def test_scale_1_is_a_township():
    """Scale 1 is a Jiangsu township of ~60 km²: ~300 km of pipelines, farmland on ~40 % of the land."""
    t = generate_town(scale=1.0)
    assert len(t.layers["buildings"]) == 20000
    to_m = t.frame.to_xy  # EPSG:4528 metres
    town_area = to_m([_poly(t.layers["grids"], level="town")])[0].area
    assert 58e6 < town_area < 62e6
    farm = shapely.area(to_m([f["geom"] for f in t.layers["farmland"]])).sum()
    assert 0.38 <= farm / town_area <= 0.42, farm / town_area
    pipes = t.layers["pipelines"]
    lengths = shapely.length(to_m([p["geom"] for p in pipes]))
    assert np.allclose(lengths, [p["length_m"] for p in pipes], atol=0.1)
    km = {}
    for p, m in zip(pipes, lengths, strict=True):
        km[p["utility"]] = km.get(p["utility"], 0.0) + m / 1000
    assert set(km) == {"water_supply", "rain", "sewage", "gas", "heat", "power", "telecom"}
    assert all(v > 5 for v in km.values()), km
    assert 280 <= sum(km.values()) <= 320, km
    _farmland_is_clear(t)


def test_events_are_a_closed_loop(town):
    ev = town.layers["events"]
    assert {e["source"] for e in ev} >= {"hotline_12345", "grid", "iot_alarm"}
    devices = {d["code"] for d in town.layers["devices"]}
    for e in ev:
        assert e["reported_at"].tzinfo is not None
        assert town.as_of - dt.timedelta(days=366) <= e["reported_at"] <= town.as_of
        if e["status"] == "closed":
            assert e["closed_at"] > e["reported_at"]
        else:
            assert e["closed_at"] is None
        if e["source"] == "iot_alarm":
            assert e["device_code"] in devices
    assert sum(e["status"] == "closed" for e in ev) > 0.7 * len(ev)


def test_devices_and_cameras(town):
    kinds = {d["kind"] for d in town.layers["devices"]}
    assert kinds == {"dust", "water_level", "smoke", "gas", "voltage", "ev_charger"}
    dust = next(d for d in town.layers["devices"] if d["kind"] == "dust")
    assert dust["metrics"][:2] == ["pm10", "pm25"] and dust["thresholds"]["pm10"] == 150
    for c in town.layers["cameras"]:
        assert 0 <= c["heading_deg"] < 360 and 0 < c["fov_deg"] <= 360 and c["range_m"] > 0
        assert c["stream_url"].startswith(("rtsp://", "http://"))


def test_rasters_open_and_dem_matches_terrain(town, rasters):
    from rio_tiler.io import Reader

    with Reader(str(rasters["dem"])) as r:
        assert r.dataset.overviews(1)
        assert r.dataset.nodata is not None
        for k, b in enumerate(town.layers["buildings"][:: max(1, len(town.layers["buildings"]) // 8)]):
            p = b["geom"].centroid
            v = r.point(p.x, p.y).data[0]
            assert abs(float(v) - float(town.elevation(p.x, p.y))) < 0.3, k
    with Reader(str(rasters["ortho"])) as r:
        assert r.dataset.count == 3 and r.dataset.overviews(1)
        img = r.tile(*_tile_of(town), tilesize=256)
        assert img.data.shape == (3, 256, 256) and img.data.std() > 5


def _tile_of(town, z=14):
    import morecantile

    lon, lat = town.origin
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return t.x, t.y, t.z


def test_build_into_spatialite(tmp_path):
    from twin.store import SpatialStore

    s = SpatialStore.from_url(f"sqlite:///{tmp_path / 't.sqlite'}")
    s.migrate()
    counts = build_sample_town(s, tmp_path / "r", scale=0.05)
    assert set(counts) == set(LAYER_MODELS)
    for layer, n in counts.items():
        assert n > 0 and s.summary(layer).count == n, layer
    assert (tmp_path / "r" / "dem.tif").exists() and (tmp_path / "r" / "ortho.tif").exists()
