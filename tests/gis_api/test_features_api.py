"""OGC API – Features over HTTP, on both backends."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from pyproj import Transformer

from twin.catalog import LAYERS

CORE_LAYERS = ["grids", "evaluation_grids", "evaluation_points", "buildings", "pipelines", "pipe_nodes",
               "farmland", "zones", "control_lines", "devices", "cameras", "events", "roads",
               "construction_sites"]


@pytest.fixture
def client(empty_store, client_for):
    rows = [{"code": f"B{i:03d}", "use": "residential" if i % 2 else "commercial", "floors": 1 + i % 6,
             "height_m": 3.0 * (1 + i % 6), "geom": shapely.box(120.9 + i * 1e-3, 31.7, 120.9004 + i * 1e-3, 31.7004)}
            for i in range(30)]
    empty_store.write_features("buildings", rows)
    base = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    empty_store.write_features("events", [
        {"code": f"E{i}", "source": "hotline_12345", "category": "noise", "title": "noise", "status": "closed",
         "reported_at": base + dt.timedelta(days=i), "geom": shapely.Point(120.9 + i * 1e-3, 31.7)}
        for i in range(5)])
    return client_for(empty_store)


def test_landing_page_links_to_api_conformance_and_collections(client):
    doc = client.get("/api").json()
    rels = {link["rel"] for link in doc["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= rels
    assert client.get("/api/openapi.json").json()["paths"]["/collections/{layer}/items"]
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conf


def test_collections_lists_every_core_layer(client):
    ids = [c["id"] for c in client.get("/collections").json()["collections"]]
    assert ids == list(LAYERS) and set(CORE_LAYERS) == set(ids)


def test_collection_has_extent_count_and_links(client):
    doc = client.get("/collections/buildings").json()
    assert doc["numberOfFeatures"] == 30
    bbox = doc["extent"]["spatial"]["bbox"][0]
    assert bbox[0] == pytest.approx(120.9, abs=1e-4)
    assert {"items", "self"} <= {link["rel"] for link in doc["links"]}
    ev = client.get("/collections/events").json()
    assert ev["extent"]["temporal"]["interval"][0][0].startswith("2026-05-01")


def test_items_bbox_limit_and_next_link(client):
    r = client.get("/collections/buildings/items", params={"bbox": "120.8,31.6,121.0,31.8", "limit": 10})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["numberMatched"] == 30 and fc["numberReturned"] == 10
    nxt = next(link["href"] for link in fc["links"] if link["rel"] == "next")
    fc2 = client.get(nxt).json()
    assert fc2["numberReturned"] == 10
    assert not {f["id"] for f in fc["features"]} & {f["id"] for f in fc2["features"]}
    assert any(link["rel"] == "prev" for link in fc2["links"])


def test_items_bbox_excludes_features_outside(client):
    fc = client.get("/collections/buildings/items", params={"bbox": "120.8995,31.6995,120.9025,31.7010"}).json()
    assert sorted(f["properties"]["code"] for f in fc["features"]) == ["B000", "B001", "B002"]


def test_property_filter_and_properties_selection(client):
    fc = client.get("/collections/buildings/items", params={"use": "commercial", "properties": "code,use"}).json()
    assert fc["numberMatched"] == 15
    assert all(set(f["properties"]) == {"code", "use"} for f in fc["features"])


def test_datetime_filter_on_events(client):
    fc = client.get("/collections/events/items", params={"datetime": "2026-05-02T00:00:00Z/2026-05-03T12:00:00Z"}).json()
    assert sorted(f["properties"]["code"] for f in fc["features"]) == ["E1", "E2"]
    fc = client.get("/collections/events/items", params={"datetime": "../2026-05-01T12:00:00Z"}).json()
    assert [f["properties"]["code"] for f in fc["features"]] == ["E0"]


def test_output_crs_web_mercator_and_lat_lon_order(client):
    one = client.get("/collections/events/items", params={"code": "E0"}).json()["features"][0]
    lon, lat = one["geometry"]["coordinates"]
    fid = one["id"]
    r = client.get(f"/collections/events/items/{fid}", params={"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"})
    assert r.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    x, y = r.json()["geometry"]["coordinates"]
    ex, ey = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    assert (x, y) == (pytest.approx(ex, abs=0.01), pytest.approx(ey, abs=0.01))
    # EPSG:4326 is latitude-first
    a, b = client.get(f"/collections/events/items/{fid}", params={"crs": "EPSG:4326"}).json()["geometry"]["coordinates"]
    assert (a, b) == (pytest.approx(lat), pytest.approx(lon))


def test_bbox_crs_gauss_kruger_zone(client):
    t = Transformer.from_crs("EPSG:4326", "EPSG:4528", always_xy=True)  # CGCS2000 GK zone 40
    (x0, y0), (x1, y1) = t.transform(120.8995, 31.6995), t.transform(120.9025, 31.7010)
    # EPSG:4528 axis order is northing, easting
    fc = client.get("/collections/buildings/items", params={
        "bbox": f"{y0},{x0},{y1},{x1}", "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4528"}).json()
    assert {"B000", "B001", "B002"} <= {f["properties"]["code"] for f in fc["features"]}
    assert fc["numberMatched"] <= 4


def test_single_item_and_links(client):
    fid = client.get("/collections/buildings/items", params={"limit": 1}).json()["features"][0]["id"]
    feat = client.get(f"/collections/buildings/items/{fid}").json()
    assert feat["type"] == "Feature" and feat["id"] == fid
    assert feat["geometry"]["type"] == "MultiPolygon"


@pytest.mark.parametrize("url,status,code", [
    ("/collections/nope/items", 404, "layer_not_found"),
    ("/collections/buildings/items/999999", 404, "feature_not_found"),
    ("/collections/buildings/items/abc", 400, "invalid_parameter"),
    ("/collections/buildings/items?bbox=1,2,3", 400, "invalid_parameter"),
    ("/collections/buildings/items?bbox=a,b,c,d", 400, "invalid_parameter"),
    ("/collections/buildings/items?bbox=121,31,120,32", 400, "invalid_parameter"),
    ("/collections/buildings/items?bbox=-180,-90,180,90", 400, "limit_exceeded"),
    ("/collections/buildings/items?bbox=200,31,201,32", 400, "invalid_parameter"),
    ("/collections/buildings/items?limit=1000000", 400, "limit_exceeded"),
    ("/collections/buildings/items?limit=0", 400, "invalid_parameter"),
    ("/collections/buildings/items?limit=ten", 400, "invalid_parameter"),
    ("/collections/buildings/items?offset=-1", 400, "invalid_parameter"),
    ("/collections/buildings/items?crs=EPSG:999999", 400, "invalid_parameter"),
    ("/collections/buildings/items?crs=EPSG:32633", 400, "invalid_parameter"),
    ("/collections/buildings/items?bbox-crs=EPSG:3857", 400, "invalid_parameter"),
    ("/collections/buildings/items?datetime=yesterday", 400, "invalid_parameter"),
    ("/collections/buildings/items?datetime=2026-01-01T00:00:00Z", 400, "invalid_parameter"),
    ("/collections/buildings/items?floors=many", 400, "invalid_parameter"),
    ("/collections/buildings/items?colour=red", 400, "invalid_parameter"),
    ("/collections/buildings/items?properties=code,nope", 400, "invalid_parameter"),
    ("/collections/buildings/items?f=html", 400, "invalid_parameter"),
    ("/no/such/path", 404, "not_found"),
])
def test_bad_input_gets_a_json_4xx(client, url, status, code):
    r = client.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"]


def test_health_readiness_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["checks"]["database"] == "ok"
    client.get("/collections")
    assert "twin_http_requests_total" in client.get("/metrics").text


def test_readiness_fails_cleanly_when_database_is_down(client_for, tmp_path):
    from twin.store import SpatialStore

    dead = SpatialStore.from_url("postgresql://postgres@127.0.0.1:1/none")
    c = client_for(dead)
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    r = c.get("/collections/buildings/items")
    assert r.status_code == 503 and r.json()["code"] == "store_unavailable"


def test_viewer_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "twin" in r.text
