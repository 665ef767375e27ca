"""Uploading files into a layer over HTTP: auth, formats, broken uploads, nothing half-written."""

from __future__ import annotations

import json

import pytest

TOKEN = "test-admin-token"


def _geojson(n: int, start: int = 0) -> bytes:
    feats = [{"type": "Feature", "properties": {"code": f"U{i}", "use": "residential", "floors": 3, "height_m": 9.5},
              "geometry": {"type": "Polygon", "coordinates": [[[120.9 + i * 1e-3, 31.7], [120.9004 + i * 1e-3, 31.7],
                                                              [120.9004 + i * 1e-3, 31.7004], [120.9 + i * 1e-3, 31.7004],
                                                              [120.9 + i * 1e-3, 31.7]]]}}
             for i in range(start, start + n)]
    return json.dumps({"type": "FeatureCollection", "features": feats}).encode()


@pytest.fixture
def client(empty_store, client_for):
    return client_for(empty_store, admin_token=TOKEN)


def _post(client, body: bytes, filename="b.geojson", token=TOKEN, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/collections/buildings/import", params={"filename": filename, **params}, content=body,
                       headers=headers)


def test_upload_loads_features_and_reports(client, empty_store):
    r = _post(client, _geojson(12))
    assert r.status_code == 200, r.text
    assert r.json()["written"] == 12
    assert client.get("/collections/buildings/items").json()["numberMatched"] == 12


def test_upload_needs_a_token_that_may_write(empty_store, client_for):
    # the product's default: anonymous callers are `public`, who may not write
    client = client_for(empty_store, admin_token=TOKEN, anonymous_role="public")
    r = _post(client, _geojson(2), token=None)
    assert r.status_code == 401 and "log in" in r.json()["message"]
    r = _post(client, _geojson(2), token="wrong")
    assert r.status_code == 401 and r.json()["code"] == "token_invalid"
    assert empty_store.summary("buildings").count == 0


def test_a_made_up_token_is_refused_when_no_admin_token_is_configured(empty_store, client_for):
    c = client_for(empty_store, anonymous_role="public")
    r = c.post("/collections/buildings/import", params={"filename": "b.geojson"}, content=_geojson(1),
               headers={"Authorization": "Bearer anything"})
    assert r.status_code == 401 and r.json()["code"] == "token_invalid"
    assert empty_store.summary("buildings").count == 0


def test_truncated_upload_is_refused_and_layer_unchanged(client, empty_store):
    assert _post(client, _geojson(5)).status_code == 200
    version = empty_store.version("buildings")
    body = _geojson(50, start=100)
    r = _post(client, body[: len(body) // 2])
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["message"]
    assert empty_store.summary("buildings").count == 5
    assert empty_store.version("buildings") == version


def test_unknown_format_and_unknown_layer(client):
    r = _post(client, b"hello", filename="b.txt")
    assert r.status_code == 415 and r.json()["code"] == "unsupported_format"
    r = client.post("/collections/nope/import", params={"filename": "a.geojson"}, content=_geojson(1),
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404


def test_wrong_crs_file_is_refused(client, empty_store):
    # metre coordinates (Gauss-Kruger) declared as lon/lat
    feats = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "code": "X1", "use": "residential", "floors": 2, "height_m": 6},
        "geometry": {"type": "Polygon", "coordinates": [[[40500000, 3510000], [40500010, 3510000],
                                                         [40500010, 3510010], [40500000, 3510000]]]}}]}
    r = _post(client, json.dumps(feats).encode(), crs="EPSG:4326")
    assert 400 <= r.status_code < 500 and r.json()["message"]
    assert empty_store.summary("buildings").count == 0


def test_empty_upload_is_a_400(client):
    r = _post(client, b"")
    assert r.status_code == 400


def test_csv_upload_with_field_mapping_and_coordinate_columns(empty_store, client_for):
    c = client_for(empty_store, admin_token=TOKEN)
    csv = "编号,名称,类型,东经,北纬\nD1,扬尘1,dust,120.91,31.71\nD2,扬尘2,dust,120.92,31.72\n".encode()
    r = c.post("/collections/devices/import", content=csv, headers={"Authorization": f"Bearer {TOKEN}"},
               params={"filename": "d.csv", "map": ["编号=code", "名称=name", "类型=kind"],
                       "lon-field": "东经", "lat-field": "北纬"})
    assert r.status_code == 200, r.text
    fc = c.get("/collections/devices/items", params={"code": "D2"}).json()
    assert fc["features"][0]["geometry"]["coordinates"] == [120.92, 31.72]


def test_explicit_ids_then_append_does_not_collide(empty_store):
    import shapely

    rows = [{"id": 500 + i, "code": f"I{i}", "use": "public", "floors": 1, "height_m": 4.0,
             "geom": shapely.box(120.9, 31.7, 120.9001, 31.7001)} for i in range(3)]
    empty_store.write_features("buildings", rows)
    empty_store.write_features("buildings", [{"code": "next", "use": "public", "floors": 1, "height_m": 4.0,
                                              "geom": shapely.box(120.9, 31.7, 120.9001, 31.7001)}])
    assert empty_store.summary("buildings").count == 4
