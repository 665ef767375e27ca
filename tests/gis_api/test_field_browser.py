"""The field page (/field) in a real headless Chromium sized like a phone (360×800, zh-CN),
opened at the bare URL as a grid worker opens it: first render with nothing failing, search by a
Chinese name from the sample town, a tapped point → its grid and the nearest devices and cameras,
and a logged-in field user reporting an event that then appears in /collections/events/items.

The server runs as shipped (anonymous callers are ``public``, who may read events but not write
them); the field user logs in through the page's own form. The first render under a "Fast 3G"-like
network profile is measured and printed (no assertion on time: see docs/benchmarks.md): first
render = the page's own UI usable (MapLibre is requested only after it), then the map drawn.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import shapely

CHROMIUM = os.environ.get("TWIN_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
PHONE = {"width": 360, "height": 800}
FIELD_USER, FIELD_PASS = "field-worker-07", "Field-Worker-2026"
# Chrome DevTools' "Fast 3G" preset: 562.5 ms round trip, 1.6 Mbit/s down, 750 kbit/s up (×0.9)
FAST_3G = {"offline": False, "latency": 562.5, "downloadThroughput": 1.6 * 1024 * 1024 / 8 * 0.9,
           "uploadThroughput": 750 * 1024 / 8 * 0.9}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def field_url(town_store, town_settings, serve_app):
    """The app as shipped (anonymous = public) over the sample town, with one field-role user."""
    from gis_api.app import create_app
    from twin.security.accounts import Accounts
    from twin.settings import TwinSettings

    settings = TwinSettings(**{**town_settings.model_dump(), "anonymous_role": "public", "secret_key": "f" * 40})
    try:
        Accounts(town_store, settings).create_user(FIELD_USER, FIELD_PASS, ["field"])
    except Exception:  # noqa: BLE001 - exists from an earlier module run over the same store
        pass
    with serve_app(create_app(settings, store=town_store)) as url:
        yield url


def _shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TWIN_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def wait_for(page, expression: str, timeout_s: float = 60.0) -> None:
    """Poll with ``page.evaluate`` (``wait_for_function`` uses eval, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expression}")
        time.sleep(0.1)


class Phone:
    """/field opened on a 360×800 zh-CN phone, every console error, failed request and 4xx/5xx kept."""

    def __init__(self, browser, url: str, network: dict | None = None, *, locale: str = "zh-CN", **context):
        self.context = browser.new_context(locale=locale, viewport=PHONE, device_scale_factor=2,
                                           is_mobile=True, has_touch=True, **context)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        # a tile request the map cancels itself when the view moves on (net::ERR_ABORTED) is no failure
        self.page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                     and self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.urls: list[str] = []
        self.page.on("request", lambda r: self.urls.append(r.url))
        if network:
            cdp = self.context.new_cdp_session(self.page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", network)
        self.page.goto(url + "/field")
        wait_for(self.page, "window.twinField !== undefined", 60)
        #: ms from navigation start to the first render: the page's own UI drawn, translated and
        #: wired (search, "where am I", log-in); the map library is only requested after it
        self.first_render_ms = self.page.evaluate("window.twinField.ready")
        #: ms from navigation start to the map's first view drawn (idle) with the account known
        #: what a worker sees at that moment: the search box and "where am I", in Chinese
        self.ui_at_first_render = self.page.evaluate(
            "window.twinField.ready.then(() => ({search: document.getElementById('q').offsetHeight > 0,"
            " where: document.getElementById('locate-me').textContent}))")
        self.map_ms = self.page.evaluate("window.twinField.mapReady")
        wait_for(self.page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)

    def close(self) -> None:
        self.context.close()


def _camera_jpeg(w: int, h: int) -> bytes:
    """A photo as a phone camera writes it: a JPEG with EXIF (maker, GPS position)."""
    import io

    from PIL import Image

    img = Image.new("RGB", (w, h), (90, 140, 60))
    img.paste((230, 230, 230), (w // 3, h // 3, w // 2, h // 2))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (31.0, 42.0, 0.0), 3: "E", 4: (120.0, 54.0, 0.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def _a_house(town_store) -> str:
    """A house's Chinese name from the sample town (e.g. 和美家园12幢)."""
    from twin.store import FeatureQuery

    page = town_store.query(FeatureQuery("buildings", filters={"use": "residential"}, limit=50))
    for props in page.properties:
        name = props.get("name") or ""
        if any("\u4e00" <= ch <= "\u9fff" for ch in name):
            return name
    raise AssertionError("the sample town has no residential building with a Chinese name")


def _a_unit_grid_name(town_store) -> str:
    from twin.store import FeatureQuery

    return town_store.query(FeatureQuery("grids", filters={"level": "unit"}, limit=1)).properties[0]["name"]


def test_first_render_on_a_phone_in_chinese_with_nothing_failing(browser, field_url, tmp_path):
    v = Phone(browser, field_url)
    try:
        v.page.screenshot(path=str(_shots(tmp_path) / "field-first-view.png"), full_page=True)
        assert v.problems == [], v.problems
        assert v.page.evaluate("window.twinField.errors") == []
        assert v.page.evaluate("document.documentElement.lang") == "zh-CN"
        text = v.page.inner_text("body")
        assert "网格巡查" in text and "搜索" in text and "我在哪" in text and "上报事件" in text, text
        assert "访客" in v.page.text_content("#who")
        # a guest may not report: the form waits for a log-in
        assert v.page.is_hidden("#report-form") and "登录" in v.page.text_content("#report-need")
        # the page fits the phone: no sideways scrolling, and the map is drawn
        assert v.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        drawn = set(v.page.evaluate(
            "[...new Set(window.twinMap.queryRenderedFeatures().map(f => f.sourceLayer).filter(Boolean))]"))
        assert "grids" in drawn, drawn
        png = v.page.locator("#map canvas").screenshot()
        assert len(set(png[1000:20000])) > 50, "blank map"
        # the orthophoto waits for a tap (mobile data); the tap fetches it and changes the picture
        assert not [u for u in v.urls if "/raster/" in u]
        v.page.check("#ortho")
        wait_for(v.page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)
        assert [u for u in v.urls if "/raster/ortho/" in u]
        assert v.page.locator("#map canvas").screenshot() != png
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_search_finds_a_house_by_its_chinese_name(browser, field_url, town_store, tmp_path):
    name = _a_house(town_store)
    typed = name[:-1]  # a worker types part of it: 和美家园12 finds 和美家园12幢
    grid = _a_unit_grid_name(town_store)
    v = Phone(browser, field_url)
    try:
        v.page.fill("#q", typed)
        v.page.click("#search-form button[type=submit]")
        v.page.wait_for_selector("#results li[data-layer]", timeout=15_000)
        hits = v.page.locator("#results li[data-layer=buildings]")
        assert hits.count() >= 1
        assert name in hits.first.inner_text()
        assert "房屋" in hits.first.inner_text()
        # a grid by its Chinese name
        v.page.fill("#q", grid)
        v.page.click("#search-form button[type=submit]")
        wait_for(v.page, "document.querySelector('#results li[data-layer=grids]') !== null", 15)
        assert grid in v.page.locator("#results li[data-layer=grids]").first.inner_text()
        v.page.fill("#q", typed)
        v.page.click("#search-form button[type=submit]")
        v.page.wait_for_selector("#results li[data-layer=buildings]", timeout=15_000)
        v.page.screenshot(path=str(_shots(tmp_path) / "field-search.png"))
        # tapping the hit makes it "here": its grid is shown
        v.page.locator("#results li[data-layer=buildings]").first.click()
        wait_for(v.page, "(window.twinField.located || 0) >= 1", 15)
        assert v.page.is_visible("#grid dd[data-level=unit]")
        assert v.problems == [], v.problems
    finally:
        v.close()


def _device_in_a_unit_grid(town_store):
    from twin.store import FeatureQuery

    units = town_store.query(FeatureQuery("grids", filters={"level": "unit"}, limit=10_000))
    devs = town_store.query(FeatureQuery("devices", limit=200))
    for geom, props in zip(devs.geometries, devs.properties, strict=True):
        p = shapely.Point(geom.x, geom.y) if geom.geom_type == "Point" else geom.representative_point()
        if any(g.contains(p) for g in units.geometries):
            return p, props
    raise AssertionError("no device inside a unit grid")


def test_a_tapped_point_shows_its_grid_and_the_nearest_devices_and_cameras(browser, field_url, town_store, tmp_path):
    from twin.store import FeatureQuery

    point, device = _device_in_a_unit_grid(town_store)
    v = Phone(browser, field_url)
    try:
        # the worker zooms in on the device and taps the map where it stands
        v.page.evaluate(f"window.twinMap.jumpTo({{center: [{point.x}, {point.y}], zoom: 19}})")
        wait_for(v.page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)
        box = v.page.locator("#map").bounding_box()
        xy = v.page.evaluate(f"window.twinMap.project([{point.x}, {point.y}])")
        v.page.mouse.click(box["x"] + xy["x"], box["y"] + xy["y"])
        wait_for(v.page, "(window.twinField.located || 0) >= 1", 20)
        lon, lat = v.page.evaluate("window.twinField.here")
        assert abs(lon - point.x) < 1e-4 and abs(lat - point.y) < 1e-4
        # the grid shown is the unit grid that contains the tapped point
        units = town_store.query(FeatureQuery("grids", filters={"level": "unit"}, limit=10_000))
        tapped = shapely.Point(lon, lat)
        expected = [p["name"] for g, p in zip(units.geometries, units.properties, strict=True) if g.contains(tapped)]
        assert expected, "tapped outside every unit grid"
        unit_text = v.page.text_content("#grid dd[data-level=unit]")
        assert expected[0] in unit_text, (expected, unit_text)
        assert "单元网格" in v.page.text_content("#grid")
        # the device under the finger is the nearest, a few metres away; five devices, nearest first
        devices = v.page.locator("#near-devices li")
        assert devices.count() == 5
        first = devices.first.inner_text()
        assert (device.get("name") or device.get("code")) in first, first
        assert "米" in first
        cameras = v.page.locator("#near-cameras li")
        assert cameras.count() >= 1 and "米" in cameras.first.inner_text()
        v.page.screenshot(path=str(_shots(tmp_path) / "field-where-am-i.png"), full_page=True)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_where_am_i_from_the_phones_position(browser, field_url, town_store):
    point, device = _device_in_a_unit_grid(town_store)
    v = Phone(browser, field_url, geolocation={"longitude": point.x, "latitude": point.y, "accuracy": 5},
              permissions=["geolocation"])
    try:
        v.page.click("#locate-me")
        wait_for(v.page, "(window.twinField.located || 0) >= 1", 20)
        lon, lat = v.page.evaluate("window.twinField.here")
        assert abs(lon - point.x) < 1e-9 and abs(lat - point.y) < 1e-9
        assert v.page.is_visible("#grid dd[data-level=unit]")
        assert (device.get("name") or device.get("code")) in v.page.locator("#near-devices li").first.inner_text()
        # the map follows: the pin is in view
        wait_for(v.page, "!window.twinMap.isMoving()", 20)
        west, south, east, north = v.page.evaluate("window.twinMap.getBounds().toArray().flat()")
        assert west < point.x < east and south < point.y < north
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_english_on_an_english_phone_and_the_switch_back_to_chinese(browser, field_url):
    v = Phone(browser, field_url, locale="en-US")
    try:
        assert v.page.evaluate("document.documentElement.lang") == "en"
        text = v.page.inner_text("body")
        assert "Search" in text and "Where am I" in text and "Report an event" in text, text
        assert v.page.locator("#category option[value=garbage]").inner_text() == "Garbage dumped"
        v.page.click("#lang")
        v.page.wait_for_load_state("load")
        wait_for(v.page, "window.twinField !== undefined && document.documentElement.lang === 'zh-CN'", 30)
        assert "上报事件" in v.page.inner_text("body")
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_a_logged_in_field_worker_reports_an_event_that_the_events_layer_then_holds(
        browser, field_url, town_store, tmp_path):
    from sqlalchemy import delete

    from layers.event_photos import photos_table
    from twin.schema import Event

    point, _ = _device_in_a_unit_grid(town_store)
    v = Phone(browser, field_url)
    event_id = None
    try:
        v.page.click("#login-open")
        v.page.fill("#login-user", FIELD_USER)
        v.page.fill("#login-pass", "wrong-Password-1")
        v.page.click("#login-form button[type=submit]")
        v.page.wait_for_selector("#login-error:not(:empty)", timeout=10_000)
        assert "错误" in v.page.text_content("#login-error")
        v.page.fill("#login-pass", FIELD_PASS)
        v.page.click("#login-form button[type=submit]")
        wait_for(v.page, f"document.querySelector('#who').textContent === '{FIELD_USER}'", 15)
        # logged in but no place yet: the form is there, and it asks for a place
        assert v.page.is_visible("#report-form")
        v.page.evaluate(f"window.twinMap.jumpTo({{center: [{point.x}, {point.y}], zoom: 18}})")
        wait_for(v.page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)
        box = v.page.locator("#map").bounding_box()
        v.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        wait_for(v.page, "(window.twinField.located || 0) >= 1", 20)
        lon, lat = v.page.evaluate("window.twinField.here")
        v.page.select_option("#category", "garbage")
        assert v.page.input_value("#event-title") == "垃圾堆放"
        v.page.fill("#description", "村口垃圾桶满溢，现场拍照确认")
        # the phone camera's picture (a 3000×2000 JPEG, as the file input hands it over)
        v.page.set_input_files("#photo", files=[{"name": "IMG_2041.jpg", "mimeType": "image/jpeg",
                                                 "buffer": _camera_jpeg(3000, 2000)}])
        v.page.click("#report-form button[type=submit]")
        v.page.wait_for_selector("#report-result.ok, #report-result.bad", timeout=15_000)
        wait_for(v.page, "document.querySelector('#report-result').dataset.photoId !== undefined"
                 " || document.querySelector('#report-result').textContent.includes('照片上传失败')", 30)
        assert "已上报" in v.page.text_content("#report-result"), v.page.text_content("#report-result")
        assert "含照片" in v.page.text_content("#report-result"), v.page.text_content("#report-result")
        wait_for(v.page, "document.querySelector('#report-photo').naturalWidth > 0", 15)
        event_id = int(v.page.get_attribute("#report-result", "data-event-id"))
        code = v.page.get_attribute("#report-result", "data-event-code")
        assert code and code in v.page.text_content("#report-result")
        v.page.screenshot(path=str(_shots(tmp_path) / "field-reported.png"), full_page=True)
        # the events layer holds it, where it was tapped, from this worker, in the grid it lies in
        r = httpx.get(field_url + "/collections/events/items",
                      params={"filter": f"code='{code}'", "limit": 5}, timeout=30)
        assert r.status_code == 200, r.text
        feats = r.json()["features"]
        assert [f["id"] for f in feats] == [event_id]
        props = feats[0]["properties"]
        assert props["category"] == "garbage" and props["title"] == "垃圾堆放" and props["status"] == "reported"
        assert props["source"] == "grid" and props["description"] == "村口垃圾桶满溢，现场拍照确认"
        x, y = feats[0]["geometry"]["coordinates"][:2]
        assert abs(x - lon) < 1e-6 and abs(y - lat) < 1e-6
        hist = httpx.get(f"{field_url}/events/{event_id}/history", timeout=30).json()
        assert hist["history"][0]["by"] == FIELD_USER
        # the photo is stored with the event, scaled to 2048 px on the phone, and served back
        photos = httpx.get(f"{field_url}/events/{event_id}/photos", timeout=30).json()["photos"]
        assert len(photos) == 1 and photos[0]["created_by"] == FIELD_USER
        assert (photos[0]["width"], photos[0]["height"]) == (2048, 1365)
        assert v.page.evaluate("document.querySelector('#report-photo').naturalWidth") == 2048
        jpeg = httpx.get(photos[0]["url"], timeout=30)
        assert jpeg.status_code == 200 and jpeg.content[:3] == b"\xff\xd8\xff"
        assert v.problems == [] or all("401" in p for p in v.problems), v.problems
    finally:
        v.close()
        if event_id is not None:
            with town_store.engine.begin() as conn:
                conn.execute(delete(photos_table).where(photos_table.c.event_id == event_id))
                conn.execute(delete(Event.__table__).where(Event.__table__.c.id == event_id))


def test_first_render_time_on_a_throttled_mobile_network(browser, field_url, tmp_path):
    """Printed for docs/benchmarks.md, not asserted (the machine is shared; the lead measures)."""
    v = Phone(browser, field_url, network=FAST_3G)
    try:
        paint = v.page.evaluate("window.twinField.firstPaintMs")
        print(f"\n/field at Fast 3G (562.5 ms RTT, 1.44 Mbit/s): first paint {paint:.0f} ms, "
              f"first render (search, where-am-I, log-in usable) {v.first_render_ms:.0f} ms, "
              f"map drawn {v.map_ms:.0f} ms")
        # the first render is the page's own UI, not a blank page waiting for the map library
        assert v.first_render_ms < v.map_ms
        assert v.ui_at_first_render == {"search": True, "where": "我在哪"}, v.ui_at_first_render
        maplibre = [u for u in v.urls if "maplibre-gl.js" in u]
        assert len(maplibre) == 1, maplibre
        v.page.screenshot(path=str(_shots(tmp_path) / "field-fast3g.png"))
        assert v.problems == [], v.problems
    finally:
        v.close()
