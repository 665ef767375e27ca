"""Construction sites near the town centre and in the industrial park."""

from __future__ import annotations

import datetime as dt

import numpy as np
import shapely

from sample_data.geo import rect_polygons
from sample_data.layout import Layout
from sample_data.roads import Road

AS_OF = dt.date(2026, 11, 23)
KINDS = ["住宅项目", "商业综合体", "厂房扩建", "道路改造", "学校扩建", "安置房", "仓储物流中心", "污水管网改造"]


def make_sites(rng: np.random.Generator, lay: Layout, roads: list[Road]) -> tuple[list[dict], list]:
    n = max(1, int(round(20 * lay.scale)))
    road_buf = shapely.union_all(shapely.buffer(
        np.array([r.line for r in roads if r.area in ("centre", "park") or r.road_class == "arterial"], dtype=object),
        np.array([r.width / 2 + 4 for r in roads if r.area in ("centre", "park") or r.road_class == "arterial"])))
    shapely.prepare(road_buf)
    geoms, rows = [], []
    cx, cy = lay.centre_xy
    tries = 0
    while len(geoms) < n and tries < 3000:
        tries += 1
        in_park = rng.random() < 0.4
        area = lay.park if in_park else lay.centre.buffer(0.1 * lay.radius)
        minx, miny, maxx, maxy = area.bounds
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        w, d = rng.uniform(60, 200), rng.uniform(50, 140)
        ang = lay.park_angle if in_park else rng.uniform(-0.3, 0.3)
        g = rect_polygons([x], [y], [w], [d], [ang])[0]
        if not area.contains(g) or road_buf.intersects(g) or not lay.zones["urban"].contains(g):
            continue
        if any(g.distance(o) < 30 for o in geoms):
            continue
        geoms.append(g)
    for i, g in enumerate(geoms):
        status = str(rng.choice(["active", "active", "active", "planned", "finished"]))
        if status == "active":
            start = AS_OF - dt.timedelta(days=int(rng.integers(30, 540)))
            end = AS_OF + dt.timedelta(days=int(rng.integers(60, 720)))
            dust = bool(rng.random() < 0.7)
        elif status == "planned":
            start = AS_OF + dt.timedelta(days=int(rng.integers(20, 300)))
            end = start + dt.timedelta(days=int(rng.integers(300, 900)))
            dust = False
        else:
            end = AS_OF - dt.timedelta(days=int(rng.integers(10, 300)))
            start = end - dt.timedelta(days=int(rng.integers(200, 800)))
            dust = bool(rng.random() < 0.85)
        rows.append({
            "code": f"CS{i + 1:04d}",
            "name": f"{['城东', '城西', '园区', '镇北', '镇南', '滨河'][i % 6]}{KINDS[int(rng.integers(len(KINDS)))]}{i + 1:02d}号地块",
            "status": status,
            "area_m2": round(float(g.area), 1),
            "dust_controlled": dust,
            "start_date": start,
            "end_date": end,
        })
    return rows, geoms
