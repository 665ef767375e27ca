"""Dust heat map held to a hand-computed score: one monitor, one heavy road, one large site and
trucks placed at known ground distances (pyproj.Geod), on both backends."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import shapely
from pyproj import Geod

from twin.analysis.dust import DustConfig, DustFactor

GEOD = Geod(ellps="WGS84")
P = (120.9501234, 31.3800567)  # off the rounded frame centre, so inside one cell
TOKEN = "dust-test-token"


def _at(az: float, dist: float, origin=P) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(origin[0], origin[1], az, dist)
    return float(lon), float(lat)


@pytest.fixture
def dust_world(empty_store):
    s = empty_store
    s.write_features("devices", [{"code": "YC1", "name": "扬尘监测仪1", "kind": "dust", "metrics": ["pm10"],
                                  "thresholds": {"pm10": 150.0}, "status": "online",
                                  "installed_on": dt.date(2024, 1, 1), "geom": shapely.Point(P)}])
    road = shapely.LineString([_at(0, 200, _at(90, 80)), _at(180, 200, _at(90, 80))])  # 80 m east, N–S
    s.write_features("roads", [
        {"code": "R1", "name": "渣土路", "road_class": "arterial", "traffic_volume": 20000, "heavy_share": 0.1,
         "geom": road},
        {"code": "R2", "name": "小路", "road_class": "local", "traffic_volume": 300, "heavy_share": 0.0,
         "geom": shapely.LineString([_at(90, 10), _at(90, 30)])},  # close but quiet: not heavy traffic
    ])
    w0, w1 = _at(270, 150), _at(270, 250)  # the site spans 150–250 m west, ±50 m north–south
    site = shapely.Polygon([_at(0, 50, w0), _at(0, 50, w1), _at(180, 50, w1), _at(180, 50, w0)])
    s.write_features("construction_sites", [
        {"code": "S1", "name": "大型工地", "status": "active", "area_m2": 10000.0, "dust_controlled": False,
         "geom": shapely.MultiPolygon([site])},
        {"code": "S2", "name": "小工地", "status": "active", "area_m2": 800.0, "dust_controlled": False,
         "geom": shapely.MultiPolygon([shapely.Point(_at(0, 20)).buffer(0.0001)])},  # small: does not count
    ])
    yield s
    s.clear()


def test_monitor_score_and_cell_are_as_computed_by_hand(dust_world, client_for):
    c = client_for(dust_world, admin_token=TOKEN)
    r = c.put("/analysis/dust-heat/inputs", json={"readings": {"YC1": 200.0},
                                                  "trucks": [_at(0, 100), _at(180, 200), _at(45, 400)]},
              headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    r = c.get("/analysis/dust-heat", params={"cell_m": 25})
    assert r.status_code == 200, r.text
    body = r.json()
    m = body["monitors"][0]
    # pm10 200 → grade 2 of 4; road 80 m → 3 of 4; 2 trucks within 300 m → 1 of 4; site 150 m → 2 of 4
    assert {k: v["grade"] for k, v in m["factors"].items()} == {"pm10": 2, "road_distance": 3, "trucks": 1,
                                                                "site_distance": 2}
    assert abs(m["factors"]["road_distance"]["value"] - 80) < 0.5
    assert abs(m["factors"]["site_distance"]["value"] - 150) < 0.5
    hand = 100 * (0.4 * 2 / 4 + 0.2 * 3 / 4 + 0.2 * 1 / 4 + 0.2 * 2 / 4) / 1.0
    assert m["score"] == pytest.approx(hand, abs=0.01) and hand == pytest.approx(50.0)
    assert body["warnings"] == [{"code": "YC1", "pm10": 200.0, "message": "PM10 over its limit"}]
    # the cell holding the monitor: 50 · exp(−½ (d/250)²), d from its centre to the monitor
    cell = next(f for f in body["features"] if shapely.geometry.shape(f["geometry"]).contains(shapely.Point(P)))
    centre = shapely.geometry.shape(cell["geometry"]).centroid
    _, _, d = GEOD.inv(centre.x, centre.y, *P)
    assert cell["properties"]["score"] == pytest.approx(hand * math.exp(-0.5 * (d / 250) ** 2), abs=0.01)
    assert cell["properties"]["grade"] == 2
    # cells are 25 m squares on the ground
    _, _, side = GEOD.inv(*shapely.geometry.shape(cell["geometry"]).exterior.coords[0][:2],
                          *shapely.geometry.shape(cell["geometry"]).exterior.coords[1][:2])
    assert side == pytest.approx(25.0, abs=0.05)
    # nothing scored beyond 3 × 250 m
    for f in body["features"]:
        ctr = shapely.geometry.shape(f["geometry"]).centroid
        assert GEOD.inv(ctr.x, ctr.y, *P)[2] <= 750 + 20


def _alpha(png: bytes) -> np.ndarray:
    from rasterio.io import MemoryFile

    with MemoryFile(png) as f, f.open() as ds:
        assert ds.count == 4
        return ds.read(4)


def test_heat_tiles_are_a_virtual_raster_dataset_that_follows_the_readings(dust_world, client_for):
    import morecantile

    c = client_for(dust_world, admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    c.put("/analysis/dust-heat/inputs", json={"readings": {"YC1": 100.0}, "trucks": []}, headers=auth)
    assert "dust-heat" in [d["name"] for d in c.get("/raster").json()["datasets"]]
    t = morecantile.tms.get("WebMercatorQuad").tile(P[0], P[1], 16)
    url = f"/raster/dust-heat/{t.z}/{t.x}/{t.y}.png"
    r1 = c.get(url)
    assert r1.status_code == 200 and r1.headers["content-type"] == "image/png"
    alpha1 = _alpha(r1.content)
    assert alpha1.max() > 0, "the monitor's surroundings are coloured"
    c.put("/analysis/dust-heat/inputs", json={"readings": {"YC1": 400.0}}, headers=auth)
    import time

    time.sleep(1.1)  # the catalogue trusts a looked-up dataset for 1 s
    r2 = c.get(url)
    assert r2.headers["etag"] != r1.headers["etag"]
    alpha2 = _alpha(r2.content)
    assert (alpha2 > 0).sum() > (alpha1 > 0).sum(), "a higher reading spreads the heat"
    far = morecantile.tms.get("WebMercatorQuad").tile(10.0, 10.0, 16)
    r3 = c.get(f"/raster/dust-heat/{far.z}/{far.x}/{far.y}.png")
    assert r3.status_code == 200
    assert _alpha(r3.content).max() == 0


def test_dust_inputs_need_the_token_and_sane_values(dust_world, client_for):
    c = client_for(dust_world, admin_token=TOKEN)
    assert c.put("/analysis/dust-heat/inputs", json={"readings": {"YC1": 1.0}}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for body in ({"readings": {"YC1": -5}}, {"trucks": [[500, 0]]}, {"trucks": [[1]]}, {"readings": {"YC1": "x"}}):
        r = c.put("/analysis/dust-heat/inputs", json=body, headers=auth)
        assert r.status_code == 400, (body, r.text)
    assert c.get("/analysis/dust-heat", params={"cell_m": 0}).status_code == 400
    assert c.get("/analysis/dust-heat", params={"cell_m": 0.01, "bbox": "120,31,121,32"}).status_code == 400


def test_config_refuses_bad_thresholds():
    from twin.errors import InvalidParameter

    with pytest.raises(InvalidParameter):
        DustConfig(factors=(DustFactor("pm10", 1.0, (150.0, 75.0), True),))
    with pytest.raises(InvalidParameter):
        DustConfig(factors=(DustFactor("pm10", 0.0, (75.0,), True),))


def test_grid_and_tiles_score_alike():
    """The windowed grid and the per-point scoring behind the tiles give the same scores."""
    from twin.analysis.dust import Monitor, MonitorScore, heat_at, heat_grid

    rng = np.random.default_rng(2)
    cfg = DustConfig()
    scored = [MonitorScore(Monitor(f"M{k}", 120.9 + rng.uniform(-0.01, 0.01), 31.7 + rng.uniform(-0.01, 0.01)),
                           {}, {}, float(rng.uniform(0, 100)), False) for k in range(8)]
    grid = heat_grid((120.885, 31.685, 120.915, 31.715), scored, cfg)
    rows, cols = np.meshgrid(np.arange(grid.scores.shape[0]), np.arange(grid.scores.shape[1]), indexing="ij")
    cx = grid.x0 + (cols + 0.5) * grid.cell_m
    cy = grid.y0 + (rows + 0.5) * grid.cell_m
    lon, lat = grid.frame.lonlat(cx.ravel(), cy.ravel())
    assert np.allclose(heat_at(lon, lat, scored, cfg).reshape(grid.scores.shape), grid.scores, atol=1e-3)
