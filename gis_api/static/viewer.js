// twin big-screen viewer: draws /styles/twin.json with MapLibre, layer panel by group, statistics,
// feature cards; Chinese first (i18n.js). Opens framed on the whole town whatever the URL.
// window.twinMap is the map; window.twinViewer.ready resolves once the style and its tiles load.
(function () {
  "use strict";
  const I = window.twinI18n;
  const base = new URL(".", window.location.href).href.replace(/\/$/, "");
  const status = document.getElementById("status");
  const setStatus = (t) => { status.textContent = t; };

  let resolveReady, rejectReady, resolveMap, resolveStyled;
  const ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
  // the map, as soon as it is made (before its style and tiles load)
  const mapCreated = new Promise((res) => { resolveMap = res; });
  // the map once its style is parsed ("style.load"), before any tile is asked for: live.js and
  // analysis.js add their sources and layers then. Not on "load": MapLibre fires that only once
  // every tile of the view is in, and a layer added to a vector source makes it reload (parse and
  // draw again) every tile it holds — a second first render.
  const styleLoaded = new Promise((res) => { resolveStyled = res; });
  window.twinViewer = { ready, mapCreated, styleLoaded, errors: [], base, cardExtras: [] };

  // The panel's groups: twin layer ids (vector source-layers) or raster source ids.
  const GROUPS = [
    ["group.base", ["ortho"]],
    ["group.grids", ["grids", "evaluation_grids", "evaluation_points"]],
    ["group.planning", ["zones", "control_lines", "farmland"]],
    ["group.built", ["buildings", "roads", "construction_sites"]],
    ["group.pipes", ["pipelines", "pipe_nodes"]],
    ["group.iot", ["devices"]],
    ["group.cameras", ["cameras"]],
    ["group.events", ["events"]],
  ];

  // --- log-in: a bearer token from /auth/token, sent with every request to this server ---
  const TOKEN_KEY = "twin.token";
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const sameOrigin = (url) => new URL(url, window.location.href).origin === window.location.origin;
  function authHeaders(url) {
    return token() && sameOrigin(url) ? { Authorization: "Bearer " + token() } : {};
  }
  async function api(url, init = {}) {
    const r = await fetch(url, { ...init, headers: { ...(init.headers || {}), ...authHeaders(url) } });
    if (r.status === 401 && token()) {  // expired or revoked: back to guest
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    }
    return r;
  }
  window.twinViewer.api = api;
  window.twinViewer.refreshStats = () => buildStats();

  async function showAccount() {
    const who = document.getElementById("who");
    const me = await (await api(base + "/auth/me")).json().catch(() => ({ subject: "anonymous" }));
    const loggedIn = me.subject && me.subject !== "anonymous";
    const roles = (me.roles || []).map((r) => I.t("role." + r).replace(/^role\./, ""));
    // a guest is "public" unless the server gives anonymous callers another role (TWIN_ANONYMOUS_ROLE)
    const publicGuest = !roles.length || ((me.roles || []).length === 1 && me.roles[0] === "public");
    who.textContent = loggedIn ? me.subject.replace(/^user:/, "") + " · " + roles.join(", ")
      : publicGuest ? I.t("auth.anonymous") : I.t("auth.anonymous_as") + " · " + roles.join(", ");
    document.getElementById("login-open").hidden = loggedIn;
    document.getElementById("logout").hidden = !loggedIn;
  }

  function wireLogin() {
    const form = document.getElementById("login-form");
    document.getElementById("login-open").addEventListener("click", () => { form.hidden = !form.hidden; });
    document.getElementById("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = new URLSearchParams({ grant_type: "password", username: document.getElementById("login-user").value,
                                         password: document.getElementById("login-pass").value });
      const r = await fetch(base + "/auth/token", { method: "POST", body });
      if (!r.ok) {
        document.getElementById("login-error").textContent = I.t(r.status === 423 ? "auth.locked" : "auth.failed");
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, (await r.json()).access_token);
      window.location.reload();  // the style, layers and statistics the new roles may see
    });
  }

  function translateStatic() {
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = I.t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = I.t(el.dataset.i18nPlaceholder); });
    document.title = I.t("app.title") + " — twin";
  }

  /** Ask for the glyph ranges the town's labels use (the style lists them) now, with the tiles:
   *  MapLibre asks for them only once it has parsed the tiles, and the map is drawn only when
   *  every label is placed. Its own requests then come from the browser cache (a year, immutable). */
  function prefetchGlyphs(style) {
    const ranges = (style.metadata && style.metadata["twin:glyph-ranges"]) || [];
    if (!style.glyphs || !ranges.length) return;
    const stacks = new Set(style.layers.map((l) => l.layout && l.layout["text-font"]).filter(Boolean)
      .map((f) => f.join(",")));
    for (const stack of stacks) {
      for (const range of ranges) {
        const url = style.glyphs.replace("{fontstack}", stack).replace("{range}", range);
        fetch(url, { headers: authHeaders(url) }).catch(() => {});  // MapLibre's own request reports failures
      }
    }
  }

  /** The town's extent: the style's metadata (data extent), else its centre at its zoom. */
  function initialView(style) {
    const b = style.metadata && style.metadata["twin:bounds"];
    if (Array.isArray(b) && b.length === 4 && b[2] > b[0] && b[3] > b[1]) {
      return { bounds: [[b[0], b[1]], [b[2], b[3]]], fitBoundsOptions: { padding: 24 } };
    }
    if (style.center) return { center: style.center, zoom: style.zoom || 13 };
    return { center: [0, 0], zoom: 1 };
  }

  // index.html loads this script before maplibre-gl.js, so the style is asked for while the
  // library downloads; the map is made once the document's scripts have run
  const scriptsRun = document.readyState === "loading"
    ? new Promise((res) => document.addEventListener("DOMContentLoaded", res, { once: true }))
    : Promise.resolve();

  async function start() {
    // the panels' requests go out with the style's, not after the map has loaded its tiles and glyphs
    const styleRequest = api(base + "/styles/twin.json");
    const catalogue = api(base + "/collections").then((r) => r.json()).catch(() => null);
    const stats = buildStats();
    showAccount();
    await scriptsRun;
    // MapLibre's tile workers start (and parse their code) while the style and TileJSONs come
    if (typeof maplibregl.prewarm === "function") maplibregl.prewarm();
    translateStatic();
    setStatus(I.t("status.loading"));
    wireLogin();
    const style = await (await styleRequest).json();
    prefetchGlyphs(style);
    // the style's vector sources carry their TileJSON fields (tiles, bounds, zooms): the map is
    // made now and asks for tiles at once, with no TileJSON round trip
    const hasHash = /^#\d/.test(window.location.hash);
    const view = hasHash ? {} : initialView(style);
    const map = new maplibregl.Map({
      container: "map",
      style,
      hash: true,
      attributionControl: { compact: true },
      pitch: 0,
      maxPitch: 75,
      localIdeographFontFamily: false, // every glyph from the twin's own /fonts (no CDN, same on every screen)
      fadeDuration: 0, // labels appear placed, without 300 ms of fade frames (software WebGL pays for each frame)
      transformRequest: (url) => ({ url, headers: authHeaders(url) }),
      ...view,
    });
    window.twinMap = map;
    map.once("style.load", () => resolveStyled(map));
    resolveMap(map);
    window.twinViewer.home = view.bounds || null;
    map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-left");
    map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");

    map.on("error", (e) => {
      const msg = (e && e.error && e.error.message) || String(e);
      window.twinViewer.errors.push(msg);
      setStatus(I.t("status.error") + ": " + msg);
    });

    map.on("click", (e) => {
      if (window.twinAnalysis && window.twinAnalysis.tool) return;  // a click of an analysis tool
      const feats = map.queryRenderedFeatures(e.point).filter((f) => f.sourceLayer);
      if (feats.length) showCard(feats[0]);
    });
    map.on("mousemove", (e) => {
      if (window.twinAnalysis && window.twinAnalysis.tool) return;  // the tool's crosshair stays
      const hit = map.queryRenderedFeatures(e.point).some((f) => f.sourceLayer);
      map.getCanvas().style.cursor = hit ? "pointer" : "";
    });

    document.getElementById("toggle-3d").addEventListener("change", (ev) => {
      map.easeTo({ pitch: ev.target.checked ? 50 : 0 });
    });
    document.getElementById("card-close").addEventListener("click", () => {
      document.getElementById("card").hidden = true;
      const extra = document.getElementById("card-extra");
      for (const f of window.twinViewer.cardExtras) f(null, {}, extra);  // stops video, removes the cone
      extra.innerHTML = "";
    });
    document.getElementById("home").addEventListener("click", () => {
      if (window.twinViewer.home) map.fitBounds(window.twinViewer.home, { padding: 24, pitch: map.getPitch() });
    });
    document.getElementById("lang").addEventListener("click", () => {
      I.set(I.lang === "zh" ? "en" : "zh");
      window.location.reload();
    });

    map.once("load", async () => {
      await Promise.all([buildLayerList(map, await catalogue), stats]);
      setStatus(I.t("status.loaded"));
    });
    map.once("idle", () => resolveReady(true));
    watchLabelGlyphs(map);
  }

  /** The style's glyph ranges hold only the characters the town's labels drew when it was made
   *  (?labels=<key>). A label added later with a new character gets a new key on the server, and a
   *  range MapLibre has loaded is never asked for again: a page open for days asks for the current
   *  key when tiles come in (after a move, or when MapLibre reloads expired tiles), at most once a
   *  minute, and switches to it — MapLibre then lays its labels out again with the new glyphs. */
  const LABEL_CHECK_MS = 60000;
  function watchLabelGlyphs(map) {
    let last = Date.now();
    let timer = null;
    async function check() {
      timer = null;
      last = Date.now();
      if (!/[?&]labels=/.test(map.getGlyphs() || "")) return;
      try {
        const now = await (await api(base + "/fonts/labels.json")).json();
        if (now.glyphs && now.glyphs !== map.getGlyphs()) switchGlyphs(now.glyphs);
      } catch (err) { /* checked again with the next tiles */ }
    }
    function switchGlyphs(url) {
      map.setGlyphs(url);
      // MapLibre 5.6 applies a new glyph URL only with another change of the style (setGlyphs does
      // not mark the style changed): a label layer's layout set and set back makes its tiles laid
      // out again, asking for the glyphs from the new URL
      for (const l of map.getStyle().layers) {
        if (l.type !== "symbol") continue;
        const w = map.getLayoutProperty(l.id, "text-max-width");
        map.setLayoutProperty(l.id, "text-max-width", (typeof w === "number" ? w : 10) + 1);
        map.setLayoutProperty(l.id, "text-max-width", w);
      }
    }
    map.on("data", (e) => {
      if (e.dataType !== "source" || !e.tile || timer) return;
      timer = setTimeout(check, Math.max(0, last + LABEL_CHECK_MS - Date.now()));
    });
    // tests: the next tile that comes in checks at once
    window.twinViewer.checkLabelGlyphsSoon = () => { last = 0; if (timer) { clearTimeout(timer); timer = null; } };
  }

  // twin layer id (the vector tile source-layer, or the raster source) -> style layer ids drawing it
  function styleLayersByKey(map) {
    const groups = new Map();
    for (const l of map.getStyle().layers) {
      if (l.id.startsWith("analysis-")) continue;  // analysis.js's highlight of buildings is not a layer of the twin
      const key = l["source-layer"] || (l.type === "raster" ? l.source : null);
      if (!key) continue;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(l.id);
    }
    return groups;
  }

  async function buildLayerList(map, doc) {
    const list = document.getElementById("layer-list");
    list.innerHTML = "";
    const counts = {};
    // the map still works without the catalogue
    for (const c of (doc && doc.collections) || []) counts[c.id] = c.numberOfFeatures;
    const byKey = styleLayersByKey(map);
    const grouped = new Set(GROUPS.flatMap(([, keys]) => keys));
    const extra = [...byKey.keys()].filter((k) => !grouped.has(k));
    for (const [groupKey, keys] of [...GROUPS, ["group.other", extra]]) {
      // a layer is listed when the style draws it and (for vector layers) it holds data
      const present = keys.filter((k) => byKey.has(k) && (counts[k] === undefined || counts[k] > 0));
      if (!present.length) continue;
      const head = document.createElement("li");
      head.className = "group";
      head.textContent = I.t(groupKey);
      list.append(head);
      for (const key of present) {
        const ids = byKey.get(key);
        const li = document.createElement("li");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = ids.some((id) => map.getLayoutProperty(id, "visibility") !== "none");
        box.dataset.layer = key;
        box.addEventListener("change", () => {
          for (const id of ids) map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
        });
        const label = document.createElement("label");
        label.append(box, " " + I.t("layer." + key));
        li.append(label);
        if (counts[key] !== undefined) {
          const span = document.createElement("span");
          span.className = "count";
          span.textContent = counts[key].toLocaleString(I.locale());
          li.append(span);
        }
        list.append(li);
      }
    }
  }

  async function countOf(layer, query) {
    const r = await api(`${base}/collections/${layer}/items?limit=1&${query}`);
    if (!r.ok) return null;
    return (await r.json()).numberMatched;
  }

  async function buildStats() {
    const box = document.getElementById("stats");
    const statuses = ["reported", "verified", "dispatched", "handled", "closed"];
    try {
      const [total, online, devices, ...byStatus] = await Promise.all([
        countOf("events", ""), countOf("devices", "status=online"), countOf("devices", ""),
        ...statuses.map((s) => countOf("events", "status=" + s)),
      ]);
      const open = byStatus.slice(0, 4).reduce((a, b) => a + (b || 0), 0);
      const fmt = (n) => (n === null || n === undefined ? "—" : n.toLocaleString(I.locale()));
      box.innerHTML = "";
      const kpis = document.createElement("div");
      kpis.className = "kpis";
      for (const [key, value] of [["stats.events_open", fmt(open)], ["stats.events_total", fmt(total)],
                                  ["stats.devices_online", `${fmt(online)} / ${fmt(devices)}`]]) {
        const k = document.createElement("div");
        k.className = "kpi";
        const v = document.createElement("b"); v.textContent = value;
        const t = document.createElement("span"); t.textContent = I.t(key);
        k.append(v, t);
        kpis.append(k);
      }
      box.append(kpis);
      const bars = document.createElement("div");
      bars.className = "bars";
      bars.setAttribute("aria-label", I.t("stats.by_status"));
      const max = Math.max(1, ...byStatus.map((n) => n || 0));
      statuses.forEach((s, i) => {
        const row = document.createElement("div");
        row.className = "bar " + s;
        const name = document.createElement("span"); name.textContent = I.value(s);
        const fill = document.createElement("i"); fill.style.width = `${(100 * (byStatus[i] || 0)) / max}%`;
        const n = document.createElement("em"); n.textContent = fmt(byStatus[i]);
        row.append(name, fill, n);
        bars.append(row);
      });
      box.append(bars);
    } catch (err) { box.textContent = "—"; }
  }

  async function showCard(feature) {
    const layer = feature.sourceLayer;
    const card = document.getElementById("card");
    const table = document.getElementById("card-props");
    let props = feature.properties;
    if (layer && feature.id !== undefined) {
      try {
        const r = await api(`${base}/collections/${layer}/items/${feature.id}`);
        if (r.ok) props = (await r.json()).properties;
      } catch (err) { /* fall back to the tile's attributes */ }
    }
    const title = props.name || props.address || props.code || "";
    document.getElementById("card-title").textContent = `${I.t("layer." + layer)} #${feature.id ?? ""}`;
    document.getElementById("card-name").textContent = title;
    table.innerHTML = "";
    for (const [k, v] of Object.entries(props)) {
      const tr = document.createElement("tr");
      tr.dataset.field = k;
      const a = document.createElement("td"); a.textContent = I.field(k);
      const b = document.createElement("td"); b.textContent = I.value(v);
      tr.append(a, b);
      table.append(tr);
    }
    card.hidden = false;
    // extras by layer (media.js: a camera's video and view cone, a device's readings chart)
    const extra = document.getElementById("card-extra");
    extra.innerHTML = "";
    for (const f of window.twinViewer.cardExtras) {
      try { f(layer, props, extra); } catch (err) { window.twinViewer.errors.push(String(err)); }
    }
  }

  start().catch((err) => {
    window.twinViewer.errors.push(String(err));
    setStatus(I.t("status.error") + ": " + err);
    rejectReady(err);
  });
  setTimeout(() => rejectReady(new Error("map did not become idle in 60 s")), 60000);
})();
