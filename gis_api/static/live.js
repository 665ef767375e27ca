// twin viewer, live layer: devices and events moving on the map through WS /live/ws (docs/live.md).
// The stream sends a snapshot (replaces what we hold) then batches of changes; we keep one Map of
// features and push it to a GeoJSON source at most every FLUSH_MS, so hundreds of readings a
// second cost one setData per interval, not one per reading (no long tasks on the big screen).
// Devices whose reading breaches a threshold flash. The subscription follows the view (the map's bbox,
// re-sent after each move, debounced); event changes refresh the statistics panels.
// window.twinLive exposes the state for tests.
(function () {
  "use strict";
  const I = window.twinI18n;
  const V = window.twinViewer;
  const FLUSH_MS = 250;
  const SOURCE = "live-stream";  // ("twin-live" is the style's vector source of the fast layers)
  const features = new Map();  // "layer/id" -> flattened GeoJSON feature
  const stats = { messages: 0, changes: 0, last: null, connected: false, snapshots: 0, statsRefreshes: 0,
                  bbox: null, subscribed: null };
  let dirty = false;
  let map = null;

  /** One stream feature as the map draws it: scalar properties only (MapLibre keeps no nesting). */
  function flatten(layer, f) {
    const p = f.properties || {};
    const breaches = Array.isArray(p.breaches) ? p.breaches : Object.keys(p.breaches || {});
    const alarm = layer === "devices" && breaches.length > 0;
    return {
      type: "Feature",
      id: undefined,
      geometry: f.geometry,
      properties: {
        layer, code: String(f.id ?? p.code ?? ""), name: p.name || "", kind: p.kind || "",
        status: p.status || "", state: alarm ? "alarm" : (p.status || ""), alarm,
        breaches: breaches.join(","), ts: p.ts || "",
        values: JSON.stringify(p.values || {}),
      },
    };
  }

  function apply(msg) {
    stats.messages += 1;
    if (msg.type === "snapshot") {
      features.clear();
      stats.bbox = msg.bbox || null;
      stats.snapshots += 1;
    }
    let statsChanged = false;
    for (const ch of msg.changes || []) {
      if (!ch.feature) continue;
      const key = `${ch.layer}/${ch.feature.id}`;
      const before = features.get(key);
      if (ch.op === "remove") features.delete(key);
      else if (ch.feature.geometry) features.set(key, flatten(ch.layer, ch.feature));
      if (msg.type === "changes") {
        stats.changes += 1;
        // the statistics panels count events by status and devices online: a new event, an event's
        // step or a device going on/offline changes them (a mere reading does not)
        const after = features.get(key);
        if (ch.layer === "events" || !before || !after || before.properties.status !== after.properties.status) {
          statsChanged = true;
        }
      }
    }
    stats.last = new Date();
    dirty = true;
    if (statsChanged) refreshStatsSoon();
  }

  // statistics refresh: at most one round of count requests per STATS_MS, however many events arrive
  const STATS_MS = 1000;
  let statsTimer = null;
  function refreshStatsSoon() {
    if (statsTimer || !V.refreshStats) return;
    statsTimer = setTimeout(() => {
      statsTimer = null;
      stats.statsRefreshes += 1;
      V.refreshStats();
    }, STATS_MS);
  }

  // --- the subscription follows the view: the map's bounds (a margin around), sent after each move ---
  const VIEW_MS = 400;
  let viewTimer = null;
  function viewBbox() {
    const b = map.getBounds();
    const w = b.getWest(), s = b.getSouth(), e = b.getEast(), n = b.getNorth();
    const mx = (e - w) * 0.1, my = (n - s) * 0.1;  // a margin: things just off screen are there on a pan
    const r = (v) => Math.round(v * 1e6) / 1e6;
    return [r(Math.max(-180, w - mx)), r(Math.max(-90, s - my)), r(Math.min(180, e + mx)), r(Math.min(90, n + my))];
  }
  function followView() {
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => {
      const ws = window.twinLive.socket;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;  // a reconnect subscribes with the view anyway
      const bbox = viewBbox();
      stats.subscribed = bbox;
      ws.send(JSON.stringify({ type: "subscribe", layers: ["devices", "events"], bbox }));
    }, VIEW_MS);
  }

  function flush() {
    if (!dirty || !map || !map.getSource(SOURCE)) return;
    dirty = false;
    map.getSource(SOURCE).setData({ type: "FeatureCollection", features: [...features.values()] });
    renderCounters();
  }

  function counts() {
    let online = 0, alarms = 0, devices = 0, events = 0;
    for (const f of features.values()) {
      const p = f.properties;
      if (p.layer === "devices") {
        devices += 1;
        if (p.status === "online") online += 1;
        if (p.alarm) alarms += 1;
      } else if (p.layer === "events" && p.status !== "closed") events += 1;
    }
    return { devices, online, alarms, events };
  }

  let alarmCount = 0;
  function renderCounters() {
    const box = document.getElementById("live");
    const c = counts();
    alarmCount = c.alarms;
    if (!box) return;
    const fmt = (n) => n.toLocaleString(I.locale());
    const rows = [
      ["live.updates", fmt(stats.changes), "updates"], ["live.online", `${fmt(c.online)} / ${fmt(c.devices)}`, "online"],
      ["live.alarms", fmt(c.alarms), "alarms"], ["live.events", fmt(c.events), "events"],
    ];
    box.innerHTML = "";
    for (const [key, value, name] of rows) {
      const row = document.createElement("div");
      row.className = "live-row " + name + (name === "alarms" && c.alarms ? " hot" : "");
      row.dataset.counter = name;
      const t = document.createElement("span"); t.textContent = I.t(key);
      const v = document.createElement("b"); v.textContent = value;
      row.append(t, v);
      box.append(row);
    }
    const when = document.createElement("div");
    when.className = "live-when";
    when.textContent = (stats.connected ? I.t("live.connected") : I.t("live.disconnected")) +
      (stats.last ? " · " + stats.last.toLocaleTimeString(I.locale(), { hour12: false }) : "");
    box.append(when);
  }

  function addLayers() {
    map.addSource(SOURCE, { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    // alarms: a halo under the dot whose opacity the flasher toggles
    map.addLayer({ id: "live-alarm", type: "circle", source: SOURCE,
                   filter: ["==", ["get", "alarm"], true],
                   paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 9, 17, 18],
                            "circle-color": "#ff1744", "circle-opacity": 0.75,  // = the flasher's "on"
                            "circle-opacity-transition": { duration: 300 },
                            "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } });
    map.addLayer({ id: "live-devices", type: "circle", source: SOURCE,
                   filter: ["==", ["get", "layer"], "devices"],
                   paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 3, 17, 7],
                            "circle-color": ["match", ["get", "state"], "alarm", "#ff1744", "online", "#00e676",
                                             "offline", "#9e9e9e", "fault", "#ffab00", "#00e676"],
                            "circle-stroke-color": "#06121f", "circle-stroke-width": 1 } });
    map.addLayer({ id: "live-events", type: "circle", source: SOURCE,
                   filter: ["all", ["==", ["get", "layer"], "events"], ["!=", ["get", "status"], "closed"]],
                   paint: { "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 5, 17, 10],
                            "circle-color": "#ff9100", "circle-stroke-color": "#ffffff", "circle-stroke-width": 2 } });
    let on = true;
    setInterval(() => {  // flashing alarms: a paint property flip, no data upload
      // no alarm, no flip: a map with nothing to flash stays still (no repaint twice a second)
      if (!on || alarmCount > 0) on = !on; else return;
      if (map.getLayer("live-alarm")) map.setPaintProperty("live-alarm", "circle-opacity", on ? 0.75 : 0.1);
    }, 600);
    setInterval(flush, FLUSH_MS);
  }

  function connect(delay) {
    const url = new URL(V.base.replace(/^http/, "ws") + "/live/ws");
    url.searchParams.set("layers", "devices,events");
    stats.subscribed = viewBbox();
    url.searchParams.set("bbox", stats.subscribed.join(","));
    const tok = sessionStorage.getItem("twin.token");
    if (tok) url.searchParams.set("access_token", tok);
    const ws = new WebSocket(url.href);
    window.twinLive.socket = ws;
    ws.onopen = () => { stats.connected = true; delay = 1000; renderCounters(); };
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "error") { window.twinLive.error = msg; return; }
      apply(msg);
    };
    ws.onclose = (e) => {
      stats.connected = false;
      renderCounters();
      if (e.code === 1008) return;  // a filter this user may not follow: no point in retrying
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    };
  }

  window.twinLive = {
    features, stats, counts,
    /** the flattened feature of a thing by layer and code (tests, other panels) */
    get: (layer, code) => features.get(`${layer}/${code}`) || null,
    flushNow: () => { dirty = true; flush(); },
  };

  // once the map's style is parsed, before its tiles are asked for (viewer.js, styleLoaded): the
  // layers are part of the first full render, and the stream's snapshot arrives while tiles load
  V.styleLoaded.then((m) => {
    try {
      map = m;
      addLayers();
      renderCounters();
      connect(1000);
      map.on("moveend", followView);
    } catch (err) {
      V.errors.push("live: " + err);
      console.error("twin live:", err);
    }
  });
})();
