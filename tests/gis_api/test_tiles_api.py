"""Vector tile HTTP API: MVT, ETag/304, encodings, errors, TileJSON, style, OGC API Tiles, PMTiles export."""

from __future__ import annotations

import gzip
import math

import mapbox_vector_tile
import pytest
from pmtiles.reader import MmapSource, Reader
from shapely.geometry import MultiPolygon, Point, box

from tiles.pmtiles_export import export_pmtiles
from tiles.tms import Tile
from twin.catalog import LAYERS

LON, LAT = 121.0, 31.6


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


@pytest.fixture(scope="module")
def api_store(store):
    store.write_features("buildings", [
        {"id": i, "code": f"A-{i}", "use": "residential", "floors": 2 + i, "height_m": 6.0 + i,
         "geom": MultiPolygon([box(LON + i * 0.0004, LAT, LON + i * 0.0004 + 0.0003, LAT + 0.0003)])}
        for i in range(1, 6)
    ], mode="replace")
    store.write_features("devices", [
        {"id": 9, "code": "D-9", "name": "PM10 #9", "kind": "dust", "status": "online", "geom": Point(LON, LAT)},
    ], mode="replace")
    yield store
    store.clear(["buildings", "devices"])


@pytest.fixture
def client(api_store, client_for):
    return client_for(api_store)


def url(layers: str, t: Tile) -> str:
    return f"/tiles/{layers}/{t.z}/{t.x}/{t.y}.mvt"


def test_mvt_tile_is_gzip_encoded_with_cache_headers(client):
    r = client.get(url("buildings", tile_at(LON, LAT, 15)), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert r.headers["cache-control"].startswith("public, max-age=")
    assert r.headers["etag"].startswith('"')
    layers = mapbox_vector_tile.decode(r.content)  # httpx undid the gzip
    assert sorted(f["id"] for f in layers["buildings"]["features"]) == [1, 2, 3, 4, 5]


def test_if_none_match_gives_304_and_an_edit_gives_a_new_etag(client, api_store):
    t = tile_at(LON, LAT, 15)
    first = client.get(url("buildings", t))
    assert client.get(url("buildings", t), headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    other = client.get(url("devices", t))
    api_store.write_features("buildings", [
        {"id": 6, "code": "A-6", "use": "public", "floors": 3, "height_m": 12.0,
         "geom": MultiPolygon([box(LON, LAT + 0.001, LON + 0.0003, LAT + 0.0013)])}])
    again = client.get(url("buildings", t), headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 200 and again.headers["etag"] != first.headers["etag"]
    assert 6 in {f["id"] for f in mapbox_vector_tile.decode(again.content)["buildings"]["features"]}
    assert client.get(url("devices", t)).headers["etag"] == other.headers["etag"]


def test_composite_tile_over_http_has_both_layers(client):
    r = client.get(url("buildings,devices", tile_at(LON, LAT, 16)))
    assert set(mapbox_vector_tile.decode(r.content)) == {"buildings", "devices"}


def test_empty_tiles_are_204_outside_extent_and_below_minzoom(client):
    assert client.get(url("buildings", tile_at(10.0, 50.0, 15))).status_code == 204
    r = client.get(url("buildings", tile_at(LON, LAT, 11)))
    assert r.status_code == 204 and r.content == b"" and r.headers["etag"]


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/tiles/buildings/40/0/0.mvt", 400, "invalid_parameter"),
    ("/tiles/buildings/3/8/0.mvt", 400, "invalid_parameter"),
    ("/tiles/buildings/3/0/9.mvt", 400, "invalid_parameter"),
    ("/tiles/buildings/a/0/0.mvt", 400, "invalid_parameter"),
    ("/tiles/buildings/1/-1/0.mvt", 400, "invalid_parameter"),
    ("/tiles/nosuchlayer/1/0/0.mvt", 404, "layer_not_found"),
    ("/tiles/" + ",".join(f"l{i}" for i in range(200)) + "/1/0/0.mvt", 400, "limit_exceeded"),
    ("/collections/buildings/tiles/WebMercatorQuad/99/0/0", 400, "invalid_parameter"),
    ("/collections/buildings/tiles/NoSuchTMS", 400, "invalid_parameter"),
    ("/collections/nosuchlayer/tiles", 404, "layer_not_found"),
])
def test_bad_tile_requests_are_4xx_json(client, path, status, code):
    r = client.get(path)
    assert r.status_code == status
    body = r.json()
    assert body["code"] == code and body["message"] and "detail" in body


def test_tilejson_describes_layers_bounds_and_template(client):
    tj = client.get("/tiles/buildings,devices/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"] == ["http://testserver/tiles/buildings,devices/{z}/{x}/{y}.mvt"]
    by_id = {v["id"]: v for v in tj["vector_layers"]}
    assert by_id["buildings"]["fields"] == {"use": "String", "floors": "Number",
                                            "height_m": "Number"}
    assert by_id["buildings"]["minzoom"] == LAYERS["buildings"].min_zoom
    assert tj["minzoom"] == 10 and tj["maxzoom"] == 16  # clients overzoom z16
    w, s, e, n = tj["bounds"]
    assert w <= LON <= e and s <= LAT <= n
    assert len(tj["center"]) == 3


def test_style_is_a_valid_maplibre_v8_document_over_existing_sources(client):
    style = client.get("/styles/twin.json").json()
    assert style["version"] == 8
    sources = style["sources"]
    # this twin has no orthophoto: the style declares no raster source a client would ask in vain
    assert "ortho" not in sources and not any(s["type"] == "raster" for s in sources.values())
    # the label subsets once the server has read the labels (?labels=<key>), the full ranges before
    assert style["glyphs"].split("?labels=")[0] == "http://testserver/fonts/{fontstack}/{range}.pbf"
    minx, miny, maxx, maxy = style["metadata"]["twin:bounds"]
    assert minx < LON + 0.0004 < maxx and miny < LAT + 0.0001 < maxy
    # each vector source carries its TileJSON fields (no round trip before its first tile request)
    assert "url" not in sources["twin"] and sources["twin"]["tiles"][0].startswith("http://testserver/tiles/")
    assert sources["twin"]["tiles"][0].endswith("/{z}/{x}/{y}.mvt")
    ids = [layer["id"] for layer in style["layers"]]
    assert len(ids) == len(set(ids))
    kinds = {"background", "fill", "line", "circle", "fill-extrusion", "raster", "symbol"}
    for layer in style["layers"]:
        assert layer["type"] in kinds
        if layer["type"] != "background":
            assert layer["source"] in sources
        if sources.get(layer.get("source"), {}).get("type") == "vector":
            assert layer["source-layer"] in LAYERS
    by_id = {layer["id"]: layer for layer in style["layers"]}
    assert by_id["buildings"]["type"] == "fill-extrusion"
    assert "height_m" in str(by_id["buildings"]["paint"]["fill-extrusion-height"])
    assert "utility" in str(by_id["pipelines"]["paint"]["line-color"])
    # each vector source's TileJSON (named in the metadata) resolves, names every layer the style
    # draws from it, and says what the style's source says
    links = style["metadata"]["twin:tilejson"]
    for name, src in sources.items():
        if src["type"] != "vector":
            continue
        tj = client.get(links[name].removeprefix("http://testserver")).json()
        assert {layer["source-layer"] for layer in style["layers"] if layer.get("source") == name} <= {
            v["id"] for v in tj["vector_layers"]}
        assert {k: tj[k] for k in ("tiles", "bounds", "minzoom", "maxzoom")} == {
            k: src[k] for k in ("tiles", "bounds", "minzoom", "maxzoom")}
    # fast-changing layers have their own source, so their edits never touch the building tiles
    assert {by_id[i]["source"] for i in ("events", "devices", "cameras")} == {"twin-live"}
    assert by_id["buildings"]["source"] == "twin" != by_id["events"]["source"]
    assert "events" not in sources["twin"]["tiles"][0] and "buildings" not in sources["twin-live"]["tiles"][0]


def test_style_declares_the_orthophoto_with_its_bounds_and_zooms(town_client):
    style = town_client.get("/styles/twin.json").json()
    ortho = style["sources"]["ortho"]
    assert ortho["tiles"] == ["http://testserver/raster/ortho/{z}/{x}/{y}.webp"]
    info = town_client.get("/raster/ortho/info").json()
    assert ortho["bounds"] == pytest.approx(info["bounds"], abs=1e-6)
    assert ortho["minzoom"] == info["minzoom"]
    # a tile inside the declared bounds at the declared minzoom exists
    lon, lat = info["center"]
    t = tile_at(lon, lat, ortho["minzoom"])
    assert town_client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png").status_code == 200
    assert style["layers"][1]["id"] == "ortho"


def test_ogc_api_tiles_serves_row_col_and_describes_tilesets(client):
    t = tile_at(LON, LAT, 15)
    ogc = client.get(f"/collections/buildings/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}")
    xyz = client.get(url("buildings", t))
    assert ogc.status_code == 200 and ogc.content == xyz.content
    sets = client.get("/collections/buildings/tiles").json()
    assert sets["tilesets"][0]["dataType"] == "vector"
    meta = client.get("/collections/buildings/tiles/WebMercatorQuad").json()
    assert meta["tileMatrixSetURI"].endswith("/WebMercatorQuad")
    assert any(link["rel"] == "item" and "{tileMatrix}/{tileRow}/{tileCol}" in link["href"]
               for link in meta["links"])
    assert meta["layers"][0]["id"] == "buildings"
    assert client.get("/tileMatrixSets").json()["tileMatrixSets"][0]["id"] == "WebMercatorQuad"
    tms = client.get("/tileMatrixSets/WebMercatorQuad").json()
    assert tms["id"] == "WebMercatorQuad" and len(tms["tileMatrices"]) >= 20
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in conf


def test_pmtiles_export_round_trips_through_the_reader(api_store, tmp_path):
    out = tmp_path / "twin.pmtiles"
    result = export_pmtiles(api_store, ["buildings", "devices"], range(12, 17), out)
    assert result.tiles_written >= 5 and out.stat().st_size == result.bytes
    with open(out, "rb") as f:
        reader = Reader(MmapSource(f))
        header, meta = reader.header(), reader.metadata()
        assert header["tile_type"].name == "MVT" and header["tile_compression"].name == "GZIP"
        assert header["min_zoom"] == 12 and header["max_zoom"] == 16
        assert header["min_lon_e7"] <= LON * 1e7 <= header["max_lon_e7"]
        assert {v["id"] for v in meta["vector_layers"]} == {"buildings", "devices"}
        t = tile_at(LON, LAT, 16)
        layers = mapbox_vector_tile.decode(gzip.decompress(reader.get(t.z, t.x, t.y)))
        assert {"buildings", "devices"} <= set(layers)
        assert reader.get(16, 0, 0) is None


def test_seed_fills_the_cache_the_server_reads(api_store):
    from tiles.cache import TileCache
    from tiles.seed import seed_tiles
    from tiles.service import TileService

    cache = TileCache(4 * 2**20)
    result = seed_tiles(api_store, ["buildings"], [14, 15], cache=cache)
    assert result.tiles >= 2 and result.non_empty >= 2
    # a long version TTL: on a loaded machine more than the default 1 s may pass between reading the
    # versions and the lookup, and a memory lookup with versions older than the TTL says "not cached"
    svc = TileService(api_store, cache=cache, version_ttl=600)
    try:
        t = tile_at(LON, LAT, 15)
        svc.versions.get()
        assert svc.cached(svc.layer_specs("buildings"), t, "gzip") is not None
    finally:
        svc.close()


@pytest.mark.parametrize("encoding", ["gzip", "br", "identity"])
def test_a_cached_tile_answered_up_front_matches_the_full_answer(api_store, client_for, encoding):
    """The second request is a memory hit answered by the cached-tile front, before the middleware.
    (No background block maintenance here: a block refresh between the two requests would
    rightly re-key the tile and send the second request down the full path.)"""
    from gis_api.metrics import REQUESTS

    client = client_for(api_store, tile_blocks=False, tile_warm=False)

    hdrs = {"Accept-Encoding": encoding, "Origin": "http://embedder.example"}
    path = url("buildings,devices", tile_at(LON, LAT, 16))
    first = client.get(path, headers=hdrs)
    before = REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "200")._value.get()
    second = client.get(path, headers=hdrs)
    assert REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "200")._value.get() == before + 1
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    for name in ("etag", "cache-control", "vary", "content-type", "access-control-allow-origin"):
        assert second.headers.get(name) == first.headers.get(name), name
    assert second.headers.get("content-encoding") == first.headers.get("content-encoding")
    # a revalidation (a browser, or nginx's tile cache every second) naming the cached version: a 304
    # from the front too, with the tile's validators and no body
    before = REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "304")._value.get()
    again = client.get(path, headers={**hdrs, "If-None-Match": first.headers["etag"]})
    assert REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "304")._value.get() == before + 1
    assert again.status_code == 304 and again.content == b""
    for name in ("etag", "cache-control", "vary", "access-control-allow-origin"):
        assert again.headers.get(name) == first.headers.get(name), name
    assert "content-encoding" not in again.headers and "content-type" not in again.headers
    # past the version TTL (here: forgotten), the front reads the versions once and still answers
    client.app.state.tiles.versions.invalidate()
    before = REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "304")._value.get()
    again = client.get(path, headers={**hdrs, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert REQUESTS.labels("/tiles/{layers}/{z}/{x}/{y}.mvt", "GET", "304")._value.get() == before + 1
    # another coding's tag, or an old one, names another body: the whole tile
    for tag in (first.headers["etag"].replace(f"-{encoding}", "-gzip" if encoding != "gzip" else "-br"), '"old-gzip"'):
        whole = client.get(path, headers={**hdrs, "If-None-Match": tag})
        assert whole.status_code == 200 and whole.content == first.content
