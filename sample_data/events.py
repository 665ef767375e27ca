"""Past events over the twelve months before 2026-11-23 with a closed-loop status."""

from __future__ import annotations

import datetime as dt

import numpy as np

from sample_data import places

AS_OF = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
SOURCES = {"hotline_12345": 0.3, "city_management": 0.25, "grid": 0.25, "iot_alarm": 0.12, "public_opinion": 0.08}
# category: (Chinese name, where it happens)
CATEGORIES = {
    "illegal_parking": ("违章停车", "road"), "garbage": ("垃圾堆放", "building"), "road_damage": ("道路破损", "road"),
    "water_leak": ("供水管道漏水", "water"), "noise": ("噪声扰民", "building"),
    "illegal_construction": ("违法搭建", "hamlet"), "dust": ("扬尘污染", "site"), "river_pollution": ("河道漂浮物", "river"),
    "illegal_stall": ("占道经营", "road"), "manhole_cover": ("井盖缺失", "node"), "waterlogging": ("道路积水", "road"),
    "streetlight": ("路灯不亮", "road"), "straw_burning": ("秸秆焚烧", "farm"),
}
CAT_W = np.array([14, 14, 8, 5, 7, 8, 6, 4, 9, 4, 5, 5, 3], float)
ALARM_CAT = {"dust": "dust", "water_level": "waterlogging", "smoke": "fire_hazard", "gas": "gas_leak",
             "voltage": "power_anomaly", "ev_charger": "charger_fault"}
ALARM_CN = {"dust": "PM10超标报警", "waterlogging": "水位超警戒报警", "fire_hazard": "烟感报警", "gas_leak": "可燃气体浓度超限",
            "power_anomaly": "电压异常", "charger_fault": "充电桩故障"}
STATUSES = ["reported", "verified", "dispatched", "handled", "closed"]
SOURCE_CN = {"hotline_12345": "12345热线", "city_management": "城管巡查", "grid": "网格员上报", "iot_alarm": "物联感知",
             "public_opinion": "网络舆情"}


def make_events(rng, lay, ctx, devices: list[dict], device_xy: np.ndarray) -> tuple[list[dict], np.ndarray]:
    n = max(5, int(round(2000 * lay.scale)))
    src = rng.choice(list(SOURCES), size=n, p=np.array(list(SOURCES.values())))
    cats = np.array(list(CATEGORIES))
    cat = rng.choice(cats, size=n, p=CAT_W / CAT_W.sum())
    pts = np.zeros((n, 2))
    dev = [None] * n
    for c, (_, where) in CATEGORIES.items():
        idx = np.flatnonzero((cat == c) & (src != "iot_alarm"))
        m = len(idx)
        if m == 0:
            continue
        if where == "road":
            p = places.on_lines(rng, ctx["event_roads"], m, (2, 8))
        elif where == "building":
            p = places.near_polys(rng, ctx["bldg_all"], m, (2.0, 8.0))
        elif where == "hamlet":
            p = places.near_polys(rng, ctx["bldg_hamlet"], m, (1.0, 6.0)) if len(ctx["bldg_hamlet"]) else \
                places.near_polys(rng, ctx["bldg_all"], m, (1.0, 6.0))
        elif where == "site":
            p = places.near_polys(rng, ctx["sites"], m, (0.0, 20.0)) if len(ctx["sites"]) else \
                places.on_lines(rng, ctx["event_roads"], m, (2, 8))
        elif where == "river":
            p = places.river_bank(rng, lay.terrain, m, lay.town, gap=(0.0, 15.0))
        elif where == "water":
            wn = ctx["water_nodes"]
            p = wn[rng.integers(0, len(wn), m)] + rng.normal(0, 3, (m, 2))
        elif where == "node":
            nn = ctx["all_nodes"]
            p = nn[rng.integers(0, len(nn), m)]
        else:
            p = places.near_polys(rng, ctx["farmland"], m) if len(ctx["farmland"]) else \
                places.near_polys(rng, ctx["bldg_all"], m, (5.0, 30.0))
        pts[idx] = p
    alarm = np.flatnonzero(src == "iot_alarm")
    di = rng.integers(0, len(devices), len(alarm))
    for i, d in zip(alarm.tolist(), di.tolist(), strict=True):
        pts[i] = device_xy[d]
        dev[i] = devices[d]["code"]
    cat = cat.astype(object)
    for i, d in zip(alarm.tolist(), di.tolist(), strict=True):
        cat[i] = ALARM_CAT[devices[d]["kind"]]
    # time: uniform over 365 days, daytime-weighted hours (Beijing time = UTC+8)
    day = rng.integers(0, 365, n)
    hour_w = np.array([1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 9, 8, 7, 8, 9, 9, 9, 8, 7, 6, 5, 4, 2, 1], float)
    hour_bj = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    secs = rng.integers(0, 3600, n)
    base = AS_OF - dt.timedelta(days=365)
    reported = [base + dt.timedelta(days=int(d), hours=int(h) - 8, seconds=int(s))
                for d, h, s in zip(day, hour_bj, secs, strict=True)]
    order = np.argsort(np.array([r.timestamp() for r in reported]), kind="stable")
    rows = []
    out_pts = np.zeros_like(pts)
    for k, i in enumerate(order.tolist()):
        r = reported[i]
        age_days = (AS_OF - r).total_seconds() / 86400
        if age_days > 14:
            status = "closed" if rng.random() < 0.97 else "handled"
        else:
            status = str(rng.choice(STATUSES, p=[0.15, 0.15, 0.2, 0.2, 0.3]))
        closed = None
        if status == "closed":
            hours = float(np.clip(rng.lognormal(np.log(20), 0.9), 0.5, 24 * 20))
            closed = min(r + dt.timedelta(hours=hours), AS_OF - dt.timedelta(minutes=5))
            if closed <= r:
                closed = r + dt.timedelta(minutes=10)
                if closed > AS_OF:
                    status, closed = "handled", None
        c = str(cat[i])
        cn = ALARM_CN.get(c) if src[i] == "iot_alarm" else CATEGORIES.get(c, (c, ""))[0]
        title = f"{cn}（{dev[i]}）" if dev[i] else f"{SOURCE_CN[str(src[i])]}：{cn}"
        rows.append({
            "code": f"SJ{r.astimezone(dt.timezone(dt.timedelta(hours=8))):%Y%m%d}{k + 1:06d}",
            "source": str(src[i]), "category": c, "title": title,
            "description": f"{SOURCE_CN[str(src[i])]}于{r.astimezone(dt.timezone(dt.timedelta(hours=8))):%m月%d日%H:%M}"
                           f"上报{cn}，请相关部门核实处置。",
            "status": status, "device_code": dev[i], "reported_at": r, "closed_at": closed,
        })
        out_pts[k] = pts[i]
    return rows, out_pts
