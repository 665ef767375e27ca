// twin 3D scene: CesiumJS over the twin's own terrain (/terrain), orthophoto (/raster/ortho)
// and 3D Tiles (/scenes/tileset.json); a click on a feature shows its layer, id and card.
// Nothing comes from Cesium ion or a CDN.
// window.twinScene = { viewer, ready, errors, tilesLoaded(), pickAt(x, y) } for scripts and tests.
// Camera from the URL: #camera=lon,lat,height,headingDeg,pitchDeg
(function () {
  "use strict";
  const base = new URL(".", window.location.href).href.replace(/\/$/, "");
  const status = document.getElementById("status");
  const setStatus = (t) => { status.textContent = t; };
  const errors = [];
  const fail = (what) => (e) => {
    const msg = what + ": " + ((e && (e.message || e.error && e.error.message)) || String(e));
    errors.push(msg);
    setStatus(msg);
  };

  const viewer = new Cesium.Viewer("globe", {
    baseLayer: false,          // no ion imagery: the orthophoto is added below
    baseLayerPicker: false,
    geocoder: false,           // the ion geocoder
    homeButton: false,
    sceneModePicker: false,
    navigationHelpButton: false,
    animation: false,
    timeline: false,
    fullscreenButton: false,
    infoBox: false,
    selectionIndicator: false,
    msaaSamples: 1,
  });
  const scene = viewer.scene;
  scene.globe.baseColor = Cesium.Color.fromCssColorString("#2d3b2f");
  scene.globe.depthTestAgainstTerrain = true;
  scene.globe.enableLighting = false;

  let tileset = null;
  let resolveReady, rejectReady;
  const ready = new Promise((res, rej) => { resolveReady = res; rejectReady = rej; });
  window.twinScene = {
    viewer, ready, errors,
    get tileset() { return tileset; },
    tilesLoaded() { return scene.globe.tilesLoaded && (!tileset || tileset.tilesLoaded); },
    pickAt(x, y) { return describe(scene.pick(new Cesium.Cartesian2(x, y))); },
  };

  function cameraFromHash() {
    const m = /camera=([-\d.]+),([-\d.]+),([-\d.]+)(?:,([-\d.]+),([-\d.]+))?/.exec(location.hash);
    if (!m) return null;
    return {
      destination: Cesium.Cartesian3.fromDegrees(+m[1], +m[2], +m[3]),
      orientation: { heading: Cesium.Math.toRadians(+(m[4] || 0)), pitch: Cesium.Math.toRadians(+(m[5] || -90)), roll: 0 },
    };
  }

  function lookAtTown(bounds) {
    const [w, s, e, n] = bounds;
    const lon = (w + e) / 2, lat = (s + n) / 2;
    const span = Math.max((e - w) * Math.cos(lat * Math.PI / 180), n - s) * 111320;
    viewer.camera.setView({
      destination: Cesium.Cartesian3.fromDegrees(lon, lat - span * 0.9 / 111320, span * 0.8),
      orientation: { heading: 0, pitch: Cesium.Math.toRadians(-40), roll: 0 },
    });
  }

  async function addTerrain() {
    const layer = await (await fetch(base + "/terrain/layer.json")).json();
    const terrain = await Cesium.CesiumTerrainProvider.fromUrl(base + "/terrain", { requestVertexNormals: true });
    terrain.errorEvent.addEventListener(fail("terrain"));
    scene.terrainProvider = terrain;
    return layer;
  }

  async function addOrtho() {
    const r = await fetch(base + "/raster/ortho/info");
    if (!r.ok) return;  // no orthophoto loaded: the globe keeps its base colour
    const info = await r.json();
    const provider = new Cesium.UrlTemplateImageryProvider({
      url: base + "/raster/ortho/{z}/{x}/{y}.webp",
      tilingScheme: new Cesium.WebMercatorTilingScheme(),
      rectangle: Cesium.Rectangle.fromDegrees(...info.bounds),
      minimumLevel: 0,
      maximumLevel: info.maxzoom,
      credit: "twin orthophoto",
    });
    provider.errorEvent.addEventListener(fail("orthophoto"));
    viewer.imageryLayers.addImageryProvider(provider);
  }

  async function addTileset() {
    const head = await fetch(base + "/scenes/tileset.json", { method: "GET" });
    if (!head.ok) { setStatus("no 3D tileset: " + head.status); return; }
    tileset = await Cesium.Cesium3DTileset.fromUrl(base + "/scenes/tileset.json", { maximumScreenSpaceError: 8 });
    tileset.tileFailed.addEventListener(fail("3D tiles"));
    scene.primitives.add(tileset);
  }

  // --- picking --------------------------------------------------------------------------------
  function describe(picked) {
    if (!(picked instanceof Cesium.Cesium3DTileFeature)) return null;
    const layer = picked.getProperty("layer"), id = picked.getProperty("id");
    if (layer === undefined || id === undefined) return null;
    return { layer: String(layer), id: String(id), feature: picked };
  }

  let highlighted = null;
  const card = document.getElementById("card");
  async function showCard(hit) {
    if (highlighted) highlighted.color = Cesium.Color.WHITE;
    highlighted = null;
    if (!hit) { card.hidden = true; return; }
    highlighted = hit.feature;
    hit.feature.color = Cesium.Color.YELLOW;
    const href = `${base}/collections/${encodeURIComponent(hit.layer)}/items/${encodeURIComponent(hit.id)}`;
    document.getElementById("card-title").textContent = `${hit.layer} #${hit.id}`;
    const link = document.getElementById("card-link");
    link.href = href;
    link.textContent = `/collections/${hit.layer}/items/${hit.id}`;
    const table = document.getElementById("card-props");
    table.replaceChildren();
    card.hidden = false;
    try {
      const r = await fetch(href, { headers: { Accept: "application/geo+json" } });
      if (!r.ok) throw new Error(`${r.status}`);
      const props = (await r.json()).properties || {};
      for (const [k, v] of Object.entries(props)) {
        const tr = table.insertRow();
        tr.insertCell().textContent = k;
        tr.insertCell().textContent = v === null ? "—" : String(v);
      }
    } catch (e) {
      fail("feature card")(e);
    }
  }

  // underground: a see-through ground shows the pipes at their depth; the camera may go below it
  function setUnderground(on) {
    scene.globe.translucency.enabled = on;
    scene.globe.translucency.frontFaceAlpha = 0.35;
    scene.globe.translucency.backFaceAlpha = 0.35;
    scene.screenSpaceCameraController.enableCollisionDetection = !on;
  }
  document.getElementById("toggle-underground").addEventListener("change", (e) => setUnderground(e.target.checked));
  window.twinScene.setUnderground = setUnderground;

  new Cesium.ScreenSpaceEventHandler(scene.canvas).setInputAction(
    (click) => showCard(describe(scene.pick(click.position))),
    Cesium.ScreenSpaceEventType.LEFT_CLICK,
  );

  (async () => {
    const layer = await addTerrain();
    const camera = cameraFromHash();
    if (camera) viewer.camera.setView(camera); else lookAtTown(layer.bounds);
    await addOrtho();
    await addTileset();
    setStatus("ready");
    resolveReady();
  })().catch((e) => { fail("scene")(e); rejectReady(e); });
})();
