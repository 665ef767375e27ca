"""Road network: arterials through the centre, collectors linking villages, street grids, hamlet lanes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from shapely.geometry.base import BaseGeometry

from sample_data.layout import Layout
from sample_data.names import ARTERIALS, PARK_STREETS, STREETS, street_name
from sample_data.villages import Village

WIDTH = {"arterial": 24.0, "collector": 12.0, "local": 7.0, "lane": 4.0}


@dataclass
class Road:
    line: BaseGeometry
    road_class: str  # arterial|collector|local
    name: str
    area: str  # centre|park|rural|hamlet
    width: float
    village: int | None = None
    hamlet: int | None = None  # index into the flat hamlet list


def _wiggly(p0, p1, rng, amp_frac=0.03, step=60.0) -> shapely.LineString:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = float(np.hypot(*d))
    n = max(2, int(length // step) + 1)
    t = np.linspace(0, 1, n)
    nrm = np.array([-d[1], d[0]]) / max(length, 1e-9)
    amp = amp_frac * length
    off = amp * (np.sin(np.pi * t) * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3)))
    pts = p0[None, :] + t[:, None] * d[None, :] + off[:, None] * nrm[None, :]
    return shapely.LineString(pts)


def _grid_lines(poly: BaseGeometry, angle: float, spacing: float, origin) -> list[shapely.LineString]:
    ux, uy = np.cos(angle), np.sin(angle)
    vx, vy = -uy, ux
    minx, miny, maxx, maxy = poly.bounds
    r = np.hypot(maxx - minx, maxy - miny)
    ox, oy = origin
    out = []
    for dirx, diry, nx, ny in ((ux, uy, vx, vy), (vx, vy, ux, uy)):
        k = int(r // spacing) + 1
        for i in range(-k, k + 1):
            cx, cy = ox + i * spacing * nx, oy + i * spacing * ny
            ln = shapely.LineString([(cx - r * dirx, cy - r * diry), (cx + r * dirx, cy + r * diry)])
            out.append((i, ln.intersection(poly)))
    return out


def _mst(points: np.ndarray) -> list[tuple[int, int]]:
    n = len(points)
    if n < 2:
        return []
    d = np.hypot(points[:, None, 0] - points[None, :, 0], points[:, None, 1] - points[None, :, 1])
    in_tree = np.zeros(n, bool)
    in_tree[0] = True
    best = d[0].copy()
    parent = np.zeros(n, int)
    edges = []
    for _ in range(n - 1):
        cand = np.where(in_tree, np.inf, best)
        j = int(np.argmin(cand))
        edges.append((int(parent[j]), j))
        in_tree[j] = True
        upd = d[j] < best
        best = np.where(upd, d[j], best)
        parent = np.where(upd, j, parent)
    return edges


def make_roads(rng: np.random.Generator, lay: Layout, villages: list[Village]) -> list[Road]:
    roads: list[Road] = []
    cx, cy = lay.centre_xy
    R = lay.radius
    town = lay.town
    n_art = max(1, int(round(lay.lin)))
    offsets = [0.0] + [s * k * 1.2 * R / n_art for k in range(1, n_art) for s in (-1, 1)][: 2 * (n_art - 1)]
    ai = 0
    for off in offsets:
        for horizontal in (True, False):
            if horizontal:
                p0, p1 = (-1.3 * R, cy + off), (1.3 * R, cy + off + rng.normal(0, 0.05 * R))
            else:
                p0, p1 = (cx + off, -1.3 * R), (cx + off + rng.normal(0, 0.05 * R), 1.3 * R)
            ln = _wiggly(p0, p1, rng, amp_frac=0.01, step=100).intersection(town)
            for part in shapely.get_parts(ln):
                if part.length > 100:
                    roads.append(Road(part, "arterial", ARTERIALS[ai % len(ARTERIALS)], "rural", WIDTH["arterial"]))
            ai += 1

    # collectors: MST over the centre, the park and every village seed
    park_c = lay.park.centroid
    pts = np.array([lay.centre_xy, (park_c.x, park_c.y)] + [v.seed for v in villages if not v.community])
    for k, (i, j) in enumerate(_mst(pts)):
        ln = _wiggly(pts[i], pts[j], rng, amp_frac=0.04)
        roads.append(Road(ln, "collector", f"{['东', '西', '南', '北', '新', '中'][k % 6]}{street_name(k + 7)[:-1]}线",
                          "rural", WIDTH["collector"]))

    # town-centre street grid
    cang = float(rng.uniform(-0.2, 0.2))
    spacing = rng.uniform(165, 185)
    si = 0
    for i, g in _grid_lines(lay.centre, cang, spacing, lay.centre_xy):
        for part in shapely.get_parts(g):
            if part.length < 60:
                continue
            cls = "collector" if i % 3 == 0 else "local"
            roads.append(Road(part, cls, street_name(si, STREETS), "centre", WIDTH[cls] + (4 if cls == "local" else 0)))
            si += 1
    # park grid
    pc = (park_c.x, park_c.y)
    pi = 0
    for _i, g in _grid_lines(lay.park, lay.park_angle, rng.uniform(280, 320), pc):
        for part in shapely.get_parts(g):
            if part.length < 80:
                continue
            roads.append(Road(part, "local", street_name(pi, PARK_STREETS), "park", 14.0))
            pi += 1
    # the park outline road
    ring = lay.park.buffer(-8).exterior
    roads.append(Road(shapely.LineString(ring.coords), "collector", "园区环路", "park", WIDTH["collector"]))

    # hamlet lanes, spines and connectors to the nearest major road
    major = shapely.union_all([r.line for r in roads if r.road_class in ("arterial", "collector") and r.area != "park"])
    hi = 0
    for v in villages:
        for h in v.hamlets:
            for k, ln in enumerate(h.lanes):
                roads.append(Road(ln, "local", f"{v.name}{h.group:02d}组{k + 1}巷", "hamlet", WIDTH["lane"], v.index, hi))
            roads.append(Road(h.spine, "local", f"{v.name}{h.group:02d}组村道", "hamlet", 5.0, v.index, hi))
            a, b = shapely.get_coordinates(h.spine)
            start = min((shapely.Point(a), shapely.Point(b)), key=lambda p: p.distance(major))
            conn = shapely.shortest_line(start, major)
            if conn is not None and conn.length > 1.0:
                p0, p1 = shapely.get_coordinates(conn)
                # run slightly past the road so noding finds the junction
                d = (p1 - p0) / np.hypot(*(p1 - p0))
                conn = shapely.LineString([p0, p1 + d * 2.0])
                roads.append(Road(conn, "local", f"{v.name}{h.group:02d}组进村路", "hamlet", 5.0, v.index, hi))
            hi += 1
    return roads


ATTRS = {
    # class/area: lanes range, traffic range, heavy share range
    ("arterial", "rural"): ((4, 6), (12000, 26000), (0.15, 0.32)),
    ("collector", "rural"): ((2, 4), (3000, 9000), (0.08, 0.2)),
    ("collector", "centre"): ((4, 4), (8000, 16000), (0.03, 0.08)),
    ("local", "centre"): ((2, 2), (1500, 5000), (0.02, 0.06)),
    ("collector", "park"): ((4, 4), (5000, 11000), (0.3, 0.45)),
    ("local", "park"): ((2, 4), (1500, 5000), (0.3, 0.55)),
    ("local", "hamlet"): ((1, 2), (80, 900), (0.01, 0.05)),
}


def road_rows(rng: np.random.Generator, roads: list[Road], section_m: float = 800.0):
    """Road rows (local geometry), long roads cut into sections of at most ``section_m``."""
    rows = []
    geoms = []
    for r in roads:
        lanes_r, vol_r, heavy_r = ATTRS.get((r.road_class, r.area), ATTRS[("collector", "rural")])
        n = max(1, int(np.ceil(r.line.length / section_m)))
        base_vol = rng.uniform(*vol_r)
        lanes = int(rng.integers(lanes_r[0], lanes_r[1] + 1))
        if lanes > 2 and lanes % 2:
            lanes += 1
        heavy = rng.uniform(*heavy_r)
        for k in range(n):
            seg = shapely.ops.substring(r.line, k * r.line.length / n, (k + 1) * r.line.length / n)
            if seg.geom_type != "LineString" or seg.length < 1:
                continue
            geoms.append(seg)
            rows.append({
                "name": r.name + (f"({k + 1}段)" if n > 1 else ""),
                "road_class": r.road_class,
                "lanes": lanes,
                "traffic_volume": int(round(base_vol * rng.uniform(0.8, 1.2), -1)),
                "heavy_share": round(float(np.clip(heavy * rng.uniform(0.85, 1.15), 0, 1)), 3),
            })
    for i, row in enumerate(rows):
        row["code"] = f"RD{i + 1:06d}"
    return rows, geoms
