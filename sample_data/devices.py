"""IoT devices (000 App. A) and video cameras, placed where they would be installed."""

from __future__ import annotations

import datetime as dt

import numpy as np

from sample_data import places

DEVICE_KINDS = {
    # kind: (count at scale 1, metrics, thresholds, code prefix, Chinese name)
    "dust": (60, ["pm10", "pm25"], {"pm10": 150.0, "pm25": 75.0}, "YC", "扬尘监测仪"),
    "water_level": (40, ["water_level_m"], {"water_level_m": 3.2}, "SW", "水位监测仪"),
    "smoke": (150, ["smoke_density", "temperature_c"], {"smoke_density": 0.1, "temperature_c": 57.0}, "YG", "烟感报警器"),
    "gas": (100, ["lel_pct"], {"lel_pct": 20.0}, "RQ", "可燃气体探测器"),
    "voltage": (80, ["voltage_v", "current_a"], {"voltage_v": 242.0}, "DY", "电压监测终端"),
    "ev_charger": (70, ["power_kw", "energy_kwh"], {"power_kw": 130.0}, "CD", "充电桩"),
}
EPOCH = dt.date(2019, 1, 1)
AS_OF = dt.date(2026, 11, 23)


def _status(rng, n, p=(0.9, 0.06, 0.04)):
    return rng.choice(["online", "offline", "fault"], size=n, p=list(p))


def make_devices(rng, lay, ctx) -> tuple[list[dict], np.ndarray]:
    """``ctx``: dict of local geometry arrays (sites, bldg_centre, bldg_commercial, arterials, centre_roads,
    rain_low_nodes, gas_nodes, power_nodes, hamlet_centres)."""
    rows, pts = [], []
    for kind, (n1, metrics, thr, pfx, cn) in DEVICE_KINDS.items():
        n = max(1, int(round(n1 * lay.scale)))
        if kind == "dust":
            a = n // 2
            p = np.vstack([places.near_polys(rng, ctx["sites"], a, (3.0, 15.0)) if len(ctx["sites"]) else
                           places.on_lines(rng, ctx["centre_roads"], a, (8, 14)),
                           places.on_lines(rng, ctx["arterials"], n - a, (14, 20))])
        elif kind == "water_level":
            a = n // 2
            low = ctx["rain_low_nodes"]
            b = low[rng.integers(0, len(low), n - a)] + rng.normal(0, 1.5, (n - a, 2)) if len(low) else \
                places.river_bank(rng, lay.terrain, n - a, lay.town)
            p = np.vstack([places.river_bank(rng, lay.terrain, a, lay.town, gap=(1.0, 4.0)), b])
        elif kind == "smoke":
            p = places.near_polys(rng, ctx["bldg_centre"], n)
        elif kind == "gas":
            a = int(n * 0.6)
            gn = ctx["gas_nodes"]
            b = gn[rng.integers(0, len(gn), n - a)] + rng.normal(0, 1.0, (n - a, 2)) if len(gn) else \
                places.near_polys(rng, ctx["bldg_commercial"], n - a)
            p = np.vstack([places.near_polys(rng, ctx["bldg_commercial"], a), b])
        elif kind == "voltage":
            a = n // 2
            pn = ctx["power_nodes"]
            b = pn[rng.integers(0, len(pn), a)] + rng.normal(0, 2.0, (a, 2)) if len(pn) else \
                places.on_lines(rng, ctx["centre_roads"], a, (8, 12))
            hc = ctx["hamlet_centres"]
            c = hc[rng.integers(0, len(hc), n - a)] + rng.normal(0, 10, (n - a, 2)) if len(hc) else \
                places.on_lines(rng, ctx["centre_roads"], n - a, (8, 12))
            p = np.vstack([b, c])
        else:
            p = places.on_lines(rng, ctx["centre_roads"], n, (9, 14))
        status = _status(rng, n)
        days = rng.integers(0, (AS_OF - EPOCH).days - 20, n)
        for k in range(n):
            rows.append({
                "code": f"IOT{pfx}{k + 1:05d}", "name": f"{cn}{k + 1:03d}", "kind": kind,
                "metrics": list(metrics), "thresholds": dict(thr), "status": str(status[k]),
                "installed_on": EPOCH + dt.timedelta(days=int(days[k])),
            })
        pts.append(p)
    return rows, np.vstack(pts)


CAMERA_TAGS = {
    "intersection": ["traffic", "intersection"], "village_entrance": ["village_entrance", "security"],
    "river": ["river", "flood"], "construction": ["construction", "dust"], "park_gate": ["industrial_park", "traffic"],
}


DEMO_HLS = "/video/demo/index.m3u8"


def _gb28181_id(k: int) -> str:
    """A 20-digit GB/T 28181 id: centre code 32058110 (a township of Changshu, Jiangsu), industry
    00 (public-security road cameras), type 132 (network camera), network 0, serial number k."""
    return f"32058110001320{k:06d}"


def make_cameras(rng, lay, ctx) -> tuple[list[dict], np.ndarray]:
    n = max(2, int(round(200 * lay.scale)))
    shares = [("intersection", 0.45), ("village_entrance", 0.25), ("river", 0.15), ("construction", 0.1),
              ("park_gate", 0.05)]
    counts = [max(1, int(round(n * s))) for _, s in shares]
    rows, pts = [], []
    k = 0
    for (place, _), m in zip(shares, counts, strict=True):
        if place == "intersection":
            src = ctx["centre_junctions"]
            p = src[rng.integers(0, len(src), m)] + rng.normal(0, 6, (m, 2)) if len(src) else \
                places.on_lines(rng, ctx["centre_roads"], m, (6, 10))
        elif place == "village_entrance":
            src = ctx["hamlet_entrances"]
            p = src[rng.integers(0, len(src), m)] + rng.normal(0, 4, (m, 2)) if len(src) else \
                places.on_lines(rng, ctx["arterials"], m, (8, 12))
        elif place == "river":
            p = places.river_bank(rng, lay.terrain, m, lay.town, gap=(3.0, 10.0))
        elif place == "construction":
            p = places.near_polys(rng, ctx["sites"], m, (2.0, 6.0)) if len(ctx["sites"]) else \
                places.on_lines(rng, ctx["centre_roads"], m, (6, 10))
        else:
            p = places.on_lines(rng, ctx["park_roads"], m, (8, 12)) if len(ctx["park_roads"]) else \
                places.on_lines(rng, ctx["arterials"], m, (8, 12))
        status = _status(rng, m, (0.92, 0.06, 0.02))
        for j in range(m):
            k += 1
            code = f"CAM{k:05d}"
            u = rng.random()
            if u < 0.65:
                proto, url = "rtsp", f"rtsp://127.0.0.1:8554/cam/{code}"
            elif u < 0.9:
                proto, url = "hls", f"http://127.0.0.1:8888/cam/{code}/index.m3u8"
            else:
                proto, url = "gb28181", f"rtsp://127.0.0.1:8554/gb28181/{_gb28181_id(k)}"
            ptz = rng.random() < 0.2
            rows.append({
                "code": code, "name": f"{['路口', '村口', '河道', '工地', '园区'][[s[0] for s in shares].index(place)]}监控{k:03d}",
                "heading_deg": round(float(rng.uniform(0, 360)), 1),
                "fov_deg": 360.0 if ptz else round(float(rng.uniform(45, 110)), 1),
                "range_m": round(float(rng.uniform(60, 200) if ptz else rng.uniform(40, 150)), 1),
                "mount_height_m": round(float(rng.uniform(4, 12)), 1),
                "stream_url": url, "protocol": proto,
                # every sample camera also plays the demo's synthetic HLS stream (`twin demo`)
                "streams": {"hls": DEMO_HLS}, "gb28181_id": _gb28181_id(k),
                "tags": CAMERA_TAGS[place] + (["ptz"] if ptz else []),
                "status": str(status[j]),
            })
        pts.append(p)
    return rows, np.vstack(pts)
