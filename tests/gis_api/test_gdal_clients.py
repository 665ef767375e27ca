"""Other applications open twin's standard services with GDAL (what QGIS uses underneath)."""

from __future__ import annotations

import httpx
import pyogrio
import pytest


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
@pytest.mark.parametrize("entry", ["", "/api"])
def test_gdal_reads_features_through_ogc_api_features(live_process_url, town_store, entry):
    url = f"OAPIF:{live_process_url}{entry}"
    layers = {name for name, _ in pyogrio.list_layers(url)}
    assert {"buildings", "pipelines", "grids", "events"} <= layers
    info = pyogrio.read_info(url, layer="buildings")
    assert info["features"] == town_store.summary("buildings").count
    assert "height_m" in list(info["fields"])
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    bbox = (minx, miny, (minx + maxx) / 2, (miny + maxy) / 2)
    _, _, geoms, _ = pyogrio.raw.read(url, layer="buildings", bbox=bbox)
    r = httpx.get(f"{live_process_url}/collections/buildings/items", params={"bbox": ",".join(map(str, bbox)), "limit": 1})
    assert len(geoms) == r.json()["numberMatched"] > 0


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_root_answers_json_clients_with_the_landing_page(live_process_url):
    doc = httpx.get(f"{live_process_url}/", headers={"Accept": "application/json"}).json()
    assert any(link["rel"] == "data" for link in doc["links"])
    assert "<html" in httpx.get(f"{live_process_url}/", headers={"Accept": "text/html"}).text
    r = httpx.get(f"{live_process_url}/api/collections/buildings?f=json", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/collections/buildings?f=json"


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_gdal_reads_vector_tiles_through_ogc_api_tiles(live_process_url, town_store):
    """GDAL's OGCAPI driver reads the WebMercatorQuad tileset. Its vector branch does not reproject the
    collection's CRS84 bbox (its raster branch does), so the bbox goes in as open options in EPSG:3857,
    as docs/tiles.md tells users."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    (x0, y0), (x1, y1) = tms.xy(minx, miny), tms.xy(maxx, maxy)
    url = f"OGCAPI:{live_process_url}/collections/buildings"
    opts = {"MINX": str(x0), "MINY": str(y0), "MAXX": str(x1), "MAXY": str(y1)}
    info = pyogrio.read_info(url, layer="Zoom level 15", **opts)
    assert {"use", "floors", "height_m"} <= set(info["fields"])
    _, _, geoms, _ = pyogrio.raw.read(url, layer="Zoom level 15", **opts)
    # every building is in some z15 tile; ones crossing tile edges come once per tile
    assert len(geoms) >= town_store.summary("buildings").count
