"""Defaults, codes and presets over HTTP (query parameters) and on the `twin load` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gis_api.test_cli import run
from tests.twin.test_load_own_data import make_pbf, write_geojson, write_gk_dem

TOKEN = "test-admin-token"


@pytest.fixture
def client(empty_store, client_for):
    return client_for(empty_store, admin_token=TOKEN)


def _post(client, body: bytes, filename: str, layer: str = "buildings", **params):
    return client.post(f"/collections/{layer}/import", params={"filename": filename, **params}, content=body,
                       headers={"Authorization": f"Bearer {TOKEN}"})


def test_http_import_with_defaults_codes_and_derivations(client, empty_store, tmp_path: Path):
    body = write_geojson(tmp_path / "c.geojson", [{"name": "甲", "height": "12 m"}, {"name": "乙"}]).read_bytes()
    r = _post(client, body, "c.geojson", map=["height=height_m"])
    assert r.status_code == 422 and r.json()["code"] == "load_failed" and "floors" not in r.json()["message"]
    assert "use" in r.json()["detail"]["missing_columns"]
    r = _post(client, body, "c.geojson", map=["height=height_m"], set=["use=unknown", "floors=1"],
              **{"code-pattern": "H-{n:03d}"})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["written"] == 2 and rep["derived"] == {"floors": 1, "height_m": 1, "code": 2}
    assert rep["defaulted"] == {"use": 2, "floors": 1}
    items = client.get("/collections/buildings/items", params={"sortby": "code"}).json()["features"]
    assert [(f["properties"]["code"], f["properties"]["floors"], f["properties"]["height_m"]) for f in items] == [
        ("H-001", 4, 12.0), ("H-002", 1, 3.0)]


def test_http_import_of_an_osm_pbf_with_the_preset(client, empty_store, tmp_path: Path):
    body = make_pbf(tmp_path).read_bytes()
    r = _post(client, body, "extract.osm.pbf", preset="osm")
    assert r.status_code == 200, r.text
    assert r.json()["written"] == 3 and r.json()["preset"] == "osm"
    assert empty_store.summary("roads").count == 0  # one layer per request over HTTP


def test_http_bad_defaults_are_4xx(client, empty_store, tmp_path: Path):
    body = write_geojson(tmp_path / "c.geojson", [{"h": 3}]).read_bytes()
    for params in ({"set": ["nosuch=1"]}, {"set": ["floors=many"]}, {"set": ["use"]}, {"preset": "nosuch"},
                   {"code-pattern": "{"}, {"preset": "cjj61"}):
        r = _post(client, body, "c.geojson", map=["h=height_m"], **params)
        assert 400 <= r.status_code < 500, (params, r.text)
        assert set(r.json()) >= {"code", "message", "detail"}
    assert empty_store.summary("buildings").count == 0


def test_cli_osm_preset_twin_round_trip_and_dem(tmp_path: Path):
    home = tmp_path / "home"
    pbf = make_pbf(tmp_path)
    reports = json.loads(run(home, "load", str(pbf), "--preset", "osm").stdout)
    assert {r["layer"]: r["written"] for r in reports} == {"buildings": 3, "roads": 2, "farmland": 1}
    out = tmp_path / "b.gpkg"
    run(home, "export", "buildings", str(out))
    r = json.loads(run(home, "load", str(out), "--layer", "buildings", "--preset", "twin", "--mode", "replace").stdout)
    assert r["written"] == r["deleted"] == 3 and r["derived"] == {} and r["defaulted"] == {}
    bad = run(home, "load", str(out), "--layer", "buildings", "--set", "colour=red", ok=False)
    assert bad.returncode == 2 and "colour" in bad.stderr
    dem = write_gk_dem(tmp_path / "dem.tif")
    rep = json.loads(run(home, "load", str(dem), "--raster", "dem").stdout)
    assert rep["source_crs"] == "EPSG:4528" and (home / "rasters" / "dem.tif").exists()
    again = run(home, "load", str(dem), "--raster", "dem", ok=False)
    assert again.returncode == 2 and "--mode replace" in again.stderr


def test_openapi_documents_the_new_import_parameters(client):
    op = client.get("/api/openapi.json").json()["paths"]["/collections/{layer}/import"]["post"]
    params = {p["name"]: p for p in op["parameters"]}
    for name in ("set", "code-from", "code-pattern", "preset", "where", "encoding"):
        assert name in params and params[name]["description"], name
