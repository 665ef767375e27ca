"""Analysis from the map, in a real headless Chromium at the bare URL: the user picks a tool in the
panel's analysis toolbar and draws on the map with the mouse (a cut line, a circle, a polygon) or
clicks a pipe; the answer shows on the page, and it is the service's own answer to the request the
page sent (asked again here over HTTP and compared). A guest is asked to log in.
"""

from __future__ import annotations

import math

import httpx
import pytest
import test_viewer_browser as vb
from test_viewer_browser import Visit, _shots, wait_for

browser, public_url = vb.browser, vb.public_url  # the viewer tests' fixtures, shared

pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)


def _pipe(url: str, utility: str) -> dict:
    """A long pipe of a utility (its middle is easy to hit with the mouse)."""
    r = httpx.get(f"{url}/collections/pipelines/items", params={"utility": utility, "limit": 200}, timeout=30)
    feats = [f for f in r.json()["features"] if f["geometry"]["type"] == "LineString"]
    assert feats, f"no {utility} pipe in the sample town"

    def length(f: dict) -> float:
        c = f["geometry"]["coordinates"]
        return sum(math.dist(a, b) for a, b in zip(c, c[1:], strict=False))

    return max(feats, key=length)


def _middle(f: dict) -> tuple[list[float], list[float]]:
    """The middle point of a pipe's middle segment, and that segment's direction (lon/lat)."""
    c = f["geometry"]["coordinates"]
    i = (len(c) - 1) // 2
    a, b = c[i], c[i + 1]
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2], [b[0] - a[0], b[1] - a[1]]


def _screen(v: Visit, lon: float, lat: float) -> tuple[float, float]:
    return tuple(v.eval(f"(() => {{ const p = window.twinMap.project([{lon}, {lat}]); return [p.x, p.y]; }})()"))


def _go(v: Visit, lon: float, lat: float, zoom: float) -> None:
    v.eval(f"window.twinMap.jumpTo({{center: [{lon}, {lat}], zoom: {zoom}}})")
    v.settle()


def _spot_on_pipe(v: Visit, pipe: dict, zoom: float = 17.5, pressure: bool = False) -> tuple[float, float]:
    """A point of the pipe where the map draws it on top of any other pipe (of any pressure pipe with
    ``pressure``: the burst tool picks those first), where a user would click it: the middles of its
    segments, tried from the middle of the pipe outwards."""
    c = pipe["geometry"]["coordinates"]
    mids = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in zip(c, c[1:], strict=False)]
    mids = [m for _, m in sorted(enumerate(mids), key=lambda im: abs(im[0] - len(mids) / 2))]
    code = pipe["properties"]["code"]
    for lon, lat in mids:
        _go(v, lon, lat, zoom)
        x, y = _screen(v, lon, lat)
        wanted = "!['rain', 'stormwater', 'sewage', 'combined'].includes(f.properties.utility)" if pressure else "true"
        top = v.eval(f"window.twinMap.queryRenderedFeatures([[{x} - 4, {y} - 4], [{x} + 4, {y} + 4]])"
                     f".find(f => f.sourceLayer === 'pipelines' && {wanted})?.properties.code")
        if top == code:
            return lon, lat
    pytest.fail(f"pipe {code} is nowhere drawn on top")


def _tool(v: Visit, tool: str) -> None:
    v.page.click(f'#analysis-tools button[data-tool="{tool}"]')
    assert v.eval("window.twinAnalysis.tool") == tool


def _click(v: Visit, lon: float, lat: float) -> None:
    x, y = _screen(v, lon, lat)
    v.page.mouse.click(x, y)


def _last(v: Visit) -> dict:
    return v.eval("window.twinAnalysis.last")


def _post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def test_cut_line_shows_the_cross_section_drawing(browser, live_url, tmp_path):
    pipe = _pipe(live_url, "water_supply")
    (lon, lat), (dx, dy) = _middle(pipe)
    n = math.hypot(dx, dy)
    px, py = -dy / n * 0.00015, dx / n * 0.00015  # ~15 m square to the pipe, each side
    v = Visit(browser, live_url + "/")
    try:
        _go(v, lon, lat, 18)
        _tool(v, "section")
        _click(v, lon - px, lat - py)
        _click(v, lon + px, lat + py)
        wait_for(v.page, "document.querySelector('#section-img')?.complete && "
                 "document.querySelector('#section-img').naturalWidth > 0", 30)
        last = _last(v)
        assert last["tool"] == "section" and last["status"] == 200
        api = _post(live_url, "/analysis/cross-section?format=svg", last["request"])
        assert api.status_code == 200 and api.headers["content-type"].startswith("image/svg+xml")
        assert last["response"] == api.text  # the picture on the page is the service's drawing
        crossed = _post(live_url, "/analysis/cross-section", last["request"]).json()["crossings"]
        assert pipe["properties"]["code"] in {c["code"] for c in crossed}, crossed
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-section.jpg"), type="jpeg", quality=80)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_click_a_pipe_shows_flow_and_its_trace(browser, live_url, tmp_path):
    pipe = _pipe(live_url, "sewage")
    v = Visit(browser, live_url + "/")
    try:
        lon, lat = _spot_on_pipe(v, pipe)
        _tool(v, "trace")
        _click(v, lon, lat)
        wait_for(v.page, "window.twinAnalysis.last?.tool === 'trace' && window.twinAnalysis.last.response?.upstream", 30)
        last = _last(v)
        assert last["request"].get("feature", {}).get("code") == pipe["properties"]["code"], last["request"]
        for direction in ("downstream", "upstream"):
            api = _post(live_url, "/analysis/trace", {**last["request"], "direction": direction}).json()
            assert last["response"][direction] == api
        down, up = last["response"]["downstream"], last["response"]["upstream"]
        assert down["pipe_count"] + up["pipe_count"] >= 1
        # on the map: the traced pipes drawn in the two colours, and the flow arrows
        wait_for(v.page, "window.twinMap.queryRenderedFeatures({layers: ['analysis-lines']}).length > 0", 20)
        drawn = v.eval("window.twinAnalysis.drawn")
        assert drawn.count("downstream") == len([f for f in down["pipes"]["features"] if f["geometry"]])
        assert drawn.count("upstream") == len([f for f in up["pipes"]["features"] if f["geometry"]])
        assert last["arrows"] > 0 and drawn.count("arrow") == last["arrows"]
        # the whole trace is in view (the map zooms out to a trace longer than the screen)
        xs = [c[0] for r in (down, up) for f in r["pipes"]["features"] if f["geometry"] for c in f["geometry"]["coordinates"]]
        ys = [c[1] for r in (down, up) for f in r["pipes"]["features"] if f["geometry"] for c in f["geometry"]["coordinates"]]
        wait_for(v.page, f"(() => {{ const b = window.twinMap.getBounds(); return b.contains([{min(xs)}, {min(ys)}]) "
                 f"&& b.contains([{max(xs)}, {max(ys)}]); }})()", 10)
        text = v.page.inner_text("#analysis-result")
        assert "下游" in text and "上游" in text and pipe["properties"]["code"] in text
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-trace.jpg"), type="jpeg", quality=80)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_click_a_burst_shows_valves_to_close_and_buildings_cut_off(browser, live_url, tmp_path):
    pipe = _pipe(live_url, "water_supply")
    v = Visit(browser, live_url + "/")
    try:
        lon, lat = _spot_on_pipe(v, pipe, pressure=True)
        _tool(v, "burst")
        _click(v, lon, lat)
        wait_for(v.page, "window.twinAnalysis.last?.tool === 'burst'", 30)
        last = _last(v)
        assert last["status"] == 200, last
        assert last["request"]["feature"]["code"] == pipe["properties"]["code"]
        v.page.wait_for_selector("#burst-summary", timeout=10_000)
        api = _post(live_url, "/analysis/valve-isolation", last["request"]).json()
        assert last["response"] == api
        valves = [r for r in v.eval("[...document.querySelectorAll('#valves-table td:first-child')].map(t => t.textContent)")]
        assert valves == [n["code"] for n in api["valves_to_close"]] and valves
        summary = v.page.inner_text("#burst-summary")
        assert f"需关闭阀门 {len(api['valves_to_close'])} 个" in summary
        assert f"受影响建筑 {api['buildings_affected']['count']:,} 栋" in summary
        # the buildings cut off are highlighted on the map
        ids = sorted(f["id"] for f in api["buildings_affected"]["features"])
        assert sorted(v.eval("window.twinMap.getFilter('analysis-buildings')[2][1]")) == ids
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-burst.jpg"), type="jpeg", quality=80)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_draw_a_circle_buffer_lists_what_lies_inside(browser, live_url, town_store, tmp_path):
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
    v = Visit(browser, live_url + "/")
    try:
        _go(v, lon, lat, 17)
        _tool(v, "buffer")
        _click(v, lon, lat)
        v.page.mouse.move(*_screen(v, lon + 0.0007, lat))  # the circle follows the mouse
        _click(v, lon + 0.0007, lat)  # ~66 m east
        v.page.wait_for_selector("#buffer-counts", timeout=30_000)
        last = _last(v)
        assert 60 < last["request"]["distance"] < 72, last["request"]
        api = _post(live_url, "/analysis/buffer", last["request"]).json()
        assert last["response"] == api
        shown = dict(v.eval("[...document.querySelectorAll('#buffer-counts tr')].slice(1)"
                            ".map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
        assert shown["建筑"] == f"{api['counts']['buildings']:,}" and api["counts"]["buildings"] > 0
        drawn = v.eval("window.twinAnalysis.drawn")
        assert drawn.count("buffer") == 1 and drawn.count("hit") == len(api["features"]["features"])
        wait_for(v.page, "window.twinMap.queryRenderedFeatures({layers: ['analysis-fill']}).length > 0", 20)
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-buffer.jpg"), type="jpeg", quality=80)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_draw_a_polygon_planning_overlap_table(browser, live_url, tmp_path):
    farm = httpx.get(f"{live_url}/collections/farmland/items", params={"limit": 1, "is_permanent_basic": "true"},
                     timeout=30).json()["features"]
    assert farm, "no permanent basic farmland in the sample town"
    ring = farm[0]["geometry"]["coordinates"][0] if farm[0]["geometry"]["type"] == "Polygon" \
        else farm[0]["geometry"]["coordinates"][0][0]
    cx = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
    cy = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    d = 0.0004
    corners = [(cx - d, cy - d), (cx + d, cy - d), (cx + d, cy + d), (cx - d, cy + d)]
    v = Visit(browser, live_url + "/")
    try:
        _go(v, cx, cy, 17)
        _tool(v, "overlap")
        for x, y in corners:
            _click(v, x, y)
        v.page.click("#analysis-finish")
        v.page.wait_for_selector("#overlap-table", timeout=30_000)
        last = _last(v)
        assert len(last["request"]["geometry"]["coordinates"][0]) == 5
        api = _post(live_url, "/analysis/overlap", last["request"]).json()
        assert last["response"] == api
        rows = v.eval("[...document.querySelectorAll('#overlap-table tr')].map(r => [...r.cells].map(c => c.textContent))")
        assert rows[0] == ["项目", "m²", "亩"]
        assert rows[1][0] == "项目用地" and rows[1][2] == f"{api['area_mu']:,.2f}".rstrip("0").rstrip(".")
        pbf = next(r for r in rows if r[0] == "其中永久基本农田")
        assert api["farmland"]["permanent_basic"]["area_m2"] > 0 and pbf[1] != "0"
        verdict = v.page.inner_text("#overlap-verdict")
        assert ("冲突" in verdict and "无冲突" not in verdict) == api["verdict"]["conflict"]
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-overlap.jpg"), type="jpeg", quality=80)
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_dust_heat_toggle(browser, live_url, town_store, tmp_path):
    v = Visit(browser, live_url + "/")
    try:
        tiles: list[int] = []
        v.page.on("response", lambda r: "/raster/dust-heat/" in r.url and r.url.endswith(".png")
                  and tiles.append(r.status))
        v.page.check("#dust-toggle")
        v.page.wait_for_selector("#dust-monitors", timeout=30_000)
        v.settle()
        assert tiles and set(tiles) == {200}, tiles
        assert v.eval("window.twinMap.getLayoutProperty('dust-heat-layer', 'visibility')") == "visible"
        api = httpx.get(live_url + _last(v)["path"], timeout=60).json()
        assert f"扬尘监测点 {len(api['monitors'])} 个" in v.page.inner_text("#analysis-result")
        v.page.screenshot(path=str(_shots(tmp_path) / "viewer-analysis-dust.jpg"), type="jpeg", quality=80)
        v.page.uncheck("#dust-toggle")
        assert v.eval("window.twinMap.getLayoutProperty('dust-heat-layer', 'visibility')") == "none"
        assert v.problems == [], v.problems
    finally:
        v.close()


def test_a_guest_is_asked_to_log_in_for_an_analysis(browser, public_url, town_store):
    minx, miny, maxx, maxy = town_store.summary("buildings").extent
    lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
    v = Visit(browser, public_url + "/")
    try:
        _go(v, lon, lat, 17)
        _tool(v, "buffer")
        _click(v, lon, lat)
        _click(v, lon + 0.0005, lat)
        wait_for(v.page, "window.twinAnalysis.last?.status >= 400", 20)
        assert "请先登录" in v.page.inner_text("#analysis-result")
        assert v.page.is_visible("#login-form")
        assert [p for p in v.problems if " 401" not in p and " 403" not in p] == [], v.problems
    finally:
        v.close()
