"""Quantized-mesh terrain over HTTP, read back as CesiumJS reads it and checked against the DEM."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

sys.path.insert(0, str(Path(__file__).parents[1] / "scenes"))
from qm_decoder import decode  # noqa: E402

CESIUM_ACCEPT = "application/vnd.quantized-mesh;extensions=octvertexnormals,application/octet-stream;q=0.9,*/*;q=0.01"
QMAX = 32767


def _bounds(z, x, y):
    size = 180.0 / (1 << z)
    return -180 + x * size, -90 + y * size, -180 + (x + 1) * size, -90 + (y + 1) * size


class Dem:
    """The DEM read straight from the file, sampled bilinearly at lon/lat (independent of the server)."""

    def __init__(self, path: Path):
        with rasterio.open(path) as src:
            self.data = src.read(1).astype(np.float64)
            self.t = src.transform
            self.nodata = src.nodata
            self.crs = src.crs
        self.to_src = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True)

    def sample(self, lon, lat):
        mx, my = self.to_src.transform(lon, lat)
        col = (np.asarray(mx) - self.t.c) / self.t.a - 0.5
        row = (np.asarray(my) - self.t.f) / self.t.e - 0.5
        c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
        fc, fr = col - c0, row - r0
        h, w = self.data.shape
        ok = (c0 >= 0) & (r0 >= 0) & (c0 + 1 < w) & (r0 + 1 < h)
        c0, r0 = np.where(ok, c0, 0), np.where(ok, r0, 0)
        q = [self.data[r0 + dr, c0 + dc] for dr in (0, 1) for dc in (0, 1)]
        ok &= np.all([v != self.nodata for v in q], axis=0)
        val = (q[0] * (1 - fc) + q[1] * fc) * (1 - fr) + (q[2] * (1 - fc) + q[3] * fc) * fr
        return np.where(ok, val, np.nan)


@pytest.fixture(scope="module")
def dem(town_store):
    return Dem(Path(town_store.raster_dir) / "dem.tif")


@pytest.fixture(scope="module")
def layer(town_client):
    r = town_client.get("/terrain/layer.json")
    assert r.status_code == 200, r.text
    return r.json()


def _tile(client, z, x, y, accept=CESIUM_ACCEPT, encoding="gzip, deflate, br"):
    return client.get(f"/terrain/{z}/{x}/{y}.terrain", headers={"Accept": accept, "Accept-Encoding": encoding})


def _raw(response):
    """The body as the browser hands it to Cesium (httpx already undid Content-Encoding)."""
    return response.content


def test_layer_json_describes_a_cesium_terrain(layer, town_store):
    assert layer["format"] == "quantized-mesh-1.0"
    assert layer["scheme"] == "tms" and layer["projection"] == "EPSG:4326"
    assert layer["extensions"] == ["octvertexnormals"]
    assert layer["tiles"][0].startswith("{z}/{x}/{y}.terrain")
    assert layer["minzoom"] == 0 and 13 <= layer["maxzoom"] <= 17  # a 10 m DEM
    assert len(layer["available"]) == layer["maxzoom"] + 1
    assert layer["available"][0] == [{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    # below level 0 the available tiles are those over the town's DEM
    w, s, e, n = layer["bounds"]
    town = town_store.summary("buildings").extent
    assert w <= town[0] and s <= town[1] and e >= town[2] and n >= town[3]
    for z, [rng] in enumerate(layer["available"][1:], start=1):
        bw, bs, _, _ = _bounds(z, rng["startX"], rng["startY"])
        _, _, be, bn = _bounds(z, rng["endX"], rng["endY"])
        assert bw <= w and bs <= s and be >= e and bn >= n, z


def test_tiles_are_gzipped_for_browsers_and_plain_otherwise(town_client, layer):
    z = layer["maxzoom"]
    rng = layer["available"][z][0]
    zipped = _tile(town_client, z, rng["startX"], rng["startY"])
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["content-type"].startswith("application/vnd.quantized-mesh")
    plain = _tile(town_client, z, rng["startX"], rng["startY"], encoding="identity")
    assert "content-encoding" not in plain.headers
    assert plain.content == zipped.content == gzip.decompress(gzip.compress(plain.content))
    again = town_client.get(f"/terrain/{z}/{rng['startX']}/{rng['startY']}.terrain",
                            headers={"Accept": CESIUM_ACCEPT, "If-None-Match": zipped.headers["etag"]})
    assert again.status_code == 304


def test_vertex_normals_come_only_when_asked_for(town_client, layer):
    z = layer["maxzoom"]
    rng = layer["available"][z][0]
    with_normals = decode(_raw(_tile(town_client, z, rng["endX"], rng["endY"])))
    without = decode(_raw(_tile(town_client, z, rng["endX"], rng["endY"], accept="*/*")))
    assert set(with_normals.extensions) == {1} and without.extensions == {}
    n = with_normals.normals()
    assert n.shape == (len(with_normals.u), 3) and np.allclose(np.linalg.norm(n, axis=1), 1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_tile_vertices_lie_on_the_dem(town_client, layer, dem, data):
    z = layer["maxzoom"]
    rng = layer["available"][z][0]
    x = data.draw(st.integers(rng["startX"], rng["endX"]), label="x")
    y = data.draw(st.integers(rng["startY"], rng["endY"]), label="y")
    d = decode(_raw(_tile(town_client, z, x, y)))
    lon, lat = d.lonlat(_bounds(z, x, y))
    want = dem.sample(lon, lat)
    inside = ~np.isnan(want)
    step = (d.max_height - d.min_height) / QMAX
    assume(inside.any())  # a corner tile may hold only ground outside the town's DEM
    assert np.abs(d.heights[inside] - want[inside]).max() <= 0.02 + step


def test_the_mesh_follows_the_dem_between_its_vertices(town_client, layer, dem, town_settings):
    """Where the simplified mesh is drawn, it stays within the tolerance of the DEM (plus what
    bilinear sampling at 65×65 points can see)."""
    z = layer["maxzoom"]
    rng = layer["available"][z][0]
    x, y = (rng["startX"] + rng["endX"]) // 2, (rng["startY"] + rng["endY"]) // 2
    d = decode(_raw(_tile(town_client, z, x, y)))
    assert len(d.triangles) > 2, "the town's mounds must shape the mesh"
    g = np.linspace(0, QMAX, 65)
    pu, pv = (a.ravel() for a in np.meshgrid(g, g))
    tri = d.triangles
    au, av = d.u[tri].astype(float), d.v[tri].astype(float)
    ah = d.heights[tri]
    det = (av[:, 1] - av[:, 2]) * (au[:, 0] - au[:, 2]) + (au[:, 2] - au[:, 1]) * (av[:, 0] - av[:, 2])
    l1 = ((av[:, 1] - av[:, 2])[:, None] * (pu - au[:, 2:3]) + (au[:, 2] - au[:, 1])[:, None] * (pv - av[:, 2:3])) / det[:, None]
    l2 = ((av[:, 2] - av[:, 0])[:, None] * (pu - au[:, 2:3]) + (au[:, 0] - au[:, 2])[:, None] * (pv - av[:, 2:3])) / det[:, None]
    l3 = 1 - l1 - l2
    inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (l3 >= -1e-9)
    assert inside.any(axis=0).all(), "the triangles leave holes in the tile"
    first = inside.argmax(axis=0)
    cols = np.arange(len(pu))
    mesh_h = (l1[first, cols] * ah[first, 0] + l2[first, cols] * ah[first, 1] + l3[first, cols] * ah[first, 2])
    lon, lat = d.lonlat(_bounds(z, x, y))
    w, s, e, n = _bounds(z, x, y)
    want = dem.sample(w + (e - w) * pu / QMAX, s + (n - s) * pv / QMAX)
    ok = ~np.isnan(want)
    assert ok.sum() > 1000
    assert np.abs(mesh_h[ok] - want[ok]).max() <= town_settings.terrain_tolerance_m + 0.05


def test_tiles_off_the_dem_are_the_flat_ellipsoid(town_client, layer):
    rng = layer["available"][1][0]
    x = 0 if rng["startX"] > 0 else 3
    d = decode(_raw(_tile(town_client, 1, x, 0)))
    assert d.min_height == d.max_height == 0.0
    assert len(d.triangles) == 2 and sorted(zip(d.u.tolist(), d.v.tolist(), strict=True)) == [
        (0, 0), (0, QMAX), (QMAX, 0), (QMAX, QMAX)]
    for z, x, y in ((0, 0, 0), (0, 1, 0)):  # Cesium always asks for both level-0 tiles
        assert _tile(town_client, z, x, y).status_code == 200


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/terrain/25/0/0.terrain", 404, "terrain_not_available"),
    ("/terrain/3/16/0.terrain", 400, "invalid_parameter"),
    ("/terrain/3/0/8.terrain", 400, "invalid_parameter"),
    ("/terrain/a/0/0.terrain", 400, "invalid_parameter"),
    ("/terrain/3/-1/0.terrain", 400, "invalid_parameter"),
    ("/terrain/99999999999999999999/0/0.terrain", 400, "invalid_parameter"),
])
def test_bad_tile_addresses_get_json_errors(town_client, path, status, code):
    r = town_client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"]


def test_no_dem_means_404_not_500(client_for, store, tmp_path):
    client = client_for(store, home=tmp_path)
    for path in ("/terrain/layer.json", "/terrain/0/0/0.terrain"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "terrain_not_available"


def test_the_openapi_document_lists_the_terrain_routes(town_client):
    paths = town_client.get("/api/openapi.json").json()["paths"]
    tile = paths["/terrain/{z}/{x}/{y}.terrain"]["get"]
    assert "application/vnd.quantized-mesh" in tile["responses"]["200"]["content"]
    assert "/terrain/layer.json" in paths


def test_cli_exports_every_available_tile_for_static_hosting(town_client, town_settings, layer, tmp_path):
    import json
    import os
    import subprocess

    env = {**os.environ, "TWIN_HOME": str(town_settings.home), "TWIN_DATABASE_URL": town_settings.database_url,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "terrain"
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "terrain", "export", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    want = sum((a["endX"] - a["startX"] + 1) * (a["endY"] - a["startY"] + 1) for [a] in layer["available"])
    assert result["tiles"] == want == len(list(out.rglob("*.terrain")))
    assert f"{want}/{want}" in r.stderr  # the progress bar
    assert json.loads((out / "layer.json").read_text())["available"] == layer["available"]
    z = layer["maxzoom"]
    a = layer["available"][z][0]
    served = _tile(town_client, z, a["startX"], a["startY"]).content
    assert gzip.decompress((out / str(z) / str(a["startX"]) / f"{a['startY']}.terrain").read_bytes()) == served
    # with no DEM the command says why and exits 2
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "terrain", "export", str(tmp_path / "x")],
                       capture_output=True, text=True, env={**env, "TWIN_HOME": str(tmp_path)}, timeout=120)
    assert r.returncode == 2 and "terrain_not_available" in r.stderr


def test_a_damaged_dem_is_a_clear_404_not_a_500(client_for, store, tmp_path):
    (tmp_path / "rasters").mkdir()
    (tmp_path / "rasters" / "dem.tif").write_bytes(b"II*\x00" + b"\x00" * 100)  # a TIFF header and nothing else
    client = client_for(store, home=tmp_path)
    for path in ("/terrain/layer.json", "/terrain/0/0/0.terrain"):
        r = client.get(path)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "terrain_not_available" and "cannot be read" in r.json()["message"]
