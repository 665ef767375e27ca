"""An attack suite built from real map-server vulnerabilities. Each test names its precedent.

Every attack must get a 4xx (or a safe answer) quickly, write nothing, and make no connection
to a canary listener on loopback (for the SSRF cases)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import zipfile

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gis_api.app import create_app
from twin.settings import TwinSettings

ADMIN = "attack-suite-admin-token"
pytestmark = pytest.mark.parametrize("backend", ["spatialite", "postgis"], indirect=True)


class Canary:
    """A loopback listener that counts connections (any SSRF attempt would show here)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def attack(town_store, town_settings):
    settings = TwinSettings(**{**town_settings.model_dump(), "anonymous_role": "public", "secret_key": "a" * 40,
                               "admin_token": ADMIN})
    with TestClient(create_app(settings, store=town_store), raise_server_exceptions=False) as client:
        client.canary = Canary()  # type: ignore[attr-defined]
        client.versions_before = {lyr: town_store.version(lyr) for lyr in ("buildings", "pipelines", "events")}
        yield client
        after = {lyr: town_store.version(lyr) for lyr in client.versions_before}
        assert after == client.versions_before, "an attack wrote to a layer"
        assert client.canary.hits == 0, "an attack made the server connect to the canary"


def _ok(r, allowed=(400, 401, 403, 404, 405, 413, 415, 422)):
    assert r.status_code in allowed or r.status_code < 300, (r.status_code, r.text[:300])
    assert r.status_code < 500, (r.status_code, r.text[:300])
    return r


def test_property_names_are_never_evaluated(attack):
    """CVE-2024-36401: GeoServer evaluated property names as XPath/OGC expressions (RCE)."""
    for name in ("exec(java.lang.Runtime.getRuntime().exec('id'))", "__import__('os').system('id')",
                 "name;DROP TABLE buildings", "code) OR (1=1", "${jndi:ldap://127.0.0.1/a}"):
        for params in ({"properties": name}, {"sortby": name}, {name: "1"},
                       {"filter": f"{name} = 1"}):
            r = _ok(attack.get("/collections/buildings/items", params=params))
            if r.status_code == 200:  # a reserved-looking filter name the API ignores must change nothing
                assert r.json()["numberReturned"] <= 100


def test_filter_values_do_not_become_sql(attack, town_store):
    """CVE-2023-25157: SQL injection through OGC filter functions and PropertyIsLike in GeoServer."""
    count = town_store.summary("buildings").count
    for f in ("name LIKE '%' OR 1=1 --'", "code = 'x'' OR ''1''=''1'", "strEndsWith(code, 'x') = true",
              "code = 'a'; DELETE FROM buildings; --'", "floors = 1 UNION SELECT * FROM users"):
        _ok(attack.get("/collections/buildings/items", params={"filter": f}))
    r = _ok(attack.get("/collections/buildings/items", params={"code": "x' OR '1'='1"}))
    assert r.json()["numberMatched"] == 0
    assert town_store.summary("buildings").count == count


def test_layer_and_feature_ids_are_not_sql_or_paths(attack):
    """CVE-2023-25157 (injected identifiers) and CWE-22 path traversal in layer/dataset names."""
    for layer in ("buildings;--", "../../etc/passwd", "buildings%00", "pg_catalog.pg_user", "..%2F..%2Fetc"):
        _ok(attack.get(f"/collections/{layer}/items"))
        _ok(attack.get(f"/tiles/{layer}/14/13700/6600.mvt"))
    for fid in ("1 OR 1=1", "1;DROP TABLE buildings", "../1", "0x10", "1e3", "9" * 40):
        _ok(attack.get(f"/collections/buildings/items/{fid}"))


def test_raster_and_wmts_names_do_not_reach_the_file_system(attack):
    """CVE-2023-51444 (GeoServer path traversal to arbitrary files) and CWE-22 in WMTS KVP layer names."""
    for name in ("../../../../etc/passwd", "/etc/passwd", "..%2f..%2fetc%2fpasswd", "dem/../../secret.key",
                 "/vsicurl/http://127.0.0.1:1/x.tif", "secret"):
        _ok(attack.get(f"/raster/{name}/10/850/418.png"))
        _ok(attack.get(f"/raster/{name}/info"))
        r = attack.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetTile", "LAYER": name, "TILEMATRIXSET":
                                        "WebMercatorQuad", "TILEMATRIX": "10", "TILEROW": "418", "TILECOL": "850",
                                        "FORMAT": "image/png"})
        assert r.status_code in (400, 404) and b"root:" not in r.content


def test_user_text_is_escaped_in_xml_errors(attack):
    """CWE-79: user text echoed into an OWS ExceptionReport must be escaped (XSS / XML injection)."""
    evil = "<script>alert(1)</script>&x;"
    r = attack.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": evil})
    assert r.status_code == 400 and b"<script>" not in r.content
    r = attack.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetTile", "LAYER": evil})
    assert b"<script>" not in r.content


def test_crs_strings_name_no_files_or_urls(attack):
    """CVE-2021-40822-style SSRF (GeoServer fetched URLs named in a request) and CRS strings naming files."""
    port = attack.canary.port
    for crs in ("/etc/passwd", "file:///etc/passwd", f"http://127.0.0.1:{port}/crs",
                f"+proj=longlat +nadgrids=http://127.0.0.1:{port}/x.tif", "+init=/etc/passwd:1",
                '{"$schema": "http://127.0.0.1:' + str(port) + '/x"}'):
        _ok(attack.get("/collections/buildings/items", params={"crs": crs}))
        _ok(attack.get("/collections/buildings/items", params={"bbox": "120.8,31.6,121,31.8", "bbox-crs": crs}))
        _ok(attack.get("/collections/buildings/items", params={"filter": "S_INTERSECTS(geom, POINT(1 2))",
                                                               "filter-crs": crs}))


def test_url_parameters_are_not_fetched(attack):
    """CVE-2023-43795 (GeoServer WPS SSRF) and CVE-2021-40822: parameters carrying URLs are never fetched."""
    url = f"http://127.0.0.1:{attack.canary.port}/x"
    for path in ("/collections/buildings/items", "/tiles/buildings/tilejson.json", "/styles/twin.json",
                 "/wmts", "/raster/dem/info", "/scenes/tileset.json"):
        _ok(attack.get(path, params={"sld": url, "url": url, "href": url, "callback": url}))
    time.sleep(0.2)
    assert attack.canary.hits == 0


def test_oversized_and_absurd_requests(attack):
    """CWE-400: huge bboxes, zooms, limits and bodies get a 4xx, not a stuck server."""
    t0 = time.perf_counter()
    _ok(attack.get("/collections/buildings/items", params={"bbox": "-180,-90,180,90"}))
    _ok(attack.get("/collections/buildings/items", params={"limit": "10000000"}))
    _ok(attack.get("/tiles/buildings/40/1/1.mvt"))
    _ok(attack.get("/tiles/buildings/24/99999999/1.mvt"))
    _ok(attack.get("/scenes/scene.glb", params={"bbox": "100,20,125,45"}))
    for coord in ("NaN", "Infinity", "-inf", "1e309"):
        _ok(attack.get("/collections/buildings/items", params={"bbox": f"{coord},31,121,32"}))
        _ok(attack.get("/collections/buildings/items", params={"filter": f"S_INTERSECTS(geom, POINT({coord} 31))"}))
    r = attack.post("/auth/token", content=b"{" * 100, headers={"content-length": str(1 << 30),
                                                              "content-type": "application/json"})
    assert r.status_code == 413
    assert time.perf_counter() - t0 < 60


def _upload(attack, name: str, body: bytes, **params):
    return attack.post("/collections/buildings/import", params={"filename": name, **params}, content=body,
                       headers={"Authorization": f"Bearer {ADMIN}"})


def _zip(members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
        if symlink:
            info = zipfile.ZipInfo(symlink[0])
            info.external_attr = 0o120777 << 16  # a symlink entry
            zf.writestr(info, symlink[1])
    return buf.getvalue()


def test_archives_cannot_escape_or_explode(attack):
    """Zip Slip (Snyk 2018, CWE-22), symlinks in archives, and decompression bombs (CWE-409)."""
    _ok(_upload(attack, "slip.zip", _zip({"../../../../tmp/twin-zip-slip.shp": b"x" * 100,
                                          "../../../../tmp/twin-zip-slip.dbf": b"y"})))
    import os

    assert not os.path.exists("/tmp/twin-zip-slip.shp")
    _ok(_upload(attack, "link.zip", _zip({"a.dbf": b"x"}, symlink=("a.shp", "/etc/passwd"))))
    bomb = _zip({"bomb.shp": b"\0" * (64 * 1024 * 1024), "bomb.dbf": b"\0" * 1024})
    assert len(bomb) < 1_000_000
    _ok(_upload(attack, "bomb.zip", bomb))


def test_gdal_virtual_formats_are_not_opened(attack):
    """GDAL's VRT and /vsi paths read any file the process can (GDAL security notes): an upload
    that is a VRT in disguise must not read the server's files."""
    vrt = (b'<OGRVRTDataSource><OGRVRTLayer name="p"><SrcDataSource>/etc/passwd</SrcDataSource>'
           b'<GeometryType>wkbPoint</GeometryType></OGRVRTLayer></OGRVRTDataSource>')
    for name, body in (("evil.geojson", vrt), ("evil.csv", vrt), ("evil.gpkg", vrt),
                       ("evil.zip", _zip({"evil.shp": vrt, "evil.dbf": b""})),
                       ("evil.geojson", b"/vsicurl/http://127.0.0.1:%d/x" % attack.canary.port)):
        r = _ok(_upload(attack, name, body))
        assert b"root:" not in r.content


def test_geopackage_with_a_view_calling_sqlite_functions(attack, tmp_path):
    """SQLite views and triggers inside an uploaded database (e.g. load_extension, a zeroblob
    bomb) must not run code or exhaust memory."""
    import sqlite3

    path = tmp_path / "evil.gpkg"
    con = sqlite3.connect(path)
    con.executescript("""
        PRAGMA application_id = 1196444487;
        CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, organization TEXT,
            organization_coordsys_id INTEGER, definition TEXT, description TEXT);
        CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT, identifier TEXT,
            description TEXT, last_change TEXT, min_x REAL, min_y REAL, max_x REAL, max_y REAL, srs_id INTEGER);
        CREATE VIEW evil AS SELECT 1 AS fid, zeroblob(2000000000) AS geom, load_extension('/tmp/nope') AS x;
        INSERT INTO gpkg_contents VALUES ('evil', 'features', 'evil', '', '', 0, 0, 1, 1, 4326);
    """)
    con.close()
    t0 = time.perf_counter()
    _ok(_upload(attack, "evil.gpkg", path.read_bytes()))
    assert time.perf_counter() - t0 < 30


def test_a_geojson_with_a_million_vertices_is_bounded(attack):
    """CWE-400: one feature with a million vertices: refused or loaded, in bounded time, never a 500."""
    ring = [[120.9 + 1e-7 * i, 31.7 + (1e-7 * (i % 2))] for i in range(1_000_000)]
    ring.append(ring[0])
    body = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}).encode()
    t0 = time.perf_counter()
    _ok(_upload(attack, "big.geojson", body, mode="append"))
    assert time.perf_counter() - t0 < 120


def test_csv_export_formula_cells(attack):
    """CWE-1236 (CSV injection): audit exports neutralise formula cells."""
    attack.post("/auth/token", data={"grant_type": "password", "username": "=cmd|'/c calc'!A1", "password": "x"})
    r = attack.get("/admin/audit", params={"f": "csv"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and "\n=cmd" not in r.text and ",=cmd" not in r.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["/collections/buildings/items", "/tiles/buildings/tilejson.json", "/wmts",
                        "/eUrbanMIS/api/v1/getdata", "/auth/me", "/styles/twin.json"]),
       st.dictionaries(st.sampled_from(["bbox", "crs", "filter", "sortby", "limit", "LAYER", "REQUEST", "where",
                                        "properties", "datetime", "bbox-crs"]),
                       st.text(max_size=60), max_size=4))
def test_fuzzed_parameters_never_fail_the_server(attack, path, params):
    _ok(attack.get(path, params=params), allowed=(400, 401, 403, 404, 405, 413, 415, 422, 429))
