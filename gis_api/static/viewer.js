// twin big-screen viewer: draws /styles/twin.json with MapLibre, layer toggles, feature cards.
// window.twinMap is the map; window.twinViewer.ready resolves once the style and its tiles load.
(function () {
  "use strict";
  const base = new URL(".", window.location.href).href.replace(/\/$/, "");
  const status = document.getElementById("status");
  const setStatus = (t) => { status.textContent = t; };

  const map = new maplibregl.Map({
    container: "map",
    style: base + "/styles/twin.json",
    hash: true,
    attributionControl: { compact: true },
    pitch: 45,
    maxPitch: 75,
  });
  window.twinMap = map;
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }), "top-left");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");

  let resolveReady, rejectReady;
  const ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
  window.twinViewer = { ready, errors: [] };

  map.on("error", (e) => {
    const msg = (e && e.error && e.error.message) || String(e);
    window.twinViewer.errors.push(msg);
    setStatus("error: " + msg);
  });

  // twin layer id (the vector tile source-layer) -> style layer ids drawing it
  function styleLayersBySourceLayer() {
    const groups = new Map();
    for (const l of map.getStyle().layers) {
      const key = l["source-layer"] || (l.type === "raster" ? l.source : null);
      if (!key) continue;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(l.id);
    }
    return groups;
  }

  async function buildLayerList() {
    const list = document.getElementById("layer-list");
    list.innerHTML = "";
    let titles = {}, counts = {};
    try {
      const doc = await (await fetch(base + "/collections")).json();
      for (const c of doc.collections) { titles[c.id] = c.title; counts[c.id] = c.numberOfFeatures; }
    } catch (err) { /* the map still works without the catalogue */ }
    for (const [key, ids] of styleLayersBySourceLayer()) {
      const li = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = ids.some((id) => map.getLayoutProperty(id, "visibility") !== "none");
      box.dataset.layer = key;
      box.addEventListener("change", () => {
        for (const id of ids) map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
      });
      const label = document.createElement("label");
      label.append(box, " " + (titles[key] || key));
      li.append(label);
      if (counts[key] !== undefined) {
        const span = document.createElement("span");
        span.className = "count";
        span.textContent = counts[key].toLocaleString();
        li.append(span);
      }
      list.append(li);
    }
  }

  async function showCard(feature) {
    const layer = feature.sourceLayer;
    const card = document.getElementById("card");
    const table = document.getElementById("card-props");
    let props = feature.properties;
    if (layer && feature.id !== undefined) {
      try {
        const r = await fetch(`${base}/collections/${layer}/items/${feature.id}`);
        if (r.ok) props = (await r.json()).properties;
      } catch (err) { /* fall back to the tile's attributes */ }
    }
    document.getElementById("card-title").textContent = `${layer} #${feature.id ?? ""}`;
    table.innerHTML = "";
    for (const [k, v] of Object.entries(props)) {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = k;
      const b = document.createElement("td"); b.textContent = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
      tr.append(a, b);
      table.append(tr);
    }
    card.hidden = false;
  }

  map.on("click", (e) => {
    const feats = map.queryRenderedFeatures(e.point).filter((f) => f.sourceLayer);
    if (feats.length) showCard(feats[0]);
  });
  map.on("mousemove", (e) => {
    const hit = map.queryRenderedFeatures(e.point).some((f) => f.sourceLayer);
    map.getCanvas().style.cursor = hit ? "pointer" : "";
  });

  document.getElementById("toggle-3d").addEventListener("change", (ev) => {
    map.easeTo({ pitch: ev.target.checked ? 45 : 0 });
  });

  map.once("load", async () => {
    await buildLayerList();
    setStatus("loaded");
  });
  map.once("idle", () => resolveReady(true));
  setTimeout(() => rejectReady(new Error("map did not become idle in 60 s")), 60000);
})();
