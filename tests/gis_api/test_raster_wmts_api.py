"""Raster tile and WMTS endpoints over HTTP; GDAL reads the WMTS from a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
import uvicorn
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import box

from gis_api.app import create_app
from twin.settings import TwinSettings
from twin.store import SpatialStore

LON, LAT = 120.9, 31.7
TMS = morecantile.tms.get("WebMercatorQuad")
NS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
      "xlink": "http://www.w3.org/1999/xlink"}
MVT = "application/vnd.mapbox-vector-tile"


def _write_cog(path: Path, data: np.ndarray, res: float, nodata: float | None = None, **extra: str) -> None:
    cx, cy = TMS.xy(LON, LAT)
    bands, rows, cols = data.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype.name, crs="EPSG:3857",
                   transform=from_origin(cx - cols * res / 2, cy + rows * res / 2, res, res), nodata=nodata,
                   tiled=True, blockxsize=256, blockysize=256, **extra)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as src:
            rio_copy(src, str(path), driver="COG", COMPRESS="DEFLATE")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A twin home with rasters/dem.tif (float32, 2 m) and rasters/ortho.tif (RGB, 1 m) around (LON, LAT)."""
    root = tmp_path_factory.mktemp("twin-home")
    (root / "rasters").mkdir()
    yy, xx = np.mgrid[0:1024, 0:1024].astype("float64")
    dem = (20 + 15 * np.sin(xx / 70) * np.cos(yy / 90) + yy / 50).astype("float32")
    _write_cog(root / "rasters" / "dem.tif", dem[None], 2.0, nodata=-9999)
    ortho = np.stack([(xx * 255 // 1024), (yy * 255 // 1024), ((xx // 32 + yy // 32) % 2) * 200 + 30]).astype("uint8")
    _write_cog(root / "rasters" / "ortho.tif", ortho, 1.0, photometric="RGB")
    return root


@pytest.fixture(scope="module")
def app(home: Path):  # noqa: ANN201
    settings = TwinSettings(home=home)
    store = SpatialStore.from_settings(settings)
    store.migrate()
    store.write_features("zones", [{"code": "Z1", "kind": "urban", "name": "Town centre",
                                    "geom": box(LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01)}])
    yield create_app(settings, store)
    store.engine.dispose()


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:  # noqa: ANN001
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def server_url(app) -> Iterator[str]:  # noqa: ANN001
    """The app served by uvicorn on a free local port, in a thread, for GDAL to talk to."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def decode(body: bytes) -> np.ndarray:
    with MemoryFile(body) as mem, mem.open() as src:
        return src.read()


def centre(z: int) -> morecantile.Tile:
    return TMS.tile(LON, LAT, z)


# --- raster tiles -------------------------------------------------------------------------


def test_dem_tile_is_a_png_of_the_requested_size(client: TestClient) -> None:
    t = centre(15)
    r = client.get(f"/raster/dem/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert decode(r.content).shape == (4, 256, 256)
    r = client.get(f"/raster/dem/{t.z}/{t.x}/{t.y}.png?tilesize=512")
    assert decode(r.content).shape == (4, 512, 512)


def test_dem_colormap_and_rescale_change_the_pixels(client: TestClient) -> None:
    t = centre(15)
    url = f"/raster/dem/{t.z}/{t.x}/{t.y}.png"
    default = decode(client.get(url).content)
    viridis = decode(client.get(url + "?colormap=viridis").content)
    rescaled = decode(client.get(url + "?rescale=25,30").content)
    assert not np.array_equal(default[:3], viridis[:3])
    assert not np.array_equal(default[:3], rescaled[:3])


def test_hillshade_by_parameter_and_by_twin_dataset(client: TestClient) -> None:
    t = centre(15)
    a = client.get(f"/raster/dem/{t.z}/{t.x}/{t.y}.png?algorithm=hillshade&azimuth=315&altitude=45")
    b = client.get(f"/raster/dem-hillshade/{t.z}/{t.x}/{t.y}.png")
    assert a.status_code == b.status_code == 200
    assert decode(a.content).shape == (2, 256, 256)
    np.testing.assert_array_equal(decode(a.content), decode(b.content))


def test_webp_and_jpeg_tiles(client: TestClient) -> None:
    t = centre(17)
    webp = client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.webp")
    jpg = client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.jpg")
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    assert jpg.headers["content-type"] == "image/jpeg" and decode(jpg.content).shape == (3, 256, 256)


def test_ortho_tile_at_the_data_is_opaque(client: TestClient) -> None:
    t = centre(17)
    arr = decode(client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png").content)
    assert (arr[3] == 255).all() and arr[:3].std() > 0


def test_tile_outside_the_data_is_404_json(client: TestClient) -> None:
    t = TMS.tile(LON + 1, LAT, 15)
    r = client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png")
    assert r.status_code == 404
    assert r.json()["code"] == "tile_outside_bounds"


def test_etag_and_if_none_match(client: TestClient) -> None:
    t = centre(16)
    url = f"/raster/dem/{t.z}/{t.x}/{t.y}.png"
    first = client.get(url)
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = client.get(url)
    assert again.headers["etag"] == etag and again.content == first.content
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url + "?colormap=viridis").headers["etag"] != etag


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/raster/nope/15/1/1.png", 404, "dataset_not_found"),
        ("/raster/dem/25/0/0.png", 400, "invalid_parameter"),
        ("/raster/dem/3/8/0.png", 400, "invalid_parameter"),
        ("/raster/dem/3/0/-1.png", 400, "invalid_parameter"),
        ("/raster/dem/a/0/0.png", 400, "invalid_parameter"),
        ("/raster/dem/3/0/0.gif", 400, "invalid_parameter"),
        ("/raster/dem/15/27388/13339.png?colormap=nope", 400, "invalid_parameter"),
        ("/raster/dem/15/27388/13339.png?rescale=9", 400, "invalid_parameter"),
        ("/raster/dem/15/27388/13339.png?rescale=9,1", 400, "invalid_parameter"),
        ("/raster/dem/15/27388/13339.png?tilesize=100", 400, "invalid_parameter"),
        ("/raster/dem/15/27388/13339.png?algorithm=slope", 400, "invalid_parameter"),
        ("/raster/ortho/15/27388/13339.png?colormap=viridis", 400, "invalid_parameter"),
        ("/raster/nope/info", 404, "dataset_not_found"),
    ],
)
def test_bad_raster_requests_are_json_errors(client: TestClient, path: str, status: int, code: str) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"] and "detail" in body


def test_info_and_tilejson(client: TestClient) -> None:
    info = client.get("/raster/dem/info").json()
    assert info["dtype"] == "float32" and info["count"] == 1 and info["overviews"]
    assert info["bounds"][0] < LON < info["bounds"][2]
    assert info["statistics"]["b1"]["min"] < info["statistics"]["b1"]["max"]
    tj = client.get("/raster/dem/tilejson.json?colormap=viridis&format=webp").json()
    assert tj["tilejson"] == "3.0.0" and tj["bounds"] == info["bounds"]
    assert tj["tiles"][0].endswith("/raster/dem/{z}/{x}/{y}.webp?colormap=viridis")
    assert tj["minzoom"] <= tj["center"][2] <= tj["maxzoom"]
    names = [d["name"] for d in client.get("/raster").json()["datasets"]]
    assert names == ["dem", "ortho", "dem-hillshade", "dust-heat"]  # files, hillshade twins, virtual datasets


# --- WMTS ------------------------------------------------------------------------------------


def test_capabilities_parse_and_list_raster_and_vector_layers(client: TestClient) -> None:
    r = client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.opengis.net/wmts/1.0}Capabilities" and root.get("version") == "1.0.0"
    layers = {el.findtext("ows:Identifier", namespaces=NS): el for el in root.iterfind("wmts:Contents/wmts:Layer", NS)}
    assert {"dem", "ortho", "dem-hillshade", "zones", "buildings"} <= set(layers)
    ortho = layers["ortho"]
    assert [f.text for f in ortho.iterfind("wmts:Format", NS)][:2] == ["image/png", "image/jpeg"]
    lower = [float(v) for v in ortho.findtext("ows:WGS84BoundingBox/ows:LowerCorner", namespaces=NS).split()]
    assert lower[0] < LON and lower[1] < LAT
    templates = {u.get("format"): u.get("template") for u in ortho.iterfind("wmts:ResourceURL", NS)}
    assert templates["image/png"].endswith("/raster/ortho/{TileMatrix}/{TileCol}/{TileRow}.png")
    zones = layers["zones"]
    assert [f.text for f in zones.iterfind("wmts:Format", NS)] == [MVT]
    assert zones.find("wmts:ResourceURL", NS).get("template").endswith("/tiles/zones/{TileMatrix}/{TileCol}/{TileRow}.mvt")
    zlow = [float(v) for v in zones.findtext("ows:WGS84BoundingBox/ows:LowerCorner", namespaces=NS).split()]
    assert zlow == pytest.approx([LON - 0.01, LAT - 0.01])
    sets = {s.findtext("ows:Identifier", namespaces=NS): s for s in root.iterfind("wmts:Contents/wmts:TileMatrixSet", NS)}
    full = sets["GoogleMapsCompatible"]
    assert full.findtext("wmts:WellKnownScaleSet", namespaces=NS) == "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
    matrices = full.findall("wmts:TileMatrix", NS)
    assert len(matrices) == 25 and matrices[0].findtext("wmts:MatrixWidth", namespaces=NS) == "1"
    assert float(matrices[0].findtext("wmts:ScaleDenominator", namespaces=NS)) == pytest.approx(559082264.0287, rel=1e-9)
    linked = [e.text for e in ortho.iterfind("wmts:TileMatrixSetLink/wmts:TileMatrixSet", NS)]
    assert linked[-1] == "GoogleMapsCompatible" and all(t in sets for t in linked)
    href = root.find("ows:OperationsMetadata/ows:Operation/ows:DCP/ows:HTTP/ows:Get", NS).get(f"{{{NS['xlink']}}}href")
    assert href.endswith("/wmts?")


def test_kvp_get_capabilities_matches_restful(client: TestClient) -> None:
    rest = client.get("/wmts/1.0.0/WMTSCapabilities.xml").content
    kvp = client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities")
    assert kvp.status_code == 200 and kvp.content == rest
    assert client.get("/wmts?service=wmts&request=getcapabilities").status_code == 200


def test_kvp_get_tile_equals_the_rest_tile(client: TestClient) -> None:
    t = centre(17)
    kvp = client.get(f"/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=ortho&STYLE=default"
                     f"&TILEMATRIXSET=GoogleMapsCompatible&TILEMATRIX={t.z}&TILEROW={t.y}&TILECOL={t.x}&FORMAT=image/png")
    assert kvp.status_code == 200 and kvp.headers["content-type"] == "image/png"
    assert kvp.content == client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png").content


def test_kvp_get_tile_for_a_vector_layer_redirects_to_the_mvt(client: TestClient) -> None:
    t = centre(14)
    r = client.get(f"/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=zones&TILEMATRIXSET=WebMercatorQuad"
                   f"&TILEMATRIX={t.z}&TILEROW={t.y}&TILECOL={t.x}&FORMAT={MVT}", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith(f"/tiles/zones/{t.z}/{t.x}/{t.y}.mvt")


GOOD = dict(SERVICE="WMTS", REQUEST="GetTile", LAYER="ortho", TILEMATRIXSET="GoogleMapsCompatible",
            TILEMATRIX="17", TILEROW=str(centre(17).y), TILECOL=str(centre(17).x), FORMAT="image/png")


@pytest.mark.parametrize(
    "change, code, locator",
    [
        ({"SERVICE": None}, "MissingParameterValue", "SERVICE"),
        ({"SERVICE": "WMS"}, "InvalidParameterValue", "SERVICE"),
        ({"REQUEST": None}, "MissingParameterValue", "REQUEST"),
        ({"REQUEST": "GetFeatureInfo"}, "OperationNotSupported", "REQUEST"),
        ({"LAYER": None}, "MissingParameterValue", "LAYER"),
        ({"LAYER": "nope"}, "InvalidParameterValue", "LAYER"),
        ({"FORMAT": None}, "MissingParameterValue", "FORMAT"),
        ({"FORMAT": "image/gif"}, "InvalidParameterValue", "FORMAT"),
        ({"TILEMATRIXSET": "EPSG:4326"}, "InvalidParameterValue", "TILEMATRIXSET"),
        ({"TILEMATRIX": None}, "MissingParameterValue", "TILEMATRIX"),
        ({"TILEMATRIX": "25"}, "InvalidParameterValue", "TILEMATRIX"),
        ({"TILEMATRIX": "x"}, "InvalidParameterValue", "TILEMATRIX"),
        ({"TILEROW": None}, "MissingParameterValue", "TILEROW"),
        ({"TILEROW": "-1"}, "TileOutOfRange", "TILEROW"),
        ({"TILECOL": str(2**17)}, "TileOutOfRange", "TILECOL"),
        ({"TILECOL": "0"}, "TileOutOfRange", "TILEROW"),  # inside the matrix, outside the data
    ],
)
def test_bad_kvp_is_an_ows_exception_report(client: TestClient, change: dict, code: str, locator: str) -> None:
    params = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    r = client.get("/wmts", params=params)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.opengis.net/ows/1.1}ExceptionReport"
    exc = root.find("ows:Exception", NS)
    assert exc.get("exceptionCode") == code and exc.get("locator") == locator
    assert exc.findtext("ows:ExceptionText", namespaces=NS)


# --- GDAL against a real server -----------------------------------------------------------------


def test_gdal_opens_the_wmts_and_reads_the_tiles_pixels(server_url: str, client: TestClient) -> None:
    url = f"WMTS:{server_url}/wmts/1.0.0/WMTSCapabilities.xml,layer=ortho"
    with rasterio.open(url) as ds:
        assert ds.driver == "WMTS" and ds.crs.to_epsg() == 3857 and ds.count == 4
        assert ds.overviews(1)  # the lower zoom levels
        west, south, east, north = ds.bounds
        cx, cy = TMS.xy(LON, LAT)
        assert west < cx < east and south < cy < north
        # GDAL reads at the finest matrix of the first linked set: the native zoom
        z = round(np.log2(TMS.matrix(0).cellSize / ds.res[0]))
        t = centre(z)
        tb = TMS.xy_bounds(t)
        col = round((tb.left - ds.transform.c) / ds.res[0])
        row = round((ds.transform.f - tb.top) / ds.res[1])
        pixels = ds.read(window=Window(col, row, 256, 256))
    tile = decode(client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png").content)
    assert (tile[3] == 255).all()
    np.testing.assert_array_equal(pixels, tile)


def test_gdal_reads_the_dem_layer_and_the_kvp_capabilities(server_url: str) -> None:
    url = f"WMTS:{server_url}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities,layer=dem"
    with rasterio.open(url) as ds:
        assert ds.count == 4
        h, w = ds.height, ds.width
        arr = ds.read(window=Window(w // 2 - 32, h // 2 - 32, 64, 64))
        assert (arr[3] == 255).all() and arr[:3].std() > 0


# --- the sample town (both backends, the lead's fixtures) ------------------------------------


def test_sample_town_rasters_and_layers_are_served(town_client: TestClient) -> None:
    names = [d["name"] for d in town_client.get("/raster").json()["datasets"]]
    assert {"dem", "ortho", "dem-hillshade"} <= set(names)
    info = town_client.get("/raster/ortho/info").json()
    lon = (info["bounds"][0] + info["bounds"][2]) / 2
    lat = (info["bounds"][1] + info["bounds"][3]) / 2
    t = TMS.tile(lon, lat, min(info["maxzoom"], 17))
    arr = decode(town_client.get(f"/raster/ortho/{t.z}/{t.x}/{t.y}.png").content)
    assert (arr[3] == 255).any()
    root = ET.fromstring(town_client.get("/wmts/1.0.0/WMTSCapabilities.xml").content)
    layers = {el.findtext("ows:Identifier", namespaces=NS): el for el in root.iterfind("wmts:Contents/wmts:Layer", NS)}
    low = [float(v) for v in layers["buildings"].findtext("ows:WGS84BoundingBox/ows:LowerCorner", namespaces=NS).split()]
    assert info["bounds"][0] - 0.1 < low[0] < info["bounds"][2]
