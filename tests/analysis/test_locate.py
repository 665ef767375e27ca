"""Search, nearest and grid location on both backends, held to brute-force computations."""

from __future__ import annotations

import re

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from twin.analysis.source import features_in_bbox
from twin.search import SearchIndex, normalise

GEOD = Geod(ellps="WGS84")
WORLD = (-180, -90, 180, 90)


def test_normalise_matches_what_a_chinese_user_types():
    assert normalise("张家宅村03组05号") == normalise("张家宅村3组5号") == normalise("张家宅村三组五号")
    assert normalise("ＩＯＴＹＣ００００１") == normalise("iotyc00001")  # full-width, case
    assert normalise("YC00001") != normalise("YC1")  # codes keep their zeros
    assert normalise("二十三号") == "23号" and normalise("十组") == "10组"


def test_partial_match_finds_the_hamlet_group():
    idx = SearchIndex.build([
        ("buildings", 1, "address", "张家宅村03组12号", "张家宅村03组12号", "B1"),
        ("buildings", 2, "address", "李家村03组01号", "李家村03组01号", "B2"),
        ("grids", 3, "name", "张家宅村", "张家宅村", "G3"),
        ("buildings", 4, "address", "张家宅村13组2号", "张家宅村13组2号", "B4"),
    ], {})
    hits = idx.search("张家宅")
    assert [h.id for h in hits][:1] == [3]  # the village itself: shortest text that starts with it
    assert {h.id for h in hits} == {1, 3, 4}
    assert [h.id for h in idx.search("张家宅村3组")] == [1]
    assert [h.id for h in idx.search("张家宅村三组")] == [1]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.lists(st.text(max_size=15), max_size=8))
def test_search_results_contain_the_query(q, texts):
    idx = SearchIndex.build([("buildings", i, "name", t, t, None) for i, t in enumerate(texts)], {})
    try:
        hits = idx.search(q, limit=100)
    except Exception as exc:  # only an empty query is refused
        assert not normalise(q) and type(exc).__name__ == "InvalidParameter"
        return
    want = {i for i, t in enumerate(texts) if normalise(q) in normalise(t) and normalise(t)}
    assert {h.id for h in hits} == want


def test_search_api_finds_addresses_in_the_town(town_client, town_store):
    b = features_in_bbox(town_store, "buildings", WORLD, cap=100_000)
    grouped = [p["address"] for p in b.properties if p["address"] and "组" in p["address"]]
    groups = [re.match(r"^(.*?)(\d+)组", a).groups() for a in grouped]
    village, group = min(set(groups), key=groups.count)  # a small group: all of it fits in one page
    q = f"{village}{int(group)}组"  # typed without the leading zero
    r = town_client.get("/search", params={"q": q, "limit": 100})
    assert r.status_code == 200, r.text
    got = {(f["properties"]["layer"], f["id"]) for f in r.json()["features"]}
    want = {("buildings", fid) for fid, p in zip(b.ids, b.properties, strict=True)
            if (p["address"] or "").startswith(f"{village}{group}组")}
    assert want and want <= got
    # the village name alone ranks the village grid first (exact match)
    r = town_client.get("/search", params={"q": village})
    first = r.json()["features"][0]["properties"]
    assert first["layer"] == "grids" and first["match"] == "exact"
    # a code, in lower case
    code = b.properties[5]["code"]
    r = town_client.get("/search", params={"q": code.lower(), "layers": "buildings"})
    assert r.json()["features"][0]["properties"]["code"] == code


def test_search_bad_input(town_client):
    assert town_client.get("/search", params={"q": "   "}).status_code == 400
    assert town_client.get("/search").status_code == 400
    assert town_client.get("/search", params={"q": "x", "limit": 10**6}).status_code == 400
    assert town_client.get("/search", params={"q": "x", "layers": "nope"}).status_code == 404
    assert town_client.get("/search", params={"q": "无此地址无此地址"}).json()["features"] == []


def test_nearest_matches_brute_force_geodesic(town_client, town_store):
    devs = features_in_bbox(town_store, "devices", WORLD, cap=100_000)
    xy = shapely.get_coordinates(devs.geometries)
    lon, lat = float(xy[:, 0].mean()), float(xy[:, 1].mean())
    r = town_client.get("/nearest", params={"lon": lon, "lat": lat, "layer": "devices", "n": 7})
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    _, _, d = GEOD.inv(np.full(len(xy), lon), np.full(len(xy), lat), xy[:, 0], xy[:, 1])
    order = np.argsort(d)[:7]
    assert [f["id"] for f in feats] == [devs.ids[i] for i in order]
    assert np.allclose([f["properties"]["distance_m"] for f in feats], d[order], atol=0.01)


def test_nearest_with_kind_and_limits(town_client, town_store):
    nodes = features_in_bbox(town_store, "pipe_nodes", WORLD, cap=100_000)
    p = nodes.geometries[0]
    r = town_client.get("/nearest", params={"lon": p.x, "lat": p.y, "layer": "pipe_nodes", "n": 3, "kind": "valve"})
    assert r.status_code == 200
    assert all(f["properties"]["kind"] == "valve" for f in r.json()["features"])
    # far from everything: nothing within 50 m
    r = town_client.get("/nearest", params={"lon": 10.0, "lat": 10.0, "layer": "devices", "max_distance": 50})
    assert r.status_code == 200 and r.json()["features"] == []
    for params in ({"lon": 999, "lat": 0}, {"lon": 0, "lat": 0, "n": 10**6}, {"lon": 0, "lat": 0, "layer": "nope"},
                   {"lon": 0, "lat": 0, "max_distance": -5}, {"lon": 0, "lat": 0, "max_distance": 1e9},
                   {"lon": 0, "lat": 0, "layer": "buildings", "kind": "x"}):
        r = town_client.get("/nearest", params=params)
        assert 400 <= r.status_code < 500, (params, r.text)


def test_locate_grid_returns_unit_village_town(town_client, town_store):
    g = features_in_bbox(town_store, "grids", WORLD, cap=100_000)
    k = next(i for i, p in enumerate(g.properties) if p["level"] == "unit")
    pt = g.geometries[k].representative_point()
    r = town_client.get("/locate/grid", params={"point": f"{pt.x},{pt.y}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"]["properties"]["code"] == g.properties[k]["code"]
    assert body["village"]["properties"]["code"] == g.properties[k]["parent_code"]
    assert body["town"]["properties"]["level"] == "town"
    r2 = town_client.get("/locate/grid", params={"lon": pt.x, "lat": pt.y})
    assert r2.json()["unit"]["id"] == body["unit"]["id"]
    out = town_client.get("/locate/grid", params={"point": "10,10"}).json()
    assert out["unit"] is None and out["village"] is None and out["town"] is None


@pytest.mark.parametrize("point", ["", "1", "a,b", "1,2,3", "200,0", "nan,1", "inf,0"])
def test_locate_grid_bad_points(town_client, point):
    r = town_client.get("/locate/grid", params={"point": point})
    assert r.status_code == 400, r.text
