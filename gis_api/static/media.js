// twin viewer, feature-card extras: a camera plays its video (HLS through hls.js, or natively
// where the browser can) and shows its view cone on the map; a device shows its recent readings
// as a chart (Chart.js, means per 15 minutes from /live/devices/{code}/history).
(function () {
  "use strict";
  const I = window.twinI18n;
  const V = window.twinViewer;
  const CONE = "camera-cone";
  const state = { hls: null, chart: null, video: null };
  window.twinMedia = state;

  function stopMedia() {
    if (state.hls) { state.hls.destroy(); state.hls = null; }
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    state.video = null;
    const map = window.twinMap;
    if (map && map.getSource(CONE)) map.getSource(CONE).setData({ type: "FeatureCollection", features: [] });
  }

  // hls.js and Chart.js load when a card first needs them, not with the page: 234 kB the first view
  // of the big screen does not use (a <script> of this server: the page's CSP allows it)
  const loading = {};
  function load(src, global) {
    if (window[global]) return Promise.resolve(window[global]);
    if (!loading[src]) {
      loading[src] = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = src;
        s.onload = () => resolve(window[global]);
        s.onerror = () => { delete loading[src]; reject(new Error("could not load " + src)); };
        document.head.append(s);
      });
    }
    return loading[src];
  }
  const HLS_JS = "static/vendor/hls.js/dist/hls.min.js", CHART_JS = "static/vendor/chart.js/dist/chart.umd.min.js";

  function note(box, key) {
    const p = document.createElement("p");
    p.className = "card-note";
    p.textContent = I.t(key);
    box.append(p);
  }

  async function playCamera(code, props, box) {
    // a role that hides the stream URL (a guest) gets no play URLs either: don't ask in vain
    if (!props.stream_url) { note(box, "card.no_video"); return; }
    const video = document.createElement("video");
    video.id = "card-video";
    video.muted = true;        // autoplay needs it
    video.autoplay = true;
    video.playsInline = true;
    video.controls = true;
    box.append(video);
    state.video = video;
    const r = await V.api(`${V.base}/cameras/${encodeURIComponent(code)}/streams`);
    if (!r.ok) { video.remove(); note(box, "card.no_video"); return; }
    const url = (await r.json()).streams.hls;
    if (!url) { video.remove(); note(box, "card.no_video"); return; }
    // hls.js wherever Media Source Extensions exist (it sends the token; native HLS could not)
    if (window.MediaSource || window.ManagedMediaSource) await load(HLS_JS, "Hls");
    if (state.video !== video) return;  // the card changed while hls.js loaded
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({
        liveSyncDurationCount: 2,
        // the token rides along to this server's /video (a stream hidden from guests needs it)
        xhrSetup: (xhr, u) => {
          const tok = sessionStorage.getItem("twin.token");
          if (tok && new URL(u, location.href).origin === location.origin) xhr.setRequestHeader("Authorization", "Bearer " + tok);
        },
      });
      state.hls = hls;
      hls.on(window.Hls.Events.ERROR, (_e, data) => {
        if (data.fatal) { note(box, "card.video_failed"); hls.destroy(); if (state.hls === hls) state.hls = null; }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;  // Safari plays HLS itself
    } else {
      note(box, "card.no_video");
    }
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  }

  async function drawCone(code) {
    const map = window.twinMap;
    const r = await V.api(`${V.base}/cameras/${encodeURIComponent(code)}/cone`);
    if (!r.ok || !map) return;
    const cone = await r.json();
    if (!map.getSource(CONE)) {
      map.addSource(CONE, { type: "geojson", data: cone });
      map.addLayer({ id: "camera-cone-fill", type: "fill", source: CONE,
                     paint: { "fill-color": "#40c4ff", "fill-opacity": 0.3 } });
      map.addLayer({ id: "camera-cone-line", type: "line", source: CONE,
                     paint: { "line-color": "#40c4ff", "line-width": 2 } });
    } else {
      map.getSource(CONE).setData(cone);
    }
  }

  async function chartDevice(code, box) {
    const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    const r = await V.api(`${V.base}/live/devices/${encodeURIComponent(code)}/history?interval=15m&datetime=${since}/..`);
    if (!r.ok) { note(box, "card.no_readings"); return; }
    const body = await r.json();
    const buckets = body.aggregates || [];
    const metrics = [...new Set(buckets.flatMap((b) => Object.keys(b.metrics || {})))].sort();
    if (!buckets.length || !metrics.length) { note(box, "card.no_readings"); return; }
    await load(CHART_JS, "Chart");
    if (!box.isConnected) return;
    const canvas = document.createElement("canvas");
    canvas.id = "card-chart";
    canvas.height = 180;
    const wrap = document.createElement("div");
    wrap.className = "card-chart";
    wrap.append(canvas);
    box.append(wrap);
    const colours = ["#7cc4ff", "#ffab40", "#69f0ae", "#ff5252"];
    const val = (b, m) => (b.metrics[m] ? b.metrics[m].mean : null);  // a gap where a bucket lacks the metric
    state.chart = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: buckets.map((b) => new Date(b.start).toLocaleTimeString(I.locale(), { hour: "2-digit", minute: "2-digit", hour12: false })),
        datasets: metrics.map((m, i) => ({ label: I.metric(m), data: buckets.map((b) => val(b, m)),
                                           borderColor: colours[i % colours.length], pointRadius: 2, tension: 0.2 })),
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { labels: { color: "#dfe8f2" } },
                   title: { display: true, text: I.t("card.readings"), color: "#7fa6c9" } },
        scales: { x: { ticks: { color: "#7fa6c9" }, grid: { color: "#1d3a5a" } },
                  y: { ticks: { color: "#7fa6c9" }, grid: { color: "#1d3a5a" } } },
      },
    });
  }

  V.cardExtras.push((layer, props, box) => {
    stopMedia();  // a new card, or the card closed (layer null)
    const code = props.code;
    if (!code) return;
    if (layer === "cameras") {
      playCamera(code, props, box).catch((err) => V.errors.push("video: " + err));
      drawCone(code).catch((err) => V.errors.push("cone: " + err));
    } else if (layer === "devices") {
      chartDevice(code, box).catch((err) => V.errors.push("chart: " + err));
    }
  });
})();
