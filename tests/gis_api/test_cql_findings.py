"""Issue 14's CQL2 findings, each through the items endpoint on both backends.

Numbers out of a column's range, CASEI on Unicode, DATE as a whole day, BBOX corner order,
S_DWITHIN at any distance, LIKE patterns ending in a backslash, non-finite coordinates,
and nesting/length caps: each answers correctly or with a 400, never a 500.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from pyproj import Geod

from tests.gis_api.cql_town import BUILDINGS, EVENTS, expect, serve


@pytest.fixture(scope="module")
def client(store):
    yield from serve(store)


def codes(client, layer="buildings", **params) -> list[str]:
    r = client.get(f"/collections/{layer}/items", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["numberMatched"] == fc["numberReturned"] == len(fc["features"])
    return sorted(f["properties"]["code"] for f in fc["features"])


def bad(client, filter: str, lang: str = "cql2-text", layer: str = "buildings") -> str:
    r = client.get(f"/collections/{layer}/items", params={"filter": filter, "filter-lang": lang})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_parameter" and set(body) == {"code", "message", "detail"}
    return body["message"]


ALL = expect(lambda r: True)

# --- 2. integers beyond the column's range -----------------------------------


@pytest.mark.parametrize("text,pred", [
    ("floors = 3000000000", lambda r: False),
    ("floors < 3000000000", lambda r: True),
    ("floors <> 3000000000", lambda r: True),
    ("floors > -3000000000", lambda r: True),
    ("3000000000 > floors", lambda r: True),
    ("floors = 99999999999999999999999", lambda r: False),
    ("floors <= 9223372036854775808", lambda r: True),
    ("floors >= -9223372036854775809", lambda r: True),
    ("floors = 1e20", lambda r: False),
    ("year_built IN (1995, 3000000000)", lambda r: r["year_built"] == 1995),
    ("floors BETWEEN 2 AND 3000000000", lambda r: r["floors"] >= 2),
    ("floors NOT BETWEEN -3000000000 AND 3", lambda r: r["floors"] > 3),
    ("floors + 3000000000 > 3000000002", lambda r: r["floors"] > 2),
    ("floors * 2000000000 > 4000000000", lambda r: r["floors"] > 2),
    ("floors * 9223372036854775807 * 10 > 0", lambda r: True),
    ("height_m * 1e300 * 1e300 > 1e300", lambda r: True),
    ("height_m / 1e-300 / 1e-300 > 0", lambda r: True),
    ("-floors < -5", lambda r: r["floors"] > 5),
    ("floors / 3 > 1.5", lambda r: r["floors"] > 4.5),
])
def test_integers_beyond_the_column_range_compare_correctly(client, text, pred):
    assert codes(client, filter=text) == expect(pred)


def test_integers_beyond_the_range_in_cql2_json(client):
    doc = {"op": "<", "args": [{"property": "floors"}, 99999999999999999999]}
    assert codes(client, filter=json.dumps(doc), **{"filter-lang": "cql2-json"}) == ALL
    doc = {"op": "in", "args": [{"property": "floors"}, [1, 2**31, -(2**63) - 1]]}
    assert codes(client, filter=json.dumps(doc), **{"filter-lang": "cql2-json"}) == expect(lambda r: r["floors"] == 1)


def test_numbers_beyond_a_double_are_400(client):
    assert "out of range" in bad(client, "floors = " + "9" * 400)
    assert "out of range" in bad(client, "floors = " + "9" * 5000)
    assert "out of range" in bad(client, "floors < 1e999")
    assert "out of range" in bad(client, '{"op": "=", "args": [{"property": "floors"}, ' + "9" * 400 + "]}",
                                 "cql2-json")
    assert "out of range" in bad(client, '{"op": "=", "args": [{"property": "floors"}, 1e999]}', "cql2-json")
    assert "out of range" in bad(client, '{"op": "=", "args": [{"property": "floors"}, NaN]}', "cql2-json")


# --- 3. CASEI folds Unicode the same on both backends ---------------------------


@pytest.mark.parametrize("text,names", [
    ("CASEI(name) LIKE CASEI('École%')", {"École Ａ座", "ÉCOLE NORD", "E\u0301cole Est"}),
    ("CASEI(name) = CASEI('école ａ座')", {"École Ａ座"}),
    ("CASEI(name) = CASEI('ÉCOLE Ａ座')", {"École Ａ座"}),
    ("CASEI(name) LIKE CASEI('%ａ座')", {"École Ａ座"}),
    ("CASEI(name) = CASEI('STRAßE 1')", {"Straße 1"}),
    ("CASEI(name) = CASEI('οδος')", {"ΟΔΟΣ"}),
    ("CASEI(name) LIKE CASEI('ECOLE%')", {"ecole sud"}),
    ("CASEI(name) IN (CASEI('ÉCOLE NORD'), CASEI('x'))", {"ÉCOLE NORD"}),
])
def test_casei_folds_unicode_the_same_on_both_backends(client, text, names):
    assert codes(client, filter=text) == expect(lambda r: r["name"] in names)


# --- 4. a DATE against a timestamp is the whole day ----------------------------

E = {e["code"]: e for e in EVENTS}


@pytest.mark.parametrize("text,want", [
    ("T_INTERSECTS(reported_at, DATE('2026-09-29'))", ["E1", "E1late"]),
    ("T_EQUALS(reported_at, DATE('2026-09-29'))", ["E1", "E1late"]),
    ("reported_at = DATE('2026-09-29')", ["E1", "E1late"]),
    ("reported_at <> DATE('2026-09-29')", sorted(set(E) - {"E1", "E1late"})),
    ("T_DISJOINT(reported_at, DATE('2026-09-29'))", sorted(set(E) - {"E1", "E1late"})),
    ("reported_at < DATE('2026-09-29')", ["E0"]),
    ("T_BEFORE(reported_at, DATE('2026-09-29'))", ["E0"]),
    ("reported_at <= DATE('2026-09-29')", ["E0", "E1", "E1late"]),
    ("reported_at > DATE('2026-09-29')", sorted(set(E) - {"E0", "E1", "E1late"})),
    ("T_AFTER(reported_at, DATE('2026-09-29'))", sorted(set(E) - {"E0", "E1", "E1late"})),
    ("DATE('2026-09-29') < reported_at", sorted(set(E) - {"E0", "E1", "E1late"})),
    ("reported_at >= DATE('2026-09-29')", sorted(set(E) - {"E0"})),
    ("reported_at BETWEEN DATE('2026-09-29') AND DATE('2026-09-30')", ["E1", "E1late", "E2"]),
    ("reported_at IN (DATE('2026-09-29'), DATE('2026-10-01'))", ["E1", "E1late", "E3"]),
    ("T_INTERSECTS(reported_at, INTERVAL('2026-09-29', '2026-09-30'))", ["E1", "E1late", "E2"]),
    ("T_DURING(reported_at, INTERVAL('2026-09-29', '2026-09-30'))", ["E1", "E1late", "E2"]),
    ("T_AFTER(reported_at, INTERVAL('2026-09-28', '2026-10-03'))", ["E6", "E7"]),
    ("T_INTERSECTS(reported_at, INTERVAL('..', '2026-09-28'))", ["E0"]),
    ("reported_at = TIMESTAMP('2026-09-29T06:00:00Z')", ["E1"]),
    ("reported_at < DATE('9999-12-31') AND reported_at > DATE('0001-01-01')", sorted(E)),
])
def test_a_date_against_a_timestamp_is_the_whole_utc_day(client, text, want):
    assert codes(client, "events", filter=text) == want


def test_a_date_is_the_whole_day_in_cql2_json(client):
    doc = {"op": "t_intersects", "args": [{"property": "reported_at"}, {"date": "2026-09-29"}]}
    assert codes(client, "events", filter=json.dumps(doc), **{"filter-lang": "cql2-json"}) == ["E1", "E1late"]
    doc = {"op": "t_during", "args": [{"property": "reported_at"},
                                      {"interval": [{"date": "2026-09-29"}, {"date": "2026-09-30"}]}]}
    assert codes(client, "events", filter=json.dumps(doc), **{"filter-lang": "cql2-json"}) == ["E1", "E1late", "E2"]


def test_timestamps_out_of_range_after_a_zone_offset_are_400(client):
    assert "out of the range" in bad(client, "reported_at > TIMESTAMP('0001-01-01T00:00:00+08:00')", layer="events")


# --- 5. BBOX corner order -------------------------------------------------------


def test_bbox_with_min_above_max_is_400_in_both_languages(client):
    assert "BBOX corners" in bad(client, "S_INTERSECTS(geom, BBOX(121, 31, 120, 32))")
    assert "BBOX corners" in bad(client, "S_INTERSECTS(geom, BBOX(120, 32, 121, 31))")
    doc = {"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [121, 31, 120, 32]}]}
    assert "BBOX corners" in bad(client, json.dumps(doc), "cql2-json")


# --- 6. S_DWITHIN at any distance and place -------------------------------------

GEOD = Geod(ellps="WGS84")


def _within(lon: float, lat: float, metres: float) -> list[str]:
    """Buildings whose every corner is within ``metres`` of (lon, lat) on the ellipsoid."""
    out = []
    for r in BUILDINGS:
        xy = shapely.get_coordinates(r["geom"])
        d = GEOD.inv(np.full(len(xy), lon), np.full(len(xy), lat), xy[:, 0], xy[:, 1])[2]
        assert abs(d.min() - metres) > 0.001 * metres, "pick a distance away from the buildings"
        if d.min() <= metres:
            out.append(r["code"])
    return sorted(out)


@pytest.mark.parametrize("lon,lat,km", [
    (120.9, 31.7, 5500), (120.9, 31.7, 6000), (120.9, 31.7, 15000),
    (-170.0, 31.7, 7000), (-170.0, 31.7, 8000),        # the circle crosses the antimeridian
    (0.0, 89.0, 6500), (0.0, 89.0, 6000),              # the circle holds the North Pole
    (-59.1, -31.7, 19000), (-59.1, -31.7, 19980),    # around the antipode: both poles inside
    (180.0, 0.0, 13000), (-180.0, -90.0, 13800),
])
def test_s_dwithin_is_right_for_large_distances_anywhere(client, lon, lat, km):
    got = codes(client, filter=f"S_DWITHIN(geom, POINT({lon} {lat}), {km}, kilometers)")
    assert got == _within(lon, lat, km * 1000)


def test_s_dwithin_beyond_half_the_earth_is_everything_and_small_distances_still_work(client):
    assert codes(client, filter="S_DWITHIN(geom, POINT(-59.1 -31.7), 20100, kilometers)") == ALL
    assert codes(client, filter="S_DWITHIN(geom, POINT(120.9052 31.7002), 150, meters)") == ["B004", "B005", "B006"]
    line = "LINESTRING(120.9 31.6995, 120.95 31.6995)"  # 55 m south of every building
    assert codes(client, filter=f"S_DWITHIN(geom, {line}, 60, meters)") == ALL
    assert codes(client, filter=f"S_DWITHIN(geom, {line}, 50, meters)") == []


@pytest.mark.parametrize("point", ["POINT(120.9 100)", "POINT(200 31.7)", "POINT(120.9 -90.5)"])
def test_s_dwithin_off_the_earth_is_400(client, point):
    assert "latitudes in [-90, 90]" in bad(client, f"S_DWITHIN(geom, {point}, 10, meters)")
    doc = {"op": "s_dwithin", "args": [{"property": "geom"}, json.loads(json.dumps(shapely.geometry.mapping(
        shapely.from_wkt(point)))), 10]}
    assert "latitudes in [-90, 90]" in bad(client, json.dumps(doc), "cql2-json")


# --- 7. LIKE patterns ending in a backslash ---------------------------------------


def test_like_pattern_ending_in_a_backslash_is_400_on_both_backends(client):
    assert "ends with the escape character" in bad(client, "address LIKE 'Main St 3\\'")
    assert "ends with the escape character" in bad(client, "CASEI(address) LIKE CASEI('x\\\\\\')")
    doc = {"op": "like", "args": [{"property": "address"}, "Main\\"]}
    assert "ends with the escape character" in bad(client, json.dumps(doc), "cql2-json")


def test_like_escaped_backslash_matches_a_backslash_on_both_backends(client):
    assert codes(client, filter="name LIKE 'back\\\\slash'") == expect(lambda r: r["name"] == "back\\slash")
    assert codes(client, filter="name LIKE '%\\\\%'") == expect(lambda r: "\\" in (r["name"] or ""))
    assert codes(client, filter="address LIKE 'Main St 3\\\\'") == []


def test_strings_with_nul_are_400_on_both_backends(client):
    assert "NUL" in bad(client, "name = 'a\x00b'")
    assert "NUL" in bad(client, "CASEI(name) LIKE CASEI('\x00%')")
    assert "NUL" in bad(client, '{"op": "=", "args": [{"property": "name"}, "a\\u0000"]}', "cql2-json")


# --- 10. non-finite coordinates ---------------------------------------------------


@pytest.mark.parametrize("text", [
    "S_INTERSECTS(geom, POINT(inf 0))", "S_INTERSECTS(geom, POINT(0 nan))", "S_INTERSECTS(geom, POINT(1e999 0))",
    "S_INTERSECTS(geom, LINESTRING(0 0, -inf 1))", "S_DWITHIN(geom, POINT(inf 0), 10, meters)",
    "S_INTERSECTS(geom, POLYGON((0 0, 1 0, 1 infinity, 0 0)))",
])
def test_non_finite_coordinates_in_cql2_text_are_400(client, text):
    assert "finite" in bad(client, text)


@pytest.mark.parametrize("geometry", [
    '{"type": "Point", "coordinates": [1e999, 0]}', '{"type": "Point", "coordinates": [NaN, 0]}',
    '{"type": "LineString", "coordinates": [[0, 0], [Infinity, 1]]}', '{"bbox": [0, 0, 1e999, 1]}',
])
def test_non_finite_coordinates_in_cql2_json_are_400(client, geometry):
    doc = '{"op": "s_intersects", "args": [{"property": "geom"}, ' + geometry + "]}"
    message = bad(client, doc, "cql2-json")
    assert "finite" in message or "out of range" in message


# --- 11. depth and length on every parser path -------------------------------------

CAP = 60
NESTED = {
    "NOT chain": lambda n: "NOT " * (n - 1) + "floors = 1",
    "groups": lambda n: "(" * (n - 1) + "floors = 1" + ")" * (n - 1),
    "scalar groups": lambda n: "floors = " + "(" * (n - 1) + "1" + ")" * (n - 1),
    "signs": lambda n: "floors = " + "-" * (n - 1) + "1",
    "sum chain": lambda n: "floors" + " + 1" * (n - 1) + " > 0",
    "CASEI": lambda n: "CASEI(" * (n - 1) + "name" + ")" * (n - 1) + " = 'x'",
    "json NOT": lambda n: '{"op":"not","args":[' * (n - 1) + '{"op":"=","args":[{"property":"floors"},1]}'
    + "]}" * (n - 1),
    "json arithmetic": lambda n: '{"op":">","args":[' + '{"op":"+","args":[' * (n - 1) + '{"property":"floors"}'
    + ",1]}" * (n - 1) + ",0]}",
}


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_nesting_at_the_cap_answers_and_beyond_it_is_400(client, kind):
    lang = "cql2-json" if kind.startswith("json") else "cql2-text"
    r = client.get("/collections/buildings/items", params={"filter": NESTED[kind](CAP - 1), "filter-lang": lang})
    assert r.status_code == 200, r.text
    for depth in (CAP + 1, 900):
        assert "nested deeper" in bad(client, NESTED[kind](depth), lang)


@pytest.mark.parametrize("filter,lang", [
    ('{"op": "=", "args": [{"property": "floors"}, ' + "[" * 5000 + "]" * 5000 + "]}", "cql2-json"),
    ("[" * 19_000, "cql2-json"),
    ('{"a": ' * 2500 + "1" + "}" * 2500, "cql2-json"),
    ("S_INTERSECTS(geom, GEOMETRYCOLLECTION(" + "GEOMETRYCOLLECTION(" * 900 + "POINT(1 2)" + ")" * 901 + ")",
     "cql2-text"),
])
def test_deep_documents_and_literals_are_400(client, filter, lang):
    assert "deeper" in bad(client, filter, lang)


def test_long_chains_of_or_and_and_are_capped_by_the_operator_count(client):
    assert "more than 500 operators" in bad(client, " OR ".join(["floors=1"] * 1000))
    assert "more than 500 operators" in bad(client, " AND ".join(["floors>=1"] * 1000))
    doc = {"op": "or", "args": [{"op": "=", "args": [{"property": "x"}, 1]}] * 510}
    assert "more than 500 operators" in bad(client, json.dumps(doc, separators=(",", ":")), "cql2-json")
    # below the cap a long chain works on both backends (SQLite's expression depth is 1,000)
    assert codes(client, filter=" OR ".join([f"floors={i % 7}" for i in range(450)])) == ALL
    assert codes(client, filter="floors IN (" + ",".join(str(i % 7) for i in range(3000)) + ")") == ALL


def test_limits_are_settings(store, client_for):
    small = client_for(store, cql_max_depth=5, cql_max_operators=20, cql_max_chars=300)
    r = small.get("/collections/buildings/items", params={"filter": "NOT " * 5 + "floors = 1"})
    assert r.status_code == 400 and "deeper than 5" in r.json()["message"]
    r = small.get("/collections/buildings/items", params={"filter": " OR ".join(["floors=1"] * 21)})
    assert r.status_code == 400 and "more than 20" in r.json()["message"]
    r = small.get("/collections/buildings/items", params={"filter": "floors = 1" + " " * 300})
    assert r.status_code == 400 and "longer than 300" in r.json()["message"]
