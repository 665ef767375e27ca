"""OGC API – Features Part 3: CQL2 ``filter`` and ``sortby`` on the items endpoint, on both backends."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import shapely
from pyproj import Transformer

BASE = dt.datetime(2026, 9, 28, tzinfo=dt.UTC)


def _building(i: int) -> dict:
    return {
        "code": f"B{i:03d}",
        "name": f"Block {i}" if i % 5 == 0 else None,
        "address": ("Main St " if i % 3 == 0 else "main st ") + str(i),
        "use": "residential" if i % 2 else "commercial",
        "floors": 1 + i % 6,
        "height_m": 3.0 * (1 + i % 6) + (0.5 if i % 4 == 0 else 0.0),
        "year_built": None if i % 7 == 0 else 1990 + i,
        "geom": shapely.box(120.9 + i * 1e-3, 31.7, 120.9004 + i * 1e-3, 31.7004),
    }


BUILDINGS = [_building(i) for i in range(30)]
EVENTS = [{"code": f"E{i}", "source": "hotline_12345", "category": "noise", "title": "noise",
           "status": "closed" if i % 2 else "reported", "reported_at": BASE + dt.timedelta(days=i, hours=6),
           "geom": shapely.Point(120.9 + i * 1e-3, 31.7)} for i in range(8)]


@pytest.fixture
def client(empty_store, client_for):
    empty_store.write_features("buildings", BUILDINGS)
    empty_store.write_features("events", EVENTS)
    empty_store.write_features("devices", [{"code": "D1", "name": "dust", "kind": "dust", "metrics": ["pm10"],
                                             "status": "online", "geom": shapely.Point(120.9, 31.7)}])
    c = client_for(empty_store)
    c.store = empty_store
    return c


def codes(client, layer="buildings", **params) -> list[str]:
    r = client.get(f"/collections/{layer}/items", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["numberMatched"] == fc["numberReturned"] == len(fc["features"])
    return sorted(f["properties"]["code"] for f in fc["features"])


def expect(pred, rows=BUILDINGS) -> list[str]:
    return sorted(r["code"] for r in rows if pred(r))


@pytest.mark.parametrize("text,pred", [
    ("floors = 3", lambda r: r["floors"] == 3),
    ("floors <> 3", lambda r: r["floors"] != 3),
    ("floors < 3", lambda r: r["floors"] < 3),
    ("floors <= 3", lambda r: r["floors"] <= 3),
    ("floors > 4", lambda r: r["floors"] > 4),
    ("floors >= 4", lambda r: r["floors"] >= 4),
    ("height_m > 9.25", lambda r: r["height_m"] > 9.25),
    ("use = 'commercial'", lambda r: r["use"] == "commercial"),
    ("3 < floors", lambda r: r["floors"] > 3),
    ("code >= 'B025'", lambda r: r["code"] >= "B025"),
])
def test_comparison_operators(client, text, pred):
    assert codes(client, filter=text) == expect(pred)


@pytest.mark.parametrize("text,pred", [
    ("floors > 3 AND use = 'residential'", lambda r: r["floors"] > 3 and r["use"] == "residential"),
    ("floors = 1 OR floors = 6", lambda r: r["floors"] in (1, 6)),
    ("NOT floors > 2", lambda r: not r["floors"] > 2),
    ("NOT (floors > 2 OR use = 'commercial')", lambda r: not (r["floors"] > 2 or r["use"] == "commercial")),
    ("use = 'residential' AND (floors = 2 OR floors = 4) OR code = 'B000'",
     lambda r: (r["use"] == "residential" and r["floors"] in (2, 4)) or r["code"] == "B000"),
    ("not (not (floors >= 5)) and not use = 'commercial'", lambda r: r["floors"] >= 5 and r["use"] != "commercial"),
    ("((floors = 2))", lambda r: r["floors"] == 2),
])
def test_and_or_not_nesting(client, text, pred):
    assert codes(client, filter=text) == expect(pred)


@pytest.mark.parametrize("text,pred", [
    ("address LIKE 'Main%'", lambda r: r["address"].startswith("Main")),
    ("address NOT LIKE 'Main%'", lambda r: not r["address"].startswith("Main")),
    ("CASEI(address) LIKE CASEI('MAIN ST 1%')", lambda r: r["address"].lower().startswith("main st 1")),
    ("code LIKE 'B0_5'", lambda r: r["code"] in ("B005", "B015", "B025")),
    ("floors IN (1, 6)", lambda r: r["floors"] in (1, 6)),
    ("use NOT IN ('commercial')", lambda r: r["use"] != "commercial"),
    ("floors BETWEEN 2 AND 4", lambda r: 2 <= r["floors"] <= 4),
    ("floors NOT BETWEEN 2 AND 4", lambda r: not 2 <= r["floors"] <= 4),
    ("name IS NULL", lambda r: r["name"] is None),
    ("name IS NOT NULL", lambda r: r["name"] is not None),
    ("year_built IS NULL OR year_built < 1995", lambda r: r["year_built"] is None or r["year_built"] < 1995),
    ("CASEI(use) = casei('RESIDENTIAL')", lambda r: r["use"] == "residential"),
    ("height_m / floors > 3", lambda r: r["height_m"] / r["floors"] > 3),
    ("floors * 2 + 1 >= 11", lambda r: r["floors"] * 2 + 1 >= 11),
    ("floors / 2 = 0.5", lambda r: r["floors"] == 1),
    ("height_m - 3 * floors = 0", lambda r: r["height_m"] == 3 * r["floors"]),
])
def test_advanced_comparison_nulls_and_arithmetic(client, text, pred):
    assert codes(client, filter=text) == expect(pred)


def test_like_is_case_sensitive_on_both_backends(client):
    assert codes(client, filter="address LIKE 'main%'") == expect(lambda r: r["address"].startswith("main"))
    assert codes(client, filter="address LIKE '%St 3'") == ["B003"]


def test_temporal_filters_on_events(client):
    after = codes(client, "events", filter="reported_at > TIMESTAMP('2026-10-01T00:00:00Z')")
    assert after == expect(lambda r: r["reported_at"] > dt.datetime(2026, 10, 1, tzinfo=dt.UTC), EVENTS)
    assert after == ["E3", "E4", "E5", "E6", "E7"]
    assert codes(client, "events", filter="T_BEFORE(reported_at, TIMESTAMP('2026-09-29T06:00:00Z'))") == ["E0"]
    assert codes(client, "events", filter="T_DURING(reported_at, INTERVAL('2026-09-30T00:00:00Z', "
                                          "'2026-10-02T00:00:00Z')) AND status = 'reported'") == ["E2"]
    assert codes(client, "events", filter="T_INTERSECTS(reported_at, INTERVAL('2026-10-04', '..'))") == [
        "E6", "E7"]
    assert codes(client, "events", filter="reported_at >= DATE('2026-10-04')") == ["E6", "E7"]
    # combined with the datetime parameter and a property filter
    assert codes(client, "events", filter="reported_at < TIMESTAMP('2026-10-03T00:00:00+08:00')",
                 datetime="2026-09-29T00:00:00Z/..", status="closed") == ["E1", "E3"]


def test_spatial_filter_equals_bbox_result(client):
    box = (120.9035, 31.6995, 120.9125, 31.7010)
    by_bbox = codes(client, bbox=",".join(map(str, box)))
    poly = shapely.box(*box).wkt
    assert codes(client, filter=f"S_INTERSECTS(geom, {poly})") == by_bbox
    assert codes(client, filter="S_INTERSECTS(geom, BBOX({}, {}, {}, {}))".format(*box)) == by_bbox
    assert len(by_bbox) == 9
    # combined with a bbox parameter and an attribute condition
    assert codes(client, bbox="120.9,31.6,120.91,31.8", filter=f"S_INTERSECTS(geom, {poly}) AND floors > 3") == \
        expect(lambda r: r["code"] in by_bbox and r["code"] <= "B009" and r["floors"] > 3)


def test_spatial_within_contains_dwithin_disjoint(client):
    poly = shapely.box(120.9035, 31.6995, 120.9125, 31.7010).wkt
    assert codes(client, filter=f"S_WITHIN(geom, {poly})") == [f"B{i:03d}" for i in range(4, 13)]
    assert codes(client, filter="S_CONTAINS(geom, POINT(120.9052 31.7002))") == ["B005"]
    assert codes(client, filter="S_DWITHIN(geom, POINT(120.9052 31.7002), 150, meters)") == [
        "B004", "B005", "B006"]
    assert len(codes(client, filter=f"S_DISJOINT(geom, {poly})")) == 30 - 9


def test_filter_crs_web_mercator(client):
    box = (120.9035, 31.6995, 120.9125, 31.7010)
    t = Transformer.from_crs("OGC:CRS84", "EPSG:3857", always_xy=True)
    (x0, y0), (x1, y1) = t.transform(box[0], box[1]), t.transform(box[2], box[3])
    merc = f"POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
    got = codes(client, filter=f"S_INTERSECTS(geom, {merc})", **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"})
    assert got == codes(client, bbox=",".join(map(str, box)))
    # EPSG:4326 is latitude first
    lat_lon = f"POLYGON(({box[1]} {box[0]}, {box[1]} {box[2]}, {box[3]} {box[2]}, {box[3]} {box[0]}, {box[1]} {box[0]}))"
    assert codes(client, filter=f"S_INTERSECTS(geom, {lat_lon})", **{"filter-crs": "EPSG:4326"}) == got


def test_cql2_json(client):
    doc = {"op": "and", "args": [
        {"op": ">=", "args": [{"property": "floors"}, 4]},
        {"op": "or", "args": [{"op": "like", "args": [{"property": "address"}, "Main%"]},
                              {"op": "isNull", "args": [{"property": "name"}]}]},
        {"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [120.8, 31.6, 121.0, 31.8]}]},
        {"op": "in", "args": [{"property": "use"}, ["residential", "commercial"]]},
        {"op": "between", "args": [{"property": "height_m"}, 0, 100]},
    ]}
    got = codes(client, filter=json.dumps(doc), **{"filter-lang": "cql2-json"})
    assert got == expect(lambda r: r["floors"] >= 4 and (r["address"].startswith("Main") or r["name"] is None))
    ev = {"op": "t_after", "args": [{"property": "reported_at"}, {"timestamp": "2026-10-04T00:00:00Z"}]}
    assert codes(client, "events", filter=json.dumps(ev), **{"filter-lang": "cql2-json"}) == ["E6", "E7"]


def _walk(client, url: str) -> tuple[list[dict], list[str]]:
    feats, hrefs = [], []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        fc = r.json()
        feats += fc["features"]
        url = next((link["href"] for link in fc["links"] if link["rel"] == "next"), None)
        if url:
            hrefs.append(url)
    return feats, hrefs


def test_sortby_ascending_descending_and_multi_key(client):
    fc = client.get("/collections/buildings/items", params={"sortby": "-height_m", "limit": 30}).json()
    heights = [f["properties"]["height_m"] for f in fc["features"]]
    assert heights == sorted(heights, reverse=True)
    fc = client.get("/collections/buildings/items?sortby=+floors,-height_m&limit=30").json()  # '+' arrives as ' '
    keys = [(f["properties"]["floors"], -f["properties"]["height_m"], f["id"]) for f in fc["features"]]
    assert keys == sorted(keys)
    fc = client.get("/collections/buildings/items", params={"sortby": "use,code", "limit": 30}).json()
    got = [f["properties"]["code"] for f in fc["features"]]
    assert got == [r["code"] for r in sorted(BUILDINGS, key=lambda r: (r["use"], r["code"]))]
    # nulls last in both directions, on both backends
    for order in ("year_built", "-year_built"):
        fc = client.get("/collections/buildings/items", params={"sortby": order, "limit": 30}).json()
        years = [f["properties"]["year_built"] for f in fc["features"]]
        assert years[-5:] == [None] * 5 and None not in years[:-5]


def test_stable_paging_keeps_filter_and_sortby(client):
    params = {"filter": "floors >= 2 AND use = 'residential'", "sortby": "-floors", "limit": 4}
    first = client.get("/collections/buildings/items", params=params).json()
    expected = expect(lambda r: r["floors"] >= 2 and r["use"] == "residential")
    assert first["numberMatched"] == len(expected) == 15
    start = "/collections/buildings/items?" + "&".join(f"{k}={v}" for k, v in params.items())
    feats, hrefs = _walk(client, start)
    assert all("filter=" in h and "sortby=" in h for h in hrefs)
    assert sorted(f["properties"]["code"] for f in feats) == expected
    keys = [(-f["properties"]["floors"], f["id"]) for f in feats]
    assert keys == sorted(keys) and len({f["id"] for f in feats}) == len(feats)


def test_number_matched_respects_filter_and_other_parameters(client):
    fc = client.get("/collections/buildings/items", params={
        "filter": "floors > 2", "use": "commercial", "bbox": "120.9,31.6,120.92,31.8", "limit": 2,
        "properties": "code,floors"}).json()
    exp = expect(lambda r: r["floors"] > 2 and r["use"] == "commercial" and r["code"] <= "B020")
    assert fc["numberMatched"] == len(exp) and fc["numberReturned"] == 2
    assert all(set(f["properties"]) == {"code", "floors"} for f in fc["features"])


@pytest.mark.parametrize("params,needle", [
    ({"filter": "floors = 1 AND"}, "syntax error at position"),
    ({"filter": "floors = 1; DROP TABLE buildings"}, "';' at position 11"),
    ({"filter": "floors = 1 OR 1=1; DELETE FROM buildings"}, "';'"),
    ({"filter": "colour = 'red'"}, "'colour' is unknown"),
    ({"filter": "floors = 'abc'"}, "'abc' cannot be compared with number property 'floors'"),
    ({"filter": "use > 3"}, "cannot be compared with string property 'use'"),
    ({"filter": "floors LIKE 'a%'"}, "LIKE needs a string"),
    ({"filter": "S_INTERSECTS(floors, POINT(1 2))"}, "geometry property"),
    ({"filter": "S_INTERSECTS(geom, POINT(1))"}, "invalid WKT"),
    ({"filter": "A_CONTAINS(floors, (1))"}, "not supported"),
    ({"filter": "floors = 1", "filter-lang": "ecql"}, "filter-lang 'ecql'"),
    ({"filter": "{\"op\": \"=\"", "filter-lang": "cql2-json"}, "not valid JSON"),
    ({"filter": "{\"op\": \"regex\", \"args\": []}", "filter-lang": "cql2-json"}, "'regex'"),
    ({"filter": "{\"op\": \"=\", \"args\": [{\"property\": \"floors; drop table buildings\"}, 1]}",
      "filter-lang": "cql2-json"}, "is unknown"),
    ({"filter": "\"floors\" = 1 OR \"x\"\"\" = 1"}, "filter"),
    ({"filter": "S_INTERSECTS(geom, POINT(1 2))", "filter-crs": "EPSG:999999"}, "unknown CRS"),
    ({"filter-lang": "cql2-text"}, "without filter"),
    ({"sortby": "nope"}, "sortby: unknown property 'nope'"),
    ({"sortby": "floors;drop"}, "sortby"),
    ({"filter": "T_AFTER(floors, TIMESTAMP('2026-01-01T00:00:00Z'))"}, "date or timestamp property"),
    ({"filter": "floors = 1" + " AND floors = 1" * 3000}, "longer than"),
    ({"filter": "(" * 200 + "floors = 1" + ")" * 200}, "nested deeper"),
])
def test_bad_filters_are_400_json_and_the_table_survives(client, params, needle):
    r = client.get("/collections/buildings/items", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_parameter" and needle in body["message"], body
    assert client.get("/collections/buildings/items", params={"limit": 1}).json()["numberMatched"] == 30


def test_json_and_unknown_columns_are_not_queryable(client):
    r = client.get("/collections/devices/items", params={"filter": "metrics = 'pm10'"})
    assert r.status_code == 400 and "'metrics' is not queryable" in r.json()["message"]
    assert "kind" in r.json()["detail"]["queryables"]
    r = client.get("/collections/devices/items", params={"sortby": "metrics"})
    assert r.status_code == 400


def test_conformance_declares_filter_classes(client):
    conf = client.get("/conformance").json()["conformsTo"]
    for c in ("http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
              "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
              "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
              "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
              "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
              "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
              "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions"):
        assert c in conf
    params = client.get("/api/openapi.json").json()["paths"]["/collections/{layer}/items"]["get"]["parameters"]
    assert {"filter", "filter-lang", "filter-crs", "sortby"} <= {p["name"] for p in params}
