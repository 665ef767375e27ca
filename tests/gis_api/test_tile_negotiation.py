"""Content coding and ETags of vector tiles: one strong ETag names one body (issue 14, #9).

On both backends and on both paths — the cached-tile front (a memory hit) and the full
route (a miss, or any conditional request) — a tile's ETag ends in the coding of the bytes
sent, ``If-None-Match`` compares whole tags, and ``Accept-Encoding`` is read with q-values
(``gzip;q=0`` means no gzip) by the route and the gzip middleware alike.
"""

from __future__ import annotations

import gzip

import brotli
import mapbox_vector_tile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gis_api.negotiation import accepted_codings, choose_encoding, etag_matches
from tiles.tms import tiles_for_bbox


def _decode(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return brotli.decompress(body)
    assert coding is None, coding
    return body


@pytest.fixture(scope="module")
def tile_url(town_client) -> str:
    """A buildings tile of the sample town big enough (> 1 KiB plain) that the gzip middleware would act on it."""
    tj = town_client.get("/tiles/buildings/tilejson.json").json()
    lon, lat = tj["center"][:2]
    for z in (15, 14, 13):
        for t in tiles_for_bbox((lon - 0.002, lat - 0.002, lon + 0.002, lat + 0.002), z):
            url = f"/tiles/buildings/{t.z}/{t.x}/{t.y}.mvt"
            r = town_client.get(url, headers={"Accept-Encoding": "identity"})
            if r.status_code == 200 and len(r.content) > 1500:
                return url
    raise AssertionError("no sample-town tile above 1.5 KiB")


def _get(client, url, accept: str | None, inm: str | None = None):
    """The response, with ``.raw`` the bytes as sent (httpx decodes ``.content`` by Content-Encoding)."""
    headers = {"Accept-Encoding": accept if accept is not None else ""}
    if inm is not None:
        headers["If-None-Match"] = inm
    with client.stream("GET", url, headers=headers) as r:
        r.raw = b"".join(r.iter_raw())
    r._content = _decode(r.raw, r.headers.get("content-encoding"))
    return r


def test_a_gzip_etag_never_gives_a_304_to_an_identity_request(town_client, tile_url):
    gz = _get(town_client, tile_url, "gzip")
    assert gz.headers["etag"].endswith('-gzip"')
    for accept in ("identity", "", "gzip;q=0", "br;q=0, gzip;q=0"):
        r = _get(town_client, tile_url, accept, inm=gz.headers["etag"])
        assert r.status_code == 200, accept
        assert r.headers["etag"].endswith('-identity"') and "content-encoding" not in r.headers
        mapbox_vector_tile.decode(r.content)
    assert _get(town_client, tile_url, "gzip", inm=gz.headers["etag"]).status_code == 304
    assert _get(town_client, tile_url, "gzip", inm=f'W/{gz.headers["etag"]}').status_code == 304
    assert _get(town_client, tile_url, "gzip", inm=f'"x", {gz.headers["etag"]}').status_code == 304
    assert _get(town_client, tile_url, "gzip", inm=gz.headers["etag"][:-3] + '"').status_code == 200  # a prefix


@pytest.mark.parametrize("accept", ["gzip;q=0", "gzip;q=0.0, deflate", "br;q=0, gzip;q=0", "*;q=0", "x-gzip;q=0"])
def test_q_zero_means_no_gzip_on_the_full_path_and_the_front(town_client, tile_url, accept):
    first = _get(town_client, tile_url, accept, inm='"not-it"')  # a conditional request always takes the full path
    second = _get(town_client, tile_url, accept)  # a memory hit: the cached-tile front
    for r in (first, second):
        assert r.status_code == 200
        assert "content-encoding" not in r.headers, (accept, r.headers)
        assert r.headers["etag"].endswith('-identity"')
        mapbox_vector_tile.decode(r.content)
    assert first.raw == second.raw and first.headers["etag"] == second.headers["etag"]


@pytest.mark.parametrize(("accept", "coding"), [
    ("br;q=0.5, gzip", "gzip"), ("br, gzip;q=0.9", "br"), ("*", "br"), ("identity;q=0, *", "br"),
    ("gzip;q=0.2, identity", None), ("GZIP", "gzip"), ("br;q=1.0, gzip;q=1", "br"), ("gzip;q=2", None),
])
def test_accept_encoding_weights_choose_the_coding(town_client, tile_url, accept, coding):
    for _ in range(2):  # full path, then front
        r = _get(town_client, tile_url, accept)
        assert r.headers.get("content-encoding") == coding, accept
        assert r.headers["etag"].endswith(f'-{coding or "identity"}"')


def test_json_responses_honour_q_zero_too(town_client):
    r = town_client.get("/collections/buildings/items", params={"limit": 200}, headers={"Accept-Encoding": "gzip;q=0"})
    assert r.status_code == 200 and len(r.content) > 1024
    assert "content-encoding" not in r.headers
    r = town_client.get("/collections/buildings/items", params={"limit": 200}, headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"


def test_raster_if_none_match_compares_whole_tags(town_client):
    tj = town_client.get("/raster/dem/tilejson.json").json()
    lon, lat, z = tj["center"]
    t = next(tiles_for_bbox((lon, lat, lon, lat), z))
    url = f"/raster/dem/{t.z}/{t.x}/{t.y}.png"
    first = town_client.get(url)
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    assert town_client.get(url, headers={"If-None-Match": f'"a", W/{etag}'}).status_code == 304
    assert town_client.get(url, headers={"If-None-Match": etag[:-2] + '"'}).status_code == 200


# --- the class: any Accept-Encoding, any If-None-Match ---------------------------------------

CODING = st.sampled_from(["gzip", "br", "identity", "*", "deflate", "zstd", "x-gzip", "GZip", "BR", "compress"])
QVAL = st.sampled_from(["", ";q=0", ";q=0.0", ";q=0.001", ";q=0.5", ";q=1", ";q=1.000", ";q=2", ";q=x", ";q=-1"])
ACCEPT = st.one_of(
    st.lists(st.tuples(CODING, QVAL).map("".join), max_size=5).map(", ".join),
    st.text(max_size=20).filter(lambda t: all(32 <= ord(c) < 127 for c in t)),
)
SEEN: dict[tuple[str, str], bytes] = {}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accept=ACCEPT)
def test_one_etag_names_one_body_on_both_paths(town_client, tile_url, backend, accept):
    for inm in ('"not-it"', None):  # the full path, then (a memory hit) the front
        r = _get(town_client, tile_url, accept, inm=inm)
        assert r.status_code == 200, r.text
        etag, coding = r.headers["etag"], r.headers.get("content-encoding")
        assert etag.endswith(f'-{coding or "identity"}"'), (accept, etag, coding)
        assert coding == (None if choose_encoding(accept) == "identity" else choose_encoding(accept))
        mapbox_vector_tile.decode(r.content)
        assert SEEN.setdefault((backend, etag), r.raw) == r.raw, "one ETag named two bodies"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accept=ACCEPT, others=st.lists(st.sampled_from(["gzip", "br", "identity"]), max_size=3),
       weak=st.booleans(), star=st.booleans())
def test_a_304_only_for_the_etag_of_the_body_that_would_be_sent(town_client, tile_url, accept, others, weak, star):
    tags = [_get(town_client, tile_url, c).headers["etag"] for c in others]
    inm = ", ".join([*(f"W/{t}" if weak else t for t in tags), *(["*"] if star and not tags else [])]) or '"none"'
    sent = _get(town_client, tile_url, accept)
    r = _get(town_client, tile_url, accept, inm=inm)
    expect_304 = (star and not tags) or sent.headers["etag"] in tags
    assert r.status_code == (304 if expect_304 else 200), (accept, inm, sent.headers["etag"])
    assert r.headers["etag"] == sent.headers["etag"]


def test_negotiation_helpers():
    assert accepted_codings("gzip;q=0.5, br;q=x, *;q=0") == {"gzip": 0.5, "*": 0.0}
    assert choose_encoding(None) == choose_encoding("") == choose_encoding("gzip;q=0") == "identity"
    assert choose_encoding("gzip, deflate, br, zstd") == "br"
    assert choose_encoding("br;q=0, gzip") == "gzip"
    assert choose_encoding("*;q=0") == "identity"
    assert etag_matches('W/"a-gzip"', '"a-gzip"') and not etag_matches('"a-gzip"', '"a-identity"')
    assert not etag_matches('"xa-gzip"', '"a-gzip"') and not etag_matches(None, '"a"')


def _curl(url: str, *headers: str) -> tuple[dict[str, str], bytes]:
    """curl as a client would send it: the raw bytes (no --compressed decoding) and the response headers."""
    import subprocess

    args = ["curl", "-s", "-D", "-", "--raw"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, url], capture_output=True, timeout=30, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return {"status": lines[0].split()[1], **{k.lower(): v.strip() for k, _, v in
                                              (line.partition(":") for line in lines[1:])}}, body


def test_curl_against_a_live_server_gets_one_body_per_etag(live_url, tile_url):
    url = live_url + tile_url
    full, body_full = _curl(url, "Accept-Encoding: gzip;q=0", 'If-None-Match: "x"')
    front, body_front = _curl(url, "Accept-Encoding: gzip;q=0")
    assert full["status"] == front["status"] == "200"
    assert "content-encoding" not in full and "content-encoding" not in front
    assert full["etag"] == front["etag"] and full["etag"].endswith('-identity"') and body_full == body_front
    gz, gz_body = _curl(url, "Accept-Encoding: gzip")
    assert gz["content-encoding"] == "gzip" and gzip.decompress(gz_body) == body_full
    plain, _ = _curl(url, "Accept-Encoding: identity", f"If-None-Match: {gz['etag']}")
    assert plain["status"] == "200"
    again, _ = _curl(url, "Accept-Encoding: gzip", f"If-None-Match: {gz['etag']}")
    assert again["status"] == "304"
