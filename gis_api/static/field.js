// twin field page (/field): a phone page for grid staff. Search houses, devices and grids by name
// (GET /search), "where am I" from the phone's position or a tapped point (GET /locate/grid,
// GET /nearest for devices and cameras), and report an event there (POST /events, after a log-in
// at POST /auth/token like the big screen). Chinese first: the language comes from i18n.js, the
// page's own texts from the small dictionary below. window.twinField.ready resolves at first render
// (the page's own UI usable); window.twinField.mapReady when the map, loaded after it, is drawn.
(function () {
  "use strict";
  const I = window.twinI18n;
  const base = new URL(".", window.location.href).href.replace(/\/$/, "");
  const $ = (id) => document.getElementById(id);

  const ZH = {
    title: "网格巡查", login: "登录", logout: "退出", lang: "EN", user: "用户名", pass: "密码",
    "auth.failed": "用户名或密码错误", "auth.locked": "登录失败次数过多，账户已锁定", guest: "访客",
    "search.hint": "搜索房屋、设备、网格", search: "搜索", "search.none": "没有找到",
    where: "我在哪", ortho: "影像", tap: "或在地图上点选位置", here: "当前位置", devices: "附近设备", cameras: "附近摄像头",
    "grid.unit": "单元网格", "grid.village": "村（社区）", "grid.town": "镇", "grid.none": "不在任何网格内",
    "near.none": "附近没有", "geo.failed": "无法获取位置，请在地图上点选", report: "上报事件",
    "report.need": "先登录，再在地图上选定位置", "report.point": "先在地图上选定位置",
    category: "类别", "event.title": "标题", description: "描述", submit: "提交",
    "report.ok": "已上报", "report.failed": "上报失败", m: "米", km: "公里", loading: "加载中…",
    photo: "照片", "photo.ok": "含照片", "photo.failed": "照片上传失败",
    "layer.buildings": "房屋", "layer.devices": "设备", "layer.grids": "网格", "layer.cameras": "摄像头",
  };
  const EN = {
    title: "Field patrol", login: "Log in", logout: "Log out", lang: "中文", user: "user name", pass: "password",
    "auth.failed": "wrong user name or password", "auth.locked": "too many failed log-ins: the account is locked",
    guest: "guest", "search.hint": "Find houses, devices, grids", search: "Search", "search.none": "nothing found",
    where: "Where am I", ortho: "Imagery", tap: "or tap the map", here: "Here", devices: "Nearest devices", cameras: "Nearest cameras",
    "grid.unit": "Unit grid", "grid.village": "Village", "grid.town": "Town", "grid.none": "outside every grid",
    "near.none": "none nearby", "geo.failed": "no position from the phone: tap the map", report: "Report an event",
    "report.need": "Log in, then pick a place on the map", "report.point": "Pick a place on the map first",
    category: "Category", "event.title": "Title", description: "Description", submit: "Submit",
    "report.ok": "Reported", "report.failed": "Not reported", m: "m", km: "km", loading: "loading…",
    photo: "Photo", "photo.ok": "with photo", "photo.failed": "photo not uploaded",
    "layer.buildings": "House", "layer.devices": "Device", "layer.grids": "Grid", "layer.cameras": "Camera",
  };
  // the sample town's event categories (sample_data/events.py); the value sent is the code
  const CATEGORIES = {
    garbage: ["垃圾堆放", "Garbage dumped"], illegal_parking: ["违章停车", "Illegal parking"],
    road_damage: ["道路破损", "Road damage"], water_leak: ["供水管道漏水", "Water main leak"],
    noise: ["噪声扰民", "Noise"], illegal_construction: ["违法搭建", "Illegal construction"],
    dust: ["扬尘污染", "Dust"], river_pollution: ["河道漂浮物", "River litter"],
    illegal_stall: ["占道经营", "Street stall"], manhole_cover: ["井盖缺失", "Missing manhole cover"],
    waterlogging: ["道路积水", "Waterlogging"], streetlight: ["路灯不亮", "Streetlight out"],
    straw_burning: ["秸秆焚烧", "Straw burning"],
  };
  const LOCAL_CJK_FONTS = "'PingFang SC', 'Noto Sans CJK SC', 'Noto Sans SC', 'Microsoft YaHei', "
    + "'WenQuanYi Micro Hei', 'Source Han Sans SC', sans-serif";
  // maplibre-gl (~250 kB of script, 70 kB of CSS) is fetched only after the page's own UI is drawn
  // (first render: search, "where am I", log-in), so on a mobile network the first render does not
  // wait for it; the style, its TileJSONs and the account are fetched while it downloads.
  const VENDOR = "static/vendor/maplibre-gl/dist/";
  function loadMaplibre() {
    if (window.maplibregl) return Promise.resolve();
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = VENDOR + "maplibre-gl.css";
    document.head.append(css);
    return new Promise((res, rej) => {
      const tag = document.createElement("script");
      tag.src = VENDOR + "maplibre-gl.js";
      tag.addEventListener("load", () => res());
      tag.addEventListener("error", () => rej(new Error("maplibre-gl.js did not load")));
      document.body.append(tag);
    });
  }
  const zh = () => I.lang === "zh";
  const T = (k) => (zh() ? ZH : EN)[k] || EN[k] || I.t(k);

  // ready: the page's own UI is drawn and usable (texts in the user's language, search, "where am I",
  // log-in wired); mapReady: the map's first view is drawn (idle) and the account is known.
  let resolveReady, resolveMap;
  const ready = new Promise((res) => { resolveReady = res; });
  const mapReady = new Promise((res) => { resolveMap = res; });
  window.twinField = { ready, mapReady, errors: [], here: null };
  const state = { me: null, here: null, map: null, marker: null };

  // --- log-in: a bearer token from /auth/token (as the big screen), sent to this server only ---
  const TOKEN_KEY = "twin.token";
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const sameOrigin = (url) => new URL(url, window.location.href).origin === window.location.origin;
  const authHeaders = (url) => (token() && sameOrigin(url) ? { Authorization: "Bearer " + token() } : {});
  async function api(url, init = {}) {
    const r = await fetch(url, { ...init, headers: { ...(init.headers || {}), ...authHeaders(url) } });
    if (r.status === 401 && token()) {  // expired or revoked: back to guest
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    }
    return r;
  }
  async function json(url, init) {
    const r = await api(url, init);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || r.status + " " + r.statusText);
    return body;
  }

  async function showAccount() {
    const me = await json(base + "/auth/me").catch(() => ({ subject: "anonymous" }));
    const loggedIn = !!me.subject && me.subject !== "anonymous";
    state.me = loggedIn ? me : null;
    $("who").textContent = loggedIn ? me.subject.replace(/^user:/, "") : T("guest");
    $("login-open").hidden = loggedIn;
    $("logout").hidden = !loggedIn;
    updateReport();
  }

  function wireLogin() {
    const form = $("login-form");
    $("login-open").addEventListener("click", () => { form.hidden = !form.hidden; });
    $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); window.location.reload(); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = new URLSearchParams({ grant_type: "password", username: $("login-user").value,
                                         password: $("login-pass").value });
      const r = await fetch(base + "/auth/token", { method: "POST", body });
      if (!r.ok) {
        $("login-error").textContent = T(r.status === 423 ? "auth.locked" : "auth.failed");
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, (await r.json()).access_token);
      $("login-error").textContent = "";
      form.hidden = true;
      await showAccount();  // no reload: the place picked and the search stay
    });
  }

  function translateStatic() {
    document.querySelectorAll("[data-f]").forEach((el) => { el.textContent = T(el.dataset.f); });
    document.querySelectorAll("[data-f-placeholder]").forEach((el) => { el.placeholder = T(el.dataset.fPlaceholder); });
    document.title = T("title") + " — twin";
    const sel = $("category");
    for (const [code, [cn, en]] of Object.entries(CATEGORIES)) {
      const o = document.createElement("option");
      o.value = code;
      o.textContent = zh() ? cn : en;
      sel.append(o);
    }
    sel.addEventListener("change", () => { $("event-title").value = sel.selectedOptions[0].textContent; });
    $("event-title").value = sel.selectedOptions[0].textContent;
  }

  const distance = (m) => (m >= 1000
    ? (m / 1000).toLocaleString(I.locale(), { maximumFractionDigits: 1 }) + " " + T("km")
    : Math.round(m).toLocaleString(I.locale()) + " " + T("m"));
  const li = (text, sub) => {
    const el = document.createElement("li");
    el.textContent = text;
    if (sub) {
      const s = document.createElement("span");
      s.className = "sub";
      s.textContent = sub;
      el.append(s);
    }
    return el;
  };

  // --- search by name ---
  async function search(q) {
    const list = $("results");
    list.replaceChildren(li(T("loading")));
    list.hidden = false;
    let doc;
    try {
      doc = await json(base + "/search?" + new URLSearchParams({ q, limit: "10" }));
    } catch (err) {
      list.replaceChildren(li(String(err.message || err)));
      return;
    }
    if (!doc.features.length) { list.replaceChildren(li(T("search.none"))); return; }
    list.replaceChildren(...doc.features.map((f) => {
      const p = f.properties;
      const el = li(p.label || p.text, T("layer." + p.layer) + (p.text && p.text !== p.label ? " · " + p.text : ""));
      el.dataset.layer = p.layer;
      el.tabIndex = 0;
      if (f.geometry) el.addEventListener("click", () => {
        list.hidden = true;
        const [lon, lat] = f.geometry.coordinates;
        flyTo(lon, lat, 17);
        setHere(lon, lat);
      });
      return el;
    }));
  }

  /** Fly the map there, once it is drawn (a search or a fix may come before the map does). */
  function flyTo(lon, lat, minZoom) {
    mapReady.then(() => state.map.flyTo({ center: [lon, lat], zoom: Math.max(state.map.getZoom(), minZoom) }));
  }

  // --- where am I: the grid and the nearest devices and cameras ---
  async function setHere(lon, lat) {
    state.here = [lon, lat];
    window.twinField.here = state.here;
    mapReady.then(() => {  // the grid and the neighbours below need no map: they do not wait for it
      if (!state.marker) state.marker = new maplibregl.Marker({ color: "#d9480f" });
      state.marker.setLngLat(state.here).addTo(state.map);
    });
    $("here").hidden = false;
    $("here-point").textContent = lon.toFixed(6) + ", " + lat.toFixed(6);
    updateReport();
    const grid = $("grid");
    grid.replaceChildren();
    const [g, devs, cams] = await Promise.allSettled([
      json(base + "/locate/grid?point=" + lon + "," + lat),
      json(base + "/nearest?" + new URLSearchParams({ lon, lat, layer: "devices", n: "5" })),
      json(base + "/nearest?" + new URLSearchParams({ lon, lat, layer: "cameras", n: "5" })),
    ]);
    if (g.status === "fulfilled") {
      let any = false;
      for (const level of ["unit", "village", "town"]) {
        const f = g.value[level];
        if (!f) continue;
        any = true;
        const dt = document.createElement("dt");
        dt.textContent = T("grid." + level);
        const dd = document.createElement("dd");
        dd.textContent = f.properties.name + (f.properties.code ? " (" + f.properties.code + ")" : "");
        dd.dataset.level = level;
        grid.append(dt, dd);
      }
      if (!any) grid.append(li(T("grid.none")));
    } else {
      grid.append(li(String(g.reason.message)));
    }
    for (const [id, res] of [["near-devices", devs], ["near-cameras", cams]]) {
      const ol = $(id);
      if (res.status !== "fulfilled") { ol.replaceChildren(li(String(res.reason.message))); continue; }
      const feats = res.value.features;
      ol.replaceChildren(...(feats.length ? feats.map((f) => {
        const p = f.properties;
        const what = p.status ? I.value(p.status) : "";  // the name already says what it is
        return li((p.name || p.code || "#" + f.id), distance(p.distance_m) + (what ? " · " + what : ""));
      }) : [li(T("near.none"))]));
    }
    window.twinField.located = (window.twinField.located || 0) + 1;
  }

  function locateMe() {
    if (!navigator.geolocation) { $("status").textContent = T("geo.failed"); return; }
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        const { longitude, latitude } = pos.coords;
        flyTo(longitude, latitude, 16);
        setHere(longitude, latitude);
      },
      () => { $("status").textContent = T("geo.failed"); },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  }

  // --- report an event at the chosen point ---
  function updateReport() {
    const can = !!state.me;
    $("report-form").hidden = !can;
    $("report-need").hidden = can && !!state.here;
    $("report-need").textContent = T(can ? "report.point" : "report.need");
  }

  // --- the photo: scaled on the phone before it goes up (a 5 MB camera picture over 3G takes a minute;
  // 2048 px JPEG a few seconds), then POST /events/{id}/photos; the server cleans it again ---
  const PHOTO_SIDE = 2048;
  async function shrink(file) {
    try {
      const bmp = await createImageBitmap(file, { imageOrientation: "from-image" });
      const scale = Math.min(1, PHOTO_SIDE / Math.max(bmp.width, bmp.height));
      if (scale === 1 && file.size < 1.5e6 && /jpeg|png|webp/.test(file.type)) return file;
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(bmp.width * scale);
      canvas.height = Math.round(bmp.height * scale);
      canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((res) => canvas.toBlob(res, "image/jpeg", 0.85));
      return blob || file;
    } catch (err) {
      return file;  // the browser cannot decode it: let the server decide
    }
  }
  async function uploadPhoto(eventId, file) {
    const form = new FormData();
    form.append("photo", await shrink(file), "photo.jpg");
    return json(`${base}/events/${eventId}/photos`, { method: "POST", body: form });
  }
  async function showPhoto(url) {
    const r = await api(url);  // with the token: an image tag could not send it
    if (!r.ok) return;
    const img = $("report-photo");
    img.src = URL.createObjectURL(await r.blob());
    img.hidden = false;
  }

  async function report(ev) {
    ev.preventDefault();
    const out = $("report-result");
    if (!state.here) { out.textContent = T("report.point"); return; }
    const body = {
      lon: state.here[0], lat: state.here[1], category: $("category").value, source: "grid",
      title: $("event-title").value.trim(), description: $("description").value.trim() || null,
      by: state.me.subject.replace(/^user:/, ""),
    };
    const button = ev.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const f = await json(base + "/events", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      out.className = "ok";
      out.textContent = T("report.ok") + ": " + (f.properties.code || "#" + f.id);
      out.dataset.eventId = f.id;
      out.dataset.eventCode = f.properties.code || "";
      $("description").value = "";
      const file = $("photo").files[0];
      if (file) {
        try {
          const meta = await uploadPhoto(f.id, file);
          out.textContent += "（" + T("photo.ok") + "）";
          out.dataset.photoId = meta.id;
          await showPhoto(meta.url);
          $("photo").value = "";
        } catch (err) {
          out.textContent += " · " + T("photo.failed") + ": " + err.message;
        }
      }
    } catch (err) {
      out.className = "bad";
      out.textContent = T("report.failed") + ": " + err.message;
    } finally {
      button.disabled = false;
    }
  }

  async function start() {
    translateStatic();
    wireLogin();
    const account = showAccount();
    $("lang").addEventListener("click", () => { I.set(zh() ? "en" : "zh"); window.location.reload(); });
    $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("q").value.trim()); });
    $("locate-me").addEventListener("click", locateMe);
    $("report-form").addEventListener("submit", report);
    // first render: the page's own UI is in the DOM, translated and wired; let the browser paint it,
    // then fetch the map library (a request started earlier would share the phone's bandwidth)
    await new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
    resolveReady(performance.now());
    const maplibreLoaded = loadMaplibre();
    const style = await json(base + "/styles/twin.json");
    await maplibreLoaded;  // the style carries its sources' TileJSON fields: no round trip more
    // the orthophoto is off at first on a phone (the heaviest tiles, paid for on mobile data); a tap shows it
    const rasterIds = style.layers.filter((l) => l.type === "raster").map((l) => l.id);
    for (const l of style.layers) if (l.type === "raster") l.layout = { ...(l.layout || {}), visibility: "none" };
    const orthoBox = $("ortho");
    orthoBox.closest("label").hidden = !rasterIds.length;
    const b = style.metadata && style.metadata["twin:bounds"];
    const view = Array.isArray(b) && b.length === 4
      ? { bounds: [[b[0], b[1]], [b[2], b[3]]], fitBoundsOptions: { padding: 8 } }
      : { center: style.center || [0, 0], zoom: style.zoom || 13 };
    const map = new maplibregl.Map({
      container: "map", style, attributionControl: { compact: true }, dragRotate: false, pitchWithRotate: false,
      // Chinese labels drawn with the phone's own CJK font (every phone has one): the server's CJK
      // glyph ranges are ~60 kB each and a first view needs six of them, seconds on a mobile network.
      // Latin letters and digits still come from the twin's /fonts.
      localIdeographFontFamily: LOCAL_CJK_FONTS,
      transformRequest: (url) => ({ url, headers: authHeaders(url) }),
      ...view,
    });
    map.touchZoomRotate.disableRotation();
    state.map = map;
    window.twinMap = map;
    map.on("error", (e) => { window.twinField.errors.push((e && e.error && e.error.message) || String(e)); });
    map.on("click", (e) => setHere(e.lngLat.lng, e.lngLat.lat));
    orthoBox.addEventListener("change", () => {
      for (const id of rasterIds) map.setLayoutProperty(id, "visibility", orthoBox.checked ? "visible" : "none");
    });
    map.once("idle", async () => {
      await account;
      const paint = performance.getEntriesByName("first-contentful-paint")[0];
      window.twinField.firstPaintMs = paint ? paint.startTime : null;  // kept for the benchmark's record
      resolveMap(performance.now());
    });
  }

  start().catch((err) => {
    window.twinField.errors.push(String(err.message || err));
    $("status").textContent = String(err.message || err);
  });
})();
