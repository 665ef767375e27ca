"""Visits of the big-screen viewer `/`, counted (a measurement, not a test: not collected by
default, run it by name). One warmed server, one browser, ``MEASURE_N`` visits (each a new
context); per visit the wall time, frames drawn (MapLibre ``render`` events), glyph bytes and
requests (resource timing), the renderer main thread's task and script time (CDP
``Performance.getMetrics``) and the CPU seconds of all the browser's processes (psutil) — the
last ones move much less with the machine's load than the wall time. Options (environment):

- ``MEASURE_VARIANTS="base;flat"``: alternate style edits visit by visit (``VARIANTS`` below),
  the style rewritten in the browser by Playwright routing;
- ``MEASURE_TIMELINE=1``: when the map was made, each frame, ``load``/``idle``, requests by kind;
- ``MEASURE_PROFILE=1``: a CPU profile of the renderer main thread, self time by function;
- ``MEASURE_PROGRAMS=1``: the WebGL programs MapLibre compiled;
- ``MEASURE_FRESH=1``: a new browser for every visit (each a cold first visit, as the test's).

    .venv/bin/python -m pytest -s -n 0 -p no:randomly tests/gis_api/measure_viewer_visits.py
"""
from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from tests.gis_api.test_viewer_browser import (
    ARGS,
    CHROMIUM,
    _wait_for_first_view_warm_up,
    _wait_for_glyph_warm_up,
    wait_for,
)

pytestmark = pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
N = int(os.environ.get("MEASURE_N", "4"))
HOOK = """
window.__frames = 0;
(function hook() {
  if (window.twinViewer && window.twinViewer.mapCreated) {
    window.twinViewer.mapCreated.then((m) => {
      window.__t = {made: performance.now(), frames: []};
      m.on('render', () => { window.__frames += 1; window.__t.frames.push(Math.round(performance.now())); });
      m.once('load', () => { window.__t.load = performance.now(); });
      m.once('idle', () => { window.__t.idle = performance.now(); });
    });
  } else setTimeout(hook, 2);
})();
"""


L = "{l['id']: l for l in style['layers']}"
VARIANTS = {
    "base": "pass",
    "extr1": f"{L}['buildings']['paint']['fill-extrusion-opacity'] = 1",
    "flat": "b = [l for l in style['layers'] if l['id'] == 'buildings'][0]; b['type'] = 'fill'; "
            "b['paint'] = {'fill-color': b['paint']['fill-extrusion-color'], 'fill-opacity': 0.85}",
    "noortho": "style['layers'] = [l for l in style['layers'] if l['id'] != 'ortho']",
    "ortho1": f"{L}['ortho']['paint']['raster-opacity'] = 1",
    "nolabels": "style['layers'] = [l for l in style['layers'] if l['type'] != 'symbol']",
    "fewer": f"ls = {L}\n"
             "for i in ('zones', 'farmland', 'construction_sites'): ls[i]['paint']['fill-antialias'] = False\n"
             "ls['grids']['paint']['line-color'] = ['match', ['get', 'level'], 'town', '#283593', 'village', '#3f51b5', '#5c6bc0']\n"
             "ls['control_lines']['paint']['line-width'] = ['match', ['get', 'kind'], 'ecological_red_line', 3, 2.5]\n"
             "ls['events-closed']['paint']['circle-color'] = ls['events']['paint']['circle-color']\n",
    "noprefetch": "style['metadata'].pop('twin:glyph-ranges', None)",
    "nobg": "style['layers'] = [l for l in style['layers'] if l['id'] != 'background']",
}


def _report_profile(profile) -> None:
    """Self time by function and by script, from a CDP CPU profile."""
    from collections import Counter

    nodes = {n["id"]: n for n in profile["nodes"]}
    deltas = profile["timeDeltas"]
    self_us = Counter()
    for sid, dt in zip(profile["samples"], deltas, strict=False):
        self_us[sid] += dt
    by_fn, by_url = Counter(), Counter()
    for nid, us in self_us.items():
        cf = nodes[nid]["callFrame"]
        url = cf["url"].rsplit("/", 1)[-1] or "(" + cf["functionName"] + ")"
        by_fn[f"{cf['functionName'] or '(anon)'} {url}:{cf['lineNumber']}"] += us
        by_url[url] += us
    print("PROFILE by script", [(k, round(v / 1e6, 3)) for k, v in by_url.most_common(12)])
    print("PROFILE by fn", [(k, round(v / 1e6, 3)) for k, v in by_fn.most_common(25)])


def _chrome_cpu() -> float:
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name():
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def test_measure(live_url, town_store, town_settings):
    from playwright.sync_api import sync_playwright

    _wait_for_glyph_warm_up(town_store, town_settings)
    _wait_for_first_view_warm_up(live_url)
    rows = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        variants = [v for v in os.environ.get("MEASURE_VARIANTS", "").split(";") if v] or [""]
        for i in range(N * len(variants)):  # variants alternate, visit by visit
            variant = variants[i % len(variants)]
            if os.environ.get("MEASURE_FRESH") and i:  # every visit a cold browser, as the test's
                b.close()
                b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = b.new_context(locale="zh-CN", viewport={"width": 1920, "height": 1080})
            page = ctx.new_page()
            if variant:
                def edit(route, _request=None, variant=variant):
                    r = route.fetch()
                    style = r.json()
                    exec(VARIANTS[variant], {"style": style})
                    route.fulfill(status=200, body=json.dumps(style), content_type="application/json")
                page.route("**/styles/twin.json", edit)
            page.add_init_script(HOOK)
            cdp = ctx.new_cdp_session(page)
            cdp.send("Performance.enable")
            prof = os.environ.get("MEASURE_PROFILE")
            if prof:
                page.goto(live_url + "/static/icon.svg")
                cdp.send("Profiler.enable")
                cdp.send("Profiler.setSamplingInterval", {"interval": 500})
                cdp.send("Profiler.start")
            time.sleep(0.5)
            cpu0, t0 = _chrome_cpu(), time.perf_counter()
            page.goto(live_url + "/")
            wait_for(page, "window.twinViewer !== undefined", 20)
            page.evaluate("window.twinViewer.ready")
            wait_for(page, "window.twinMap.loaded() && window.twinMap.areTilesLoaded()", 60)
            wall = time.perf_counter() - t0
            cpu = _chrome_cpu() - cpu0
            m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
            if prof:
                profile = cdp.send("Profiler.stop")["profile"]
                _report_profile(profile)
            res = page.evaluate("""() => { const e = performance.getEntriesByType('resource');
              const g = e.filter(r => r.name.includes('/fonts/'));
              return {frames: window.__frames, requests: e.length, glyphs: g.length,
                glyph_transfer: g.reduce((a, r) => a + r.encodedBodySize, 0),
                glyph_decoded: g.reduce((a, r) => a + r.decodedBodySize, 0),
                zoom: window.twinMap.getZoom(),
                all_transfer: e.reduce((a, r) => a + r.encodedBodySize, 0)}; }""")
            row = {"variant": variant, "wall": round(wall, 2), "cpu": round(cpu, 2), "task": round(m.get("TaskDuration", 0), 2),
                   "script": round(m.get("ScriptDuration", 0), 2), **res, "load": os.getloadavg()[0]}
            rows.append(row)
            print("MEASURE", json.dumps(row))
            if os.environ.get("MEASURE_PROGRAMS"):
                print("PROGRAMS", page.evaluate("Object.keys(window.twinMap.painter.cache)"))
            if os.environ.get("MEASURE_TIMELINE"):
                print("TIMELINE", json.dumps(page.evaluate("""() => {
                  const e = performance.getEntriesByType('resource');
                  const kind = (n) => n.includes('/fonts/') ? 'glyph' : n.includes('.mvt') ? 'mvt' :
                    n.includes('/raster/') ? 'raster' : n.includes('styles') ? 'style' : n.split('/').pop().slice(0, 30);
                  const groups = {};
                  for (const r of e) { const k = kind(r.name); const g = groups[k] = groups[k] || {n: 0, start: 1e9, end: 0};
                    g.n++; g.start = Math.min(g.start, Math.round(r.startTime)); g.end = Math.max(g.end, Math.round(r.responseEnd)); }
                  const nav = performance.getEntriesByType('navigation')[0];
                  return {t: {made: Math.round(window.__t.made), load: Math.round(window.__t.load), idle: Math.round(window.__t.idle),
                    frames: window.__t.frames, dcl: Math.round(nav.domContentLoadedEventEnd)}, groups};
                }""")))
            ctx.close()
        b.close()
