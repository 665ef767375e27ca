// twin viewer, analysis from the map (docs/analysis.md): draw a line → cross-section drawing; click a
// pipe → flow arrows and its upstream/downstream trace; click a burst pipe → valves to close and the
// buildings cut off; draw a circle → buffer; draw a polygon → planning overlap; the dust heat layer.
// Drawing is plain MapLibre: click handlers and GeoJSON sources (no plugin). Each answer is the
// service's own, shown as it came; window.twinAnalysis.last keeps the request and answer (tests).
(function () {
  "use strict";
  const I = window.twinI18n;
  const V = window.twinViewer;
  const DRAW = "analysis-draw", RESULT = "analysis-result", DUST = "dust-heat";
  const LAYERS_NEAR = ["buildings", "devices", "cameras", "pipe_nodes", "pipelines", "events"];
  const state = { tool: null, points: [], last: null, busy: false, drawn: [] };
  let map = null;
  window.twinAnalysis = state;

  const fc = (features) => ({ type: "FeatureCollection", features });
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (n, digits = 1) => (n === null || n === undefined ? "—"
    : Number(n).toLocaleString(I.locale(), { maximumFractionDigits: digits }));

  /** Ground distance in metres between two lon/lat points (haversine, WGS84 mean radius). */
  function metres(a, b) {
    const r = Math.PI / 180, R = 6371008.8;
    const dLat = (b[1] - a[1]) * r, dLon = (b[0] - a[0]) * r;
    const h = Math.sin(dLat / 2) ** 2 + Math.cos(a[1] * r) * Math.cos(b[1] * r) * Math.sin(dLon / 2) ** 2;
    return 2 * R * Math.asin(Math.sqrt(h));
  }

  /** A 64-gon around `c` of `radius` metres (only drawn; the service decides what is inside). */
  function circle(c, radius) {
    const ring = [];
    const dLat = radius / 111320, dLon = radius / (111320 * Math.cos((c[1] * Math.PI) / 180));
    for (let i = 0; i <= 64; i++) {
      const t = (2 * Math.PI * i) / 64;
      ring.push([c[0] + dLon * Math.cos(t), c[1] + dLat * Math.sin(t)]);
    }
    return { type: "Polygon", coordinates: [ring] };
  }

  // --- the panel ---
  const box = () => document.getElementById("analysis-result");
  function show(title, ...children) {
    const b = box();
    b.innerHTML = "";
    b.hidden = false;
    const head = el("div", "analysis-head");
    head.append(el("b", null, title));
    const close = el("button", null, "✕");
    close.type = "button";
    close.title = I.t("analysis.clear");
    close.addEventListener("click", clear);
    head.append(close);
    b.append(head, ...children);
  }
  function message(key, extra) {
    const p = el("p", "analysis-msg", I.t(key) + (extra ? ": " + extra : ""));
    return p;
  }
  function hint() {
    const h = document.getElementById("analysis-hint");
    h.textContent = state.tool ? I.t("analysis.hint." + state.tool) : "";
    document.getElementById("analysis-finish").hidden = state.tool !== "overlap";
    document.querySelectorAll("#analysis-tools button[data-tool]").forEach((b) => {
      b.classList.toggle("active", b.dataset.tool === state.tool);
    });
  }

  function table(rows, head) {
    const t = el("table", "analysis-table");
    if (head) {
      const tr = el("tr");
      for (const h of head) tr.append(el("th", null, h));
      t.append(tr);
    }
    for (const r of rows) {
      const tr = el("tr");
      for (const c of r) tr.append(el("td", null, c));
      t.append(tr);
    }
    return t;
  }

  // --- drawing ---
  function redraw(cursor) {
    const pts = state.points.slice();
    const feats = pts.map((p) => ({ type: "Feature", geometry: { type: "Point", coordinates: p }, properties: {} }));
    const live = cursor ? pts.concat([cursor]) : pts;
    if (state.tool === "section" && live.length >= 2) {
      feats.push({ type: "Feature", geometry: { type: "LineString", coordinates: live }, properties: {} });
    } else if (state.tool === "overlap" && live.length >= 2) {
      const ring = live.length >= 3 ? live.concat([live[0]]) : live;
      feats.push({ type: "Feature", geometry: live.length >= 3 ? { type: "Polygon", coordinates: [ring] }
        : { type: "LineString", coordinates: ring }, properties: {} });
    } else if (state.tool === "buffer" && pts.length === 1 && cursor) {
      feats.push({ type: "Feature", geometry: circle(pts[0], metres(pts[0], cursor)), properties: {} });
    }
    map.getSource(DRAW).setData(fc(feats));
  }

  function setResult(features) {
    state.drawn = features.map((f) => f.properties.role);  // what the map was given, by role (tests)
    map.getSource(RESULT).setData(fc(features));
  }

  /** Bring a result into view when part of it lies off screen (a long trace, a large isolated
   *  segment): fit the map to it, never zooming in past where the user is. */
  function reveal(features) {
    let w = Infinity, so = Infinity, e = -Infinity, n = -Infinity;
    const visit = (c) => {
      if (typeof c[0] === "number") { w = Math.min(w, c[0]); e = Math.max(e, c[0]); so = Math.min(so, c[1]); n = Math.max(n, c[1]); }
      else for (const k of c) visit(k);
    };
    for (const f of features) if (f.geometry) visit(f.geometry.coordinates);
    if (!(w <= e && so <= n)) return;
    // once the tiles being loaded are in (moving now would cancel their requests)
    map.once("idle", () => {
      const view = map.getBounds();
      if (view.contains([w, so]) && view.contains([e, n])) return;
      // a jump, not a flight: a flight asks for the tiles of every zoom it passes and cancels them
      map.fitBounds([[w, so], [e, n]], { padding: 60, maxZoom: map.getZoom(), animate: false });
      state.revealed = (state.revealed || 0) + 1;
    });
    map.triggerRepaint();
  }

  function clear() {
    state.points = [];
    if (map) {
      map.getSource(DRAW).setData(fc([]));
      setResult([]);
      map.setFilter("analysis-buildings", ["in", ["id"], ["literal", []]]);
    }
    const b = box();
    b.innerHTML = "";
    b.hidden = true;
  }

  function pick(tool) {
    state.tool = state.tool === tool ? null : tool;
    state.points = [];
    if (state.tool) clear();
    // a double click ends a polygon: it must not zoom the map meanwhile
    if (state.tool) map.doubleClickZoom.disable(); else map.doubleClickZoom.enable();
    map.getCanvas().style.cursor = state.tool ? "crosshair" : "";
    hint();
  }

  // --- calling the services ---
  async function call(tool, path, body, asText) {
    state.busy = true;
    show(I.t("analysis.tool." + tool), message("analysis.running"));
    try {
      const r = await V.api(V.base + path, body === undefined ? {} : {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      if (r.status === 401 || r.status === 403) {
        // a guest (or a role without the analyse permission): ask for a log-in
        state.last = { tool, path, request: body, status: r.status, response: null };
        show(I.t("analysis.tool." + tool), message("analysis.login"));
        const form = document.getElementById("login-form");
        if (form) form.hidden = false;
        return null;
      }
      const answer = asText && r.ok ? await r.text() : await r.json().catch(() => ({}));
      state.last = { tool, path, request: body, status: r.status, response: answer };
      if (!r.ok) {
        show(I.t("analysis.tool." + tool), message("analysis.failed", answer.message || r.status));
        return null;
      }
      return answer;
    } catch (err) {
      show(I.t("analysis.tool." + tool), message("analysis.failed", String(err)));
      return null;
    } finally {
      state.busy = false;
    }
  }

  const GRAVITY = new Set(["rain", "stormwater", "sewage", "combined"]);
  /** The pipe drawn under a click, if any: its code and utility from the vector tile. Pipes of
   *  several utilities often share a street: `pressure` prefers the top pressure pipe (a burst). */
  function pipeAt(point, pressure) {
    const pipes = map.queryRenderedFeatures([[point.x - 4, point.y - 4], [point.x + 4, point.y + 4]])
      .filter((x) => x.sourceLayer === "pipelines" && x.properties.code);
    const f = (pressure && pipes.find((x) => !GRAVITY.has(x.properties.utility))) || pipes[0];
    return f ? { code: f.properties.code, utility: f.properties.utility } : null;
  }

  function lines(fcoll, role) {
    return ((fcoll && fcoll.features) || []).filter((f) => f.geometry)
      .map((f) => ({ type: "Feature", geometry: f.geometry, properties: { role, code: f.properties.code || "" } }));
  }
  function nodes(list, role) {
    return (list || []).map((n) => ({ type: "Feature", geometry: { type: "Point", coordinates: [n.lon, n.lat] },
                                      properties: { role, code: n.code, kind: n.kind || "" } }));
  }

  async function runSection(line) {
    const body = { line: { type: "LineString", coordinates: line } };
    const svg = await call("section", "/analysis/cross-section?format=svg", body, true);
    if (svg === null) return;
    const img = el("img");
    img.id = "section-img";
    img.alt = I.t("analysis.tool.section");
    img.src = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
    show(I.t("analysis.tool.section"), img);
  }

  async function runTrace(lngLat, point) {
    const hit = pipeAt(point);
    const start = hit ? { feature: { layer: "pipelines", code: hit.code } } : { point: [lngLat.lng, lngLat.lat] };
    const down = await call("trace", "/analysis/trace", { ...start, direction: "downstream" });
    if (!down) return;
    const up = await call("trace", "/analysis/trace", { ...start, direction: "upstream" });
    if (!up) return;
    // flow arrows over the traced stretch (the bbox of both traces), from the flow-direction service
    const all = [...down.pipes.features, ...up.pipes.features].filter((f) => f.geometry);
    let arrows = [];
    if (all.length) {
      const xs = [], ys = [];
      for (const f of all) for (const [x, y] of f.geometry.coordinates) { xs.push(x); ys.push(y); }
      const pad = 0.0003;
      const bbox = [Math.min(...xs) - pad, Math.min(...ys) - pad, Math.max(...xs) + pad, Math.max(...ys) + pad];
      const flow = await call("trace", `/analysis/flow-direction?bbox=${bbox.map((v) => v.toFixed(6)).join(",")}` +
                              `&utility=${encodeURIComponent(down.utility)}`);
      if (flow) {
        arrows = flow.features.map((f) => ({ type: "Feature", properties: { role: "arrow", bearing: f.properties.arrow.bearing_deg },
                                             geometry: { type: "Point", coordinates: [f.properties.arrow.lon, f.properties.arrow.lat] } }));
      }
    }
    state.last = { tool: "trace", request: start, response: { downstream: down, upstream: up }, arrows: arrows.length };
    setResult([...lines(up.pipes, "upstream"), ...lines(down.pipes, "downstream"), ...arrows]);
    reveal([...up.pipes.features, ...down.pipes.features]);
    const rows = [
      [I.t("analysis.start_pipe"), down.start_pipe],
      [I.t("analysis.utility"), I.value(down.utility)],
      [I.t("analysis.downstream"), `${fmt(down.pipe_count, 0)} · ${fmt(down.length_m)} m`],
      [I.t("analysis.upstream"), `${fmt(up.pipe_count, 0)} · ${fmt(up.length_m)} m`],
      [I.t("analysis.arrows"), fmt(arrows.length, 0)],
    ];
    const legend = el("p", "analysis-legend");
    legend.append(el("span", "swatch downstream"), I.t("analysis.downstream"), " ", el("span", "swatch upstream"),
                  I.t("analysis.upstream"));
    show(I.t("analysis.tool.trace"), table(rows), legend);
    document.getElementById("analysis-result").dataset.pipes = String(down.pipe_count + up.pipe_count);
  }

  async function runBurst(lngLat, point) {
    const hit = pipeAt(point, true);
    const body = hit ? { feature: { layer: "pipelines", code: hit.code } } : { point: [lngLat.lng, lngLat.lat] };
    const res = await call("burst", "/analysis/valve-isolation", body);
    if (!res) return;
    setResult([...lines(res.cut_off.pipes, "cut_off"), ...lines(res.isolated.pipes, "isolated"),
               ...nodes(res.valves_to_close, "valve")]);
    reveal([...res.cut_off.pipes.features, ...res.isolated.pipes.features]);
    const ids = res.buildings_affected.features.map((f) => f.id);
    map.setFilter("analysis-buildings", ["in", ["id"], ["literal", ids]]);
    const summary = el("p", "analysis-summary", I.t("analysis.burst_summary")
      .replace("{valves}", fmt(res.valves_to_close.length, 0))
      .replace("{buildings}", fmt(res.buildings_affected.count, 0))
      .replace("{households}", fmt(res.buildings_affected.households, 0)));
    summary.id = "burst-summary";
    const rows = res.valves_to_close.map((v) => [v.code, I.value(v.kind)]);
    const valves = table(rows, [I.t("analysis.valve"), I.t("analysis.kind")]);
    valves.id = "valves-table";
    const cut = res.buildings_affected.features.slice(0, 30)
      .map((b) => [b.code || String(b.id), b.address || b.name || ""]);
    const buildings = table(cut, [I.t("analysis.building"), I.t("analysis.address")]);
    buildings.id = "cut-buildings";
    show(I.t("analysis.tool.burst"), summary,
         table([[I.t("analysis.start_pipe"), res.burst_pipe], [I.t("analysis.utility"), I.value(res.utility)],
                [I.t("analysis.isolated"), fmt(res.isolated.pipes.features.length, 0)],
                [I.t("analysis.cut_off"), fmt(res.cut_off.pipes.features.length, 0)]]), valves, buildings);
  }

  async function runBuffer(centre, radius) {
    const present = new Set(map.getStyle().layers.map((l) => l["source-layer"]).filter(Boolean));
    const layers = LAYERS_NEAR.filter((l) => present.has(l));
    const body = { geometry: { type: "Point", coordinates: centre }, distance: Math.round(radius * 10) / 10, layers };
    const res = await call("buffer", "/analysis/buffer", body);
    if (!res) return;
    const hits = res.features.features.filter((f) => f.geometry).map((f) => ({
      type: "Feature", geometry: f.geometry, properties: { role: "hit", code: f.properties.code || "" } }));
    setResult([{ type: "Feature", geometry: res.buffer, properties: { role: "buffer" } }, ...hits]);
    const counts = Object.entries(res.counts).map(([k, n]) => [I.t("layer." + k), fmt(n, 0)]);
    const countTable = table(counts, [I.t("analysis.layer"), I.t("analysis.count")]);
    countTable.id = "buffer-counts";
    const nearest = res.features.features.slice(0, 15).map((f) => [
      I.t("layer." + f.properties.layer), f.properties.name || f.properties.code || f.properties.address || String(f.id),
      fmt(f.properties.distance_m) + " m"]);
    show(I.t("analysis.tool.buffer"),
         el("p", "analysis-summary", `${I.t("analysis.radius")} ${fmt(res.distance_m)} m · ${fmt(res.area_m2, 0)} m²`),
         countTable, table(nearest, [I.t("analysis.layer"), I.t("analysis.name"), I.t("analysis.distance")]));
  }

  async function runOverlap(ring) {
    const body = { geometry: { type: "Polygon", coordinates: [ring.concat([ring[0]])] } };
    const res = await call("overlap", "/analysis/overlap", body);
    if (!res) return;
    setResult([{ type: "Feature", geometry: body.geometry, properties: { role: res.verdict.conflict ? "conflict" : "project" } }]);
    const rows = [[I.t("analysis.project_area"), fmt(res.area_m2), fmt(res.area_mu, 2)]];
    for (const [k, v] of Object.entries(res.zones)) rows.push([I.value(k), fmt(v.area_m2), fmt(v.area_mu, 2)]);
    for (const [k, v] of Object.entries(res.control_lines)) rows.push([I.value(k), fmt(v.area_m2), fmt(v.area_mu, 2)]);
    rows.push([I.t("analysis.farmland"), fmt(res.farmland.total.area_m2), fmt(res.farmland.total.area_mu, 2)]);
    rows.push([I.t("analysis.pbf"), fmt(res.farmland.permanent_basic.area_m2), fmt(res.farmland.permanent_basic.area_mu, 2)]);
    const t = table(rows, [I.t("analysis.item"), "m²", I.t("analysis.mu")]);
    t.id = "overlap-table";
    const verdict = el("p", "analysis-verdict " + (res.verdict.conflict ? "conflict" : "ok"),
                       I.t(res.verdict.conflict ? "analysis.conflict" : "analysis.no_conflict"));
    verdict.id = "overlap-verdict";
    show(I.t("analysis.tool.overlap"), verdict, t, el("p", "card-note", res.verdict.message || ""));
  }

  async function toggleDust(on) {
    const id = "dust-heat-layer";
    if (on && !map.getSource(DUST)) {
      map.addSource(DUST, { type: "raster", url: V.base + "/raster/dust-heat/tilejson.json", tileSize: 256 });
      const before = map.getStyle().layers.find((l) => l.type === "symbol");
      map.addLayer({ id, type: "raster", source: DUST, paint: { "raster-opacity": 0.7 } }, before && before.id);
    }
    if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
    if (!on) return;
    const b = map.getBounds().toArray().flat().map((v) => v.toFixed(6)).join(",");
    const res = await call("dust", `/analysis/dust-heat?bbox=${b}&cell_m=50`);
    if (!res) return;
    const worst = res.monitors.slice().sort((a, c) => c.score - a.score).slice(0, 8)
      .map((m) => [m.code, fmt(m.score), fmt(m.factors.pm10 && m.factors.pm10.value)]);
    const t = table(worst, [I.t("analysis.monitor"), I.t("analysis.score"), "PM10"]);
    t.id = "dust-monitors";
    show(I.t("analysis.tool.dust"),
         el("p", "analysis-summary", I.t("analysis.dust_summary").replace("{monitors}", fmt(res.monitors.length, 0))
           .replace("{warnings}", fmt(res.warnings.length, 0))), t);
  }

  // --- map events ---
  function onClick(e) {
    if (!state.tool || state.busy) return;
    const p = [e.lngLat.lng, e.lngLat.lat];
    if (state.tool === "trace") { runTrace(e.lngLat, e.point); return; }
    if (state.tool === "burst") { runBurst(e.lngLat, e.point); return; }
    state.points.push(p);
    redraw();
    if (state.tool === "section" && state.points.length === 2) {
      const line = state.points.slice();
      state.points = [];
      runSection(line);
    } else if (state.tool === "buffer" && state.points.length === 2) {
      const [c, edge] = state.points;
      state.points = [];
      map.getSource(DRAW).setData(fc([{ type: "Feature", geometry: circle(c, metres(c, edge)), properties: {} }]));
      runBuffer(c, metres(c, edge));
    }
  }

  function finishPolygon() {
    if (state.tool !== "overlap") return;
    // a double click adds its point twice: drop repeats
    const ring = state.points.filter((p, i, a) => i === 0 || p[0] !== a[i - 1][0] || p[1] !== a[i - 1][1]);
    if (ring.length < 3) return;
    state.points = [];
    runOverlap(ring);
  }

  function addLayers() {
    map.addSource(DRAW, { type: "geojson", data: fc([]) });
    map.addSource(RESULT, { type: "geojson", data: fc([]) });
    // an arrow head for flow symbols, drawn here (no sprite, no glyph needed)
    const n = 24, data = new Uint8Array(n * n * 4);
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        const half = (y / (n - 1)) * (n / 2 - 2);  // a triangle pointing up (north), rotated by bearing
        if (Math.abs(x - n / 2) <= half && y > 2) data.set([255, 235, 59, 255], (y * n + x) * 4);
      }
    }
    map.addImage("flow-arrow", { width: n, height: n, data });
    const src = map.getStyle().layers.find((l) => l["source-layer"] === "buildings");
    if (src) {
      // extruded like the buildings (and a little higher), or the buildings' own extrusion hides it
      map.addLayer({ id: "analysis-buildings", type: "fill-extrusion", source: src.source, "source-layer": "buildings",
                     filter: ["in", ["id"], ["literal", []]],
                     paint: { "fill-extrusion-color": "#ff1744", "fill-extrusion-opacity": 0.9,
                              "fill-extrusion-height": ["+", ["coalesce", ["get", "height_m"], 3], 0.3] } });
    } else {
      map.addLayer({ id: "analysis-buildings", type: "fill", source: RESULT, filter: ["in", ["id"], ["literal", []]] });
    }
    const role = ["get", "role"];
    map.addLayer({ id: "analysis-fill", type: "fill", source: RESULT, filter: ["==", ["geometry-type"], "Polygon"],
                   paint: { "fill-color": ["match", role, "conflict", "#ff1744", "buffer", "#00b0ff", "#ffd600"],
                            "fill-opacity": 0.2 } });
    map.addLayer({ id: "analysis-outline", type: "line", source: RESULT, filter: ["==", ["geometry-type"], "Polygon"],
                   paint: { "line-color": ["match", role, "conflict", "#ff1744", "buffer", "#00b0ff", "#ffd600"],
                            "line-width": 2 } });
    map.addLayer({ id: "analysis-lines", type: "line", source: RESULT, filter: ["==", ["geometry-type"], "LineString"],
                   layout: { "line-cap": "round" },
                   paint: { "line-color": ["match", role, "upstream", "#00e5ff", "downstream", "#ff4081",
                                           "isolated", "#ff1744", "cut_off", "#ff9100", "#ffff00"],
                            "line-width": 5, "line-opacity": 0.9 } });
    map.addLayer({ id: "analysis-points", type: "circle", source: RESULT,
                   filter: ["all", ["==", ["geometry-type"], "Point"], ["!=", role, "arrow"]],
                   paint: { "circle-radius": ["match", role, "valve", 8, 5],
                            "circle-color": ["match", role, "valve", "#00e676", "#ffff00"],
                            "circle-stroke-color": "#06121f", "circle-stroke-width": 2 } });
    map.addLayer({ id: "analysis-arrows", type: "symbol", source: RESULT, filter: ["==", role, "arrow"],
                   layout: { "icon-image": "flow-arrow", "icon-rotate": ["get", "bearing"], "icon-size": 0.7,
                             "icon-rotation-alignment": "map", "icon-allow-overlap": true } });
    map.addLayer({ id: "analysis-draw-line", type: "line", source: DRAW,
                   paint: { "line-color": "#ffffff", "line-width": 2, "line-dasharray": [2, 1] } });
    map.addLayer({ id: "analysis-draw-points", type: "circle", source: DRAW,
                   filter: ["==", ["geometry-type"], "Point"],
                   paint: { "circle-radius": 4, "circle-color": "#ffffff" } });
  }

  function wire() {
    document.querySelectorAll("#analysis-tools button[data-tool]").forEach((b) => {
      b.addEventListener("click", () => pick(b.dataset.tool));
    });
    document.getElementById("analysis-finish").addEventListener("click", finishPolygon);
    document.getElementById("dust-toggle").addEventListener("change", (e) => toggleDust(e.target.checked));
    map.on("click", onClick);
    map.on("dblclick", (e) => { if (state.tool === "overlap") { e.preventDefault(); finishPolygon(); } });
    map.on("mousemove", (e) => { if (state.tool && state.points.length) redraw([e.lngLat.lng, e.lngLat.lat]); });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.tool) pick(state.tool); });
  }

  state.clear = () => clear();
  // once the map's style is parsed (viewer.js, styleLoaded), so the (empty) drawing and result
  // sources and the highlight layer on the buildings are part of the first view: added after the
  // tiles, the highlight layer would make MapLibre parse every tile of the twin source again
  V.styleLoaded.then((m) => {
    map = m;
    addLayers();
    wire();
    hint();
  });
})();
