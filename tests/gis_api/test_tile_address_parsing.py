"""Tile addresses on every tile route: any text is a 4xx or a tile, never a 500 (issue 14, #8).

``²`` passes ``str.isdigit`` but not ``int``; ``٣`` and ``３`` pass both. All of them, and
zooms, columns and rows outside the pyramid, are a 400 — JSON on the tile routes, an OWS
ExceptionReport on WMTS — on the vector tiles (full path and cached-tile front), raster
tiles, OGC API Tiles and WMTS KVP, on both backends.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OWS = "{http://www.opengis.net/ows/1.1}"
BAD_NUMBERS = ["²", "٣", "３", "1²", "-1", "+1", " 1", "1 ", "1.0", "1e1", "0x1", "1_0", "1" * 12]
BAD_ZOOMS = ["25", "40", "999"]


def _routes(z: str, x: str, y: str) -> dict[str, str]:
    return {
        "vector": f"/tiles/buildings/{quote(z, safe='')}/{quote(x, safe='')}/{quote(y, safe='')}.mvt",
        "composite": f"/tiles/buildings,roads/{quote(z, safe='')}/{quote(x, safe='')}/{quote(y, safe='')}.mvt",
        "ogc": f"/collections/buildings/tiles/WebMercatorQuad/{quote(z, safe='')}/{quote(y, safe='')}/"
               f"{quote(x, safe='')}",
        "raster": f"/raster/dem/{quote(z, safe='')}/{quote(x, safe='')}/{quote(y, safe='')}.png",
    }


def _json_error(r) -> dict:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"code", "message", "detail"} and body["message"]
    return body


def _wmts(client, z: str, x: str, y: str, layer: str = "dem", fmt: str = "image/png"):
    return client.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": layer,
                                       "STYLE": "default", "TILEMATRIXSET": "WebMercatorQuad", "TILEMATRIX": z,
                                       "TILEROW": y, "TILECOL": x, "FORMAT": fmt}, follow_redirects=False)


def _ows_code(r) -> str:
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/xml"), r.text
    exc = ET.fromstring(r.content).find(f"{OWS}Exception")
    assert exc is not None
    return exc.get("exceptionCode")


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_bad_tile_number_is_a_400_on_every_tile_route(town_client, bad, position):
    parts = ["14", "13700", "6680"]
    parts[position] = bad
    for name, path in _routes(*parts).items():
        r = town_client.get(path)
        assert r.status_code == 400, (name, path, r.status_code, r.text)
        assert _json_error(r)["code"] == "invalid_parameter", name


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize("param", ["TILEMATRIX", "TILEROW", "TILECOL"])
def test_bad_tile_number_is_an_ows_exception_on_wmts_kvp(town_client, bad, param):
    values = {"TILEMATRIX": "14", "TILEROW": "6680", "TILECOL": "13700"}
    values[param] = bad
    for layer, fmt in (("dem", "image/png"), ("buildings", "application/vnd.mapbox-vector-tile")):
        r = _wmts(town_client, values["TILEMATRIX"], values["TILECOL"], values["TILEROW"], layer, fmt)
        assert _ows_code(r) in ("InvalidParameterValue", "TileOutOfRange"), (layer, r.text)


@pytest.mark.parametrize("zoom", BAD_ZOOMS)
def test_zoom_beyond_the_pyramid_is_a_400(town_client, zoom):
    for name, path in _routes(zoom, "0", "0").items():
        r = town_client.get(path)
        assert r.status_code == 400, (name, r.text)
        _json_error(r)
    assert _ows_code(_wmts(town_client, zoom, "0", "0")) == "InvalidParameterValue"


def test_a_cached_tile_address_in_other_digits_is_still_a_400(town_client):
    """The cached-tile front parses the address before the cache: warm the tile, then ask with ``²``/``٣``."""
    assert town_client.get("/tiles/buildings/2/3/1.mvt").status_code in (200, 204)
    assert town_client.get("/tiles/buildings/2/3/1.mvt").status_code in (200, 204)  # now a memory hit
    for z in ("²", "٣", "２"):
        r = town_client.get(f"/tiles/buildings/{quote(z)}/3/1.mvt")
        assert r.status_code == 400 and _json_error(r)["code"] == "invalid_parameter"


@pytest.mark.parametrize(("z", "x", "y"), [("2", "4", "0"), ("2", "0", "4"), ("0", "1", "0"), ("24", "16777216", "0")])
def test_column_or_row_outside_the_matrix_is_a_400(town_client, z, x, y):
    for name, path in _routes(z, x, y).items():
        r = town_client.get(path)
        assert r.status_code == 400, (name, r.text)
        _json_error(r)
    assert _ows_code(_wmts(town_client, z, x, y)) == "TileOutOfRange"


def test_tilejson_with_a_non_layer_name_is_a_json_404(town_client):
    for layers in ("²", "buildings,٣", "%00"):
        r = town_client.get(f"/tiles/{quote(layers, safe=',')}/tilejson.json")
        assert r.status_code == 404, r.text
        _json_error(r)
    for size in ("²", "٣", "x"):
        r = town_client.get("/raster/dem/tilejson.json", params={"tilesize": size})
        assert r.status_code == 400, r.text
        _json_error(r)


# --- the class: any text in any part ---------------------------------------------------------

PART = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\A[0-9٠-٩０-９²³¹+\-. ]{1,10}\Z"),
    st.integers(-5, 2**35).map(str),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(z=PART, x=PART, y=PART)
def test_any_tile_address_is_answered_without_a_server_error(town_client, z, x, y):
    if any(p in ("", ".", "..") for p in (z, x, y)):
        return  # not path segments
    for name, path in _routes(z, x, y).items():
        r = town_client.get(path)
        assert r.status_code in (200, 204, 400, 404), (name, path, r.status_code, r.text)
        if r.status_code >= 400:
            _json_error(r)
    r = _wmts(town_client, z, x, y)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        _ows_code(r)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.one_of(st.text(min_size=1, max_size=40),
                        st.lists(st.sampled_from(["buildings", "roads", "²", "٣", "", "BUILDINGS"]), min_size=1,
                                 max_size=25).map(",".join)))
def test_any_layer_list_in_a_tile_address_is_answered_without_a_server_error(town_client, layers):
    if layers in (".", ".."):
        return
    seg = quote(layers, safe=",")
    for path in (f"/tiles/{seg}/14/13700/6680.mvt", f"/tiles/{seg}/tilejson.json",
                 f"/collections/{seg}/tiles/WebMercatorQuad/14/6680/13700"):
        r = town_client.get(path)
        assert r.status_code in (200, 204, 400, 404), (path, r.status_code, r.text)
        if r.status_code >= 400:
            _json_error(r)
