"""Clearance check against pipes laid at known ground distances (pyproj.Geod) and known depths."""

from __future__ import annotations

import pytest
import shapely
from pyproj import Geod

from twin.analysis.clearance import clearance_table

GEOD = Geod(ellps="WGS84")
P = (120.9501, 31.3802)


def _at(az, dist, origin=P):
    lon, lat, _ = GEOD.fwd(origin[0], origin[1], az, dist)
    return (float(lon), float(lat))


def _pipe(code, util, dn, a, b, si=None, ei=None, sn=None, en=None):
    return {"code": code, "utility": util, "material": "PE", "diameter_mm": dn, "gravity": False,
            "start_invert_m": si, "end_invert_m": ei, "start_node_code": sn, "end_node_code": en,
            "geom": shapely.LineString([a, b])}


@pytest.fixture
def pipes_world(empty_store):
    w0, w1 = _at(270, 50), _at(90, 50)  # a 100 m east–west water main through P
    rows = [
        _pipe("W", "water_supply", 300, w0, w1, 2.0, 2.0),
        # gas parallel 0.7 m north: clear 0.7 − (0.3 + 0.2)/2 = 0.45 < 0.5 → violation
        _pipe("G", "gas", 200, _at(0, 0.7, w0), _at(0, 0.7, w1), 2.5, 2.5),
        # telecom parallel 1.5 m south: clear 1.5 − 0.23/2 … = 1.27 ≥ 1.0 → fine
        _pipe("T", "telecom", 150, _at(180, 1.5, w0), _at(180, 1.5, w1), 2.6, 2.6),
        # power crossing north–south at P, invert 2.4: clear above the water top (2.3) = 0.1 < 0.5 → violation
        _pipe("E", "power", 150, _at(0, 5), _at(180, 5), 2.4, 2.4),
        # sewer crossing at 20 m east, well below: invert 0.5, top 0.8 → clear 1.2 ≥ 0.4 → fine
        _pipe("S", "sewage", 300, _at(0, 5, _at(90, 20)), _at(180, 5, _at(90, 20)), 0.5, 0.5),
        # a service pipe joined to W at node N1 (shares a node): never a pair
        _pipe("W2", "gas", 100, _at(90, 30), _at(0, 3, _at(90, 30)), 2.0, 2.0, sn="N1"),
    ]
    rows[0]["end_node_code"] = "N1"
    empty_store.write_features("pipelines", rows)
    yield empty_store
    empty_store.clear()


def test_clearance_finds_exactly_the_violations(pipes_world, client_for):
    c = client_for(pipes_world)
    box = [P[0] - 0.001, P[1] - 0.001, P[0] + 0.001, P[1] + 0.001]
    r = c.post("/analysis/clearance", json={"bbox": box})
    assert r.status_code == 200, r.text
    body = r.json()
    got = {(p["kind"], *sorted((p["a_code"], p["b_code"]))): p for p in body["pairs"]}
    assert set(got) >= {("horizontal", "G", "W"), ("vertical", "E", "W")}
    assert got[("horizontal", "G", "W")]["actual_m"] == pytest.approx(0.45, abs=0.01)
    assert got[("horizontal", "G", "W")]["required_m"] == 0.5
    assert got[("vertical", "E", "W")]["actual_m"] == pytest.approx(0.1, abs=0.001)
    assert ("horizontal", "T", "W") not in got and ("vertical", "S", "W") not in got
    assert all("W2" not in (p["a_code"], p["b_code"]) or {p["a_code"], p["b_code"]} != {"W", "W2"}
               for p in body["pairs"])
    assert "GB 50289" in body["table"]["source"]
    # a looser table (override) clears the gas pair
    r2 = c.post("/analysis/clearance", json={"pipes": ["W", "G"], "overrides": {"horizontal_m": {"gas|water_supply": 0.4}}})
    assert r2.status_code == 200 and r2.json()["pairs"] == []


def test_clearance_bad_input(pipes_world, client_for):
    c = client_for(pipes_world)
    for body, status in (({}, 400), ({"bbox": [0, 0, 1, 1], "pipes": ["W"]}, 400), ({"bbox": [121, 31, 122, 32]}, 400),
                         ({"pipes": ["NOPE"]}, 404), ({"pipes": ["W"], "overrides": {"x": {}}}, 400),
                         ({"pipes": ["W"], "overrides": {"vertical_m": {"gas": 1}}}, 400),
                         ({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
                          422)):
        r = c.post("/analysis/clearance", json=body)
        assert r.status_code == status, (body, r.text)


def test_table_keys_are_symmetric():
    t = clearance_table()
    assert t.horizontal_m("gas", "water_supply") == t.horizontal_m("water_supply", "gas") == 0.5
    assert t.vertical_m("rain", "sewage") == t.vertical_m("sewage", "sewage")


def test_clearance_on_the_town_runs(town_client, town_store):
    from twin.analysis.source import features_in_bbox

    fs = features_in_bbox(town_store, "pipelines", (-180, -90, 180, 90), cap=100_000)
    c = fs.geometries[0].centroid
    r = town_client.post("/analysis/clearance", json={"bbox": [c.x - 0.003, c.y - 0.003, c.x + 0.003, c.y + 0.003]})
    assert r.status_code == 200, r.text
    for p in r.json()["pairs"]:
        assert p["status"] == "unknown" or p["actual_m"] < p["required_m"]


def test_every_table_value_carries_its_check_against_the_reference_table():
    """Each minimum records the reference table's value; where they differ twin keeps the stricter one."""
    import json

    from twin.analysis.clearance import DATA

    d = json.loads(DATA.read_text(encoding="utf-8"))
    assert d["checks"]["references"]["horizontal_m"].startswith("http")
    for kind in ("horizontal_m", "vertical_m"):
        assert set(d["checks"][kind]) == set(d[kind])
        for pair, value in d[kind].items():
            c = d["checks"][kind][pair]
            assert c["status"] == ("agrees" if value == c["reference_m"] else "differs"), pair
            assert value >= c["reference_m"], pair
