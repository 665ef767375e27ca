"""Label glyphs served by the twin itself: the MapLibre glyphs protobuf, CJK included."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiles.glyphs import (
    GlyphCache,
    GlyphRangeError,
    glyph_range,
    label_glyphs,
    parse_range,
    ranges_for,
    vertical_forms,
)


def _fields(buf: bytes):
    """Decode one protobuf message level into (field number, value) pairs."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
            yield num, val
        elif wire == 2:
            n, i = _varint(buf, i)
            yield num, buf[i:i + n]
            i += n
        else:  # pragma: no cover - the format uses only varints and bytes
            raise AssertionError(f"unexpected wire type {wire}")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _glyphs(pbf: bytes) -> dict[int, dict]:
    (num, stack), = list(_fields(pbf))
    assert num == 1
    out = {}
    for n, v in _fields(stack):
        if n == 3:
            g = {}
            for fn, fv in _fields(v):
                g[fn] = fv
            unzig = lambda z: (z >> 1) ^ -(z & 1)  # noqa: E731
            out[g[1]] = {"bitmap": g.get(2, b""), "width": g[3], "height": g[4], "left": unzig(g[5]),
                         "top": unzig(g[6]), "advance": g[7]}
    return out


def test_latin_and_chinese_ranges_hold_sdf_glyphs():
    latin = _glyphs(glyph_range(0, 255))
    a = latin[ord("A")]
    assert 10 <= a["width"] <= 24 and 10 <= a["height"] <= 24 and a["advance"] > 10
    assert len(a["bitmap"]) == (a["width"] + 6) * (a["height"] + 6)  # 3 px buffer on each side
    assert max(a["bitmap"]) > 192 > min(a["bitmap"])  # inside above the edge value, outside below
    assert latin[ord(" ")]["bitmap"] == b"" and latin[ord(" ")]["advance"] > 0
    cp = ord("江")
    start = cp // 256 * 256
    cjk = _glyphs(glyph_range(start, start + 255))
    g = cjk[cp]
    assert g["width"] >= 18 and g["height"] >= 18 and g["advance"] >= 22  # a full-width ideograph
    assert g["top"] < 0  # measured from the ascender, as MapLibre expects


def test_glyph_endpoint(town_client):
    r = town_client.get("/fonts/Twin Sans/0-255.pbf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    assert ord("A") in _glyphs(r.content)
    # a browser keeps a range for a year and asks again only with its ETag
    assert "immutable" in r.headers["cache-control"] and "max-age=31536000" in r.headers["cache-control"]
    again = town_client.get("/fonts/Twin Sans/0-255.pbf", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for bad in ("0-254", "1-256", "65536-65791", "a-b", "²-255", "0-255-511", "-1-254"):
        r = town_client.get(f"/fonts/Twin Sans/{bad}.pbf")
        assert r.status_code == 400, bad
        assert r.json()["code"] and "range" in r.json()["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=0, max_size=20))
def test_any_range_text_is_parsed_or_refused(text):
    try:
        start, end = parse_range(text)
    except GlyphRangeError:
        return
    assert start % 256 == 0 and end == start + 255 <= 0xFFFF


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#%"), min_size=1,
               max_size=12))
def test_glyph_route_never_fails_on_user_text(town_client, text):
    r = town_client.get(f"/fonts/Twin Sans/{text}.pbf")
    assert r.status_code in (200, 400, 404), (text, r.status_code)


def test_ranges_render_once_and_are_kept_on_disk(tmp_path, monkeypatch):
    import tiles.glyphs as glyphs

    cache = GlyphCache(tmp_path)
    cp = ord("镇")
    start = cp // 256 * 256
    body = cache.get(start, start + 255)
    kept = cache.path(start, start + 255)
    assert kept.is_file() and kept.read_bytes() == body and cp in _glyphs(body)
    assert not list(kept.parent.glob("*.tmp"))  # written under a temporary name, then renamed
    # a second server (an empty memory cache) answers from the disk, without rendering
    glyphs.glyph_range.cache_clear()
    monkeypatch.setattr(glyphs, "glyph_range", lambda *a: pytest.fail("rendered again"))
    assert GlyphCache(tmp_path).get(start, start + 255) == body
    # a new renderer (or font) is a new key: the old files are not served for it
    monkeypatch.setattr(glyphs, "RENDERER_VERSION", glyphs.RENDERER_VERSION + 1)
    assert cache.path(start, start + 255) != kept


def test_an_unwritable_cache_still_serves(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert ord("A") in _glyphs(GlyphCache(blocker).get(0, 255))


@given(st.text(max_size=40))
def test_ranges_for_any_text_cover_each_character(text):
    ranges = ranges_for(text)
    assert len(ranges) == len(set(ranges))
    for ch in text:
        if ord(ch) <= 0xFFFF:
            assert any(s <= ord(ch) <= e for s, e in ranges)
    for s, e in ranges:
        assert parse_range(f"{s}-{e}") == (s, e)


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_server_start_renders_the_town_label_ranges_in_the_background(town_store, town_settings, tmp_path):
    """A fresh TWIN_HOME: by the time the warm-up ends, every range the village and road names
    use is on disk, and a request for one is answered from there."""
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings
    from twin.store import FeatureQuery

    settings = TwinSettings(**{**town_settings.model_dump(), "home": tmp_path})
    # what the style labels: village grids only (grids-label's filter), and road names along lines
    grids = town_store.query(FeatureQuery("grids", limit=10000, properties=["name", "level"])).properties
    villages = [p["name"] for p in grids if p["level"] == "village"]
    roads = [p["name"] for p in town_store.query(FeatureQuery("roads", limit=10000, properties=["name"])).properties
             if p.get("name")]
    names = villages + roads + [vertical_forms(r) for r in roads] + ["0123456789 -.()"]
    assert any("\u4e00" <= ch <= "\u9fff" for n in villages for ch in n)
    with TestClient(create_app(settings, store=town_store)) as client:
        client.app.state.glyph_prewarm.join(timeout=300)
        assert not client.app.state.glyph_prewarm.is_alive()
        cache = client.app.state.glyph_cache
        for start, end in ranges_for(names):
            assert cache.path(start, end).is_file(), (start, end)
            r = client.get(f"/fonts/Twin Sans/{start}-{end}.pbf")
            assert r.status_code == 200 and r.content == cache.path(start, end).read_bytes()
        # the style names those ranges, so the viewer fetches them along with the tiles
        # and exactly those: none only the unit and town grids' names use (never drawn), every one
        # MapLibre asks for (the vertical forms of a road name's punctuation among them)
        listed = client.get("/styles/twin.json").json()["metadata"]["twin:glyph-ranges"]
        assert {f"{s}-{e}" for s, e in ranges_for(names)} == set(listed)


def test_a_label_along_a_line_needs_the_vertical_forms_of_its_punctuation():
    """MapLibre asks for the upright (vertical) form of each punctuation mark of a CJK label
    drawn along a line; a Latin one is never written vertically."""
    assert vertical_forms("东一路（北段）") == "︵︶"
    assert vertical_forms("幸福村-3组") == "︲"
    assert vertical_forms("Main St (N)") == "" and vertical_forms("和平路") == ""
    assert (65024, 65279) in ranges_for(["幸福村-3组", vertical_forms("幸福村-3组")])


def test_glyph_ranges_go_gzipped_from_disk_each_coding_with_its_etag(town_client, monkeypatch):
    """Browsers ask with Accept-Encoding: gzip; the range is compressed once (kept next to it on
    disk) and never again per request; identity clients get the plain bytes, under another ETag."""
    import tiles.glyphs as glyphs

    path = "/fonts/Twin Sans/19968-20223.pbf"
    gz = town_client.get(path, headers={"Accept-Encoding": "gzip"})
    plain = town_client.get(path, headers={"Accept-Encoding": "identity"})
    assert gz.status_code == plain.status_code == 200
    assert gz.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert gz.content == plain.content and ord("一") in _glyphs(plain.content)  # httpx decodes the gzip body
    assert "accept-encoding" in gz.headers["vary"].lower()
    assert gz.headers["etag"] != plain.headers["etag"]
    # the gzip form was written once; later requests read it and compress nothing
    monkeypatch.setattr(glyphs, "gzip_bytes", lambda raw: pytest.fail("compressed again"))
    again = town_client.get(path, headers={"Accept-Encoding": "gzip"})
    assert again.headers["content-encoding"] == "gzip" and again.content == plain.content
    # each coding's ETag revalidates only its own body
    hit = town_client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": gz.headers["etag"]})
    miss = town_client.get(path, headers={"Accept-Encoding": "identity", "If-None-Match": gz.headers["etag"]})
    assert hit.status_code == 304 and miss.status_code == 200 and miss.content == plain.content


def test_a_label_subset_holds_exactly_the_label_characters_of_its_range():
    """A range rendered for a label set holds each of its characters in that range, drawn as in
    the full range, and nothing else; another set of characters is another key."""
    labels = label_glyphs(["和平村", "幸福村-3组", "Main St"])
    start = ord("和") & ~0xFF
    assert (start, start + 255) in labels.ranges and (0, 255) in labels.ranges
    subset = _glyphs(glyph_range(start, start + 255, codes=labels.in_range(start, start + 255)))
    assert set(subset) == {ord(c) for c in "和平村幸福组" if ord(c) & ~0xFF == start}
    full = _glyphs(glyph_range(start, start + 255))
    assert len(full) > 200 and all(full[c] == g for c, g in subset.items())
    latin = _glyphs(glyph_range(0, 255, codes=labels.in_range(0, 255)))
    assert set(latin) == {ord(c) for c in "-3Main St"}
    assert label_glyphs(["和平村"]).key != label_glyphs(["和平村", "龘"]).key
    assert label_glyphs(["村平和"]).key == label_glyphs(["和平", "村"]).key  # the set, not the order


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_style_names_label_subsets_and_a_label_added_later_gets_a_new_key(empty_store, tmp_path):
    """The style's glyph URL names the current label set; its ranges hold the labels' characters.
    A village added later with a character no label had before changes the key, and the new
    key's range holds it; the old key gets the full range (a page that still holds it loses no
    glyph), and /fonts/labels.json says the new glyph URL for pages open since before."""
    import time

    from fastapi.testclient import TestClient
    from shapely.geometry import MultiPolygon, box

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    def village(code: str, name: str, x: float) -> dict:
        return {"code": code, "name": name, "level": "village", "parent_code": None,
                "geom": MultiPolygon([box(x, 30.0, x + 0.01, 30.01)])}

    empty_store.write_features("grids", [village("V1", "和平村", 120.0)])
    settings = TwinSettings(home=tmp_path, database_url=empty_store.engine.url.render_as_string(hide_password=False))
    with TestClient(create_app(settings, store=empty_store)) as client:
        client.app.state.glyph_prewarm.join(timeout=300)
        style = client.get("/styles/twin.json").json()
        glyphs = style["glyphs"]
        assert "?labels=" in glyphs
        key = glyphs.rsplit("=", 1)[1]
        he = ord("和") & ~0xFF
        url = glyphs.replace("http://testserver", "").replace("{fontstack}", "Twin Sans")
        sub = client.get(url.replace("{range}", f"{he}-{he + 255}"))
        assert sub.status_code == 200 and ord("和") in _glyphs(sub.content)
        assert set(_glyphs(sub.content)) <= {ord(c) for c in "和平村0123456789 -.()"}
        assert sub.headers["cache-control"].endswith("immutable")
        # a range no label uses is empty in the subset, and the full range without a key
        long_ = ord("龘") & ~0xFF
        assert _glyphs(client.get(url.replace("{range}", f"{long_}-{long_ + 255}")).content) == {}
        assert ord("龘") in _glyphs(client.get(f"/fonts/Twin Sans/{long_}-{long_ + 255}.pbf").content)
        assert client.get("/fonts/labels.json").json()["key"] == key

        empty_store.write_features("grids", [village("V2", "龘村", 120.02)])
        deadline = time.monotonic() + 10  # the tile versions are re-read at most every second
        while (now := client.get("/fonts/labels.json").json())["key"] == key:
            assert time.monotonic() < deadline, "the label key did not change after a new village"
            time.sleep(0.2)
        assert now["glyphs"] == client.get("/styles/twin.json").json()["glyphs"] != glyphs
        new_url = now["glyphs"].replace("http://testserver", "").replace("{fontstack}", "Twin Sans")
        added = _glyphs(client.get(new_url.replace("{range}", f"{long_}-{long_ + 255}")).content)
        assert ord("龘") in added and len(added) < 5
        stale = _glyphs(client.get(url.replace("{range}", f"{long_}-{long_ + 255}")).content)
        assert ord("龘") in stale and len(stale) > 150  # the old key: the full range (196 in the font)
        # a key that is no key at all is a 400 with a JSON error
        bad = client.get("/fonts/Twin Sans/0-255.pbf", params={"labels": "../x"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"
