"""The analysis endpoints over HTTP, on both backends."""

from __future__ import annotations

import shapely

from twin.analysis import distances_m
from twin.analysis.source import features_in_bbox


def _pipe(town_store, utility="gas"):
    fs = features_in_bbox(town_store, "pipelines", (-180, -90, 180, 90), cap=100_000)
    i = next(k for k, p in enumerate(fs.properties) if p["utility"] == utility)
    return fs.ids[i], fs.properties[i]["code"], fs.geometries[i]


def test_buffer_around_a_feature_reference(town_client, town_store):
    pid, code, geom = _pipe(town_store)
    r = town_client.post("/analysis/buffer", json={"feature": {"layer": "pipelines", "code": code},
                                                   "distance": 30, "layers": ["buildings", "pipelines"]})
    assert r.status_code == 200, r.text
    body = r.json()
    feats = body["features"]["features"]
    assert all(f["properties"]["distance_m"] <= 30 for f in feats)
    assert all(not (f["properties"]["layer"] == "pipelines" and f["id"] == pid) for f in feats)
    # every pipe within 30 m (independently: shapely distance in the same metric frame) is there
    allp = features_in_bbox(town_store, "pipelines", (-180, -90, 180, 90), cap=100_000)
    d = distances_m(geom, allp.geometries)
    want = {fid for fid, dd in zip(allp.ids, d, strict=True) if dd <= 30 and fid != pid}
    got = {f["id"] for f in feats if f["properties"]["layer"] == "pipelines"}
    assert got == want
    assert body["counts"]["pipelines"] == len(want)
    assert shapely.from_geojson(__import__("json").dumps(body["buffer"])).contains(geom)


def test_buffer_by_geometry_and_id(town_client, town_store):
    pid, _, geom = _pipe(town_store, "water_supply")
    p = geom.interpolate(0.5, normalized=True)
    r1 = town_client.post("/analysis/buffer", json={"geometry": {"type": "Point", "coordinates": [p.x, p.y]},
                                                    "distance": 5, "layers": ["pipelines"]})
    assert r1.status_code == 200
    assert pid in {f["id"] for f in r1.json()["features"]["features"]}
    r2 = town_client.post("/analysis/buffer", json={"feature": {"layer": "pipelines", "id": pid}, "distance": 0,
                                                    "layers": ["pipelines"], "include_geometry": False})
    assert r2.status_code == 200
    assert all(f["geometry"] is None for f in r2.json()["features"]["features"])


def test_buffer_bad_input_is_4xx(town_client):
    pt = {"type": "Point", "coordinates": [121.0, 31.4]}
    cases = [
        ({"geometry": pt, "distance": -5}, 400),
        ({"geometry": pt, "distance": 1e9}, 400),
        ({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
          "distance": 5}, 422),
        ({"geometry": {"type": "Point", "coordinates": [500, 31]}, "distance": 5}, 422),
        ({"distance": 5}, 400),
        ({"geometry": pt, "feature": {"layer": "pipelines", "id": 1}, "distance": 5}, 400),
        ({"feature": {"layer": "pipelines", "id": 999999}, "distance": 5}, 404),
        ({"feature": {"layer": "nope", "id": 1}, "distance": 5}, 404),
        ({"geometry": pt, "distance": 5, "layers": ["nope"]}, 404),
        ({"geometry": pt, "distance": 5, "layers": []}, 400),
        ({"geometry": pt, "distance": "far"}, 400),
    ]
    for body, status in cases:
        r = town_client.post("/analysis/buffer", json=body)
        assert r.status_code == status, (body, r.text)
        assert {"code", "message", "detail"} <= set(r.json())


def test_openapi_documents_every_analysis_route(town_client):
    doc = town_client.get("/api/openapi.json").json()
    paths = doc["paths"]
    for path, method in (("/analysis/buffer", "post"), ("/analysis/cross-section", "post"),
                         ("/analysis/clearance", "post"), ("/analysis/overlap", "post"), ("/analysis/trace", "post"),
                         ("/analysis/valve-isolation", "post"), ("/analysis/flow-direction", "get"),
                         ("/analysis/pipe-statistics", "get"), ("/analysis/dust-heat", "get"),
                         ("/analysis/dust-heat/inputs", "put"), ("/search", "get"), ("/nearest", "get"),
                         ("/locate/grid", "get"), ("/processes", "get"), ("/processes/{process_id}/execution", "post")):
        op = paths[path][method]
        assert op.get("summary"), path
        if method in ("post", "put"):
            assert "requestBody" in op, path
    assert "distance" in doc["components"]["schemas"]["BufferRequest"]["properties"]
