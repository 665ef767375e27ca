"""Villages (administrative villages + the town-centre community) and their hamlets (自然村/组)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from sample_data.geo import rect_polygons
from sample_data.layout import Layout
from sample_data.names import COMMUNITY_NAME, TOWN_CODE, village_names


@dataclass
class Hamlet:
    village: int
    group: int  # 组 number within the village
    cx: float
    cy: float
    angle: float
    half_len: float
    half_wid: float
    envelope: BaseGeometry
    lanes: list = field(default_factory=list)
    spine: BaseGeometry | None = None


@dataclass
class Village:
    index: int
    code: str
    name: str
    seed: tuple[float, float]
    poly: BaseGeometry
    community: bool = False
    angle: float = 0.0
    hamlets: list[Hamlet] = field(default_factory=list)


def _sample_seeds(rng, lay: Layout, n: int) -> list[tuple[float, float]]:
    agri = lay.zones["agricultural"]
    margin = 250 * min(1.0, lay.lin)
    core = agri.buffer(-margin)
    if core.is_empty:
        core = agri
    shapely.prepare(core)
    spacing = 0.75 * np.sqrt(agri.area / max(n, 1))
    r = lay.radius * 1.2
    seeds: list[tuple[float, float]] = []
    for _attempt in range(8):
        xs = rng.uniform(-r, r, 4000)
        ys = rng.uniform(-r, r, 4000)
        ok = shapely.contains_xy(core, xs, ys)
        for x, y in zip(xs[ok], ys[ok], strict=True):
            if len(seeds) >= n:
                return seeds
            if all((x - a) ** 2 + (y - b) ** 2 >= spacing**2 for a, b in seeds):
                seeds.append((float(x), float(y)))
        spacing *= 0.8
    return seeds


def make_villages(rng: np.random.Generator, lay: Layout) -> list[Village]:
    n_rural = max(1, int(round(12 * lay.scale)))
    seeds = _sample_seeds(rng, lay, n_rural)
    pts = [lay.centre_xy, *seeds]
    cells = shapely.voronoi_polygons(shapely.MultiPoint(pts), extend_to=lay.town.buffer(lay.radius), ordered=True)
    cells = list(shapely.get_parts(cells))
    names = village_names(len(seeds))
    villages: list[Village] = []
    rural_union = []
    for i, (s, cell) in enumerate(zip(seeds, cells[1:], strict=True)):
        poly = cell.intersection(lay.town).difference(lay.centre.buffer(0.03 * lay.radius))
        # keep only the part holding the seed (no exclaves)
        parts = [p for p in shapely.get_parts(poly) if p.area > 0]
        poly = max(parts, key=lambda p: (p.contains(shapely.Point(s)), p.area))
        rural_union.append(poly)
        villages.append(Village(index=i + 1, code=f"{TOWN_CODE}{i + 2:03d}", name=names[i], seed=s,
                                poly=poly, angle=float(rng.uniform(-0.5, 0.5))))
    community = lay.town.difference(shapely.union_all(rural_union))
    villages.insert(0, Village(index=0, code=f"{TOWN_CODE}001", name=COMMUNITY_NAME, seed=lay.centre_xy,
                               poly=community, community=True))
    for k, v in enumerate(villages):
        v.index = k
    return villages


def place_hamlets(rng: np.random.Generator, lay: Layout, villages: list[Village], target_houses: int) -> None:
    """Place hamlets in every rural village until their expected house count reaches the target."""
    rural = list(villages)  # the community has farmland and hamlets outside the town centre too
    if not rural:
        return
    agri = lay.zones["agricultural"]
    avoid = shapely.union(lay.zones["urban"].buffer(80), lay.zones["ecological"].buffer(60))
    weights = np.array([v.poly.intersection(agri).area for v in rural])
    weights = weights / weights.sum()
    for v, w in zip(rural, weights, strict=True):
        want = target_houses * w * 1.3
        ok_area = v.poly.buffer(-25).intersection(agri).difference(avoid)
        if ok_area.is_empty:
            continue
        shapely.prepare(ok_area)
        minx, miny, maxx, maxy = ok_area.bounds
        got, group = 0.0, 0
        taken_v: list[BaseGeometry] = []
        for batch in range(15):
            if got >= want:
                break
            m = 200
            cx, cy = rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)
            if batch == 0:  # the first hamlet sits at the village seat
                cx[:20] = v.seed[0] + rng.normal(0, 30, 20)
                cy[:20] = v.seed[1] + rng.normal(0, 30, 20)
            f = min(1.0, 0.5 + lay.lin)
            hl = rng.uniform(130, 340, m) * f
            hw = rng.uniform(55, 150, m) * f
            ang = v.angle + rng.normal(0, 0.12, m)
            envs = rect_polygons(cx, cy, 2 * hl + 24, 2 * hw + 24, ang)
            for i in np.flatnonzero(shapely.contains(ok_area, envs)):
                if got >= want:
                    break
                env = envs[i]
                if any(env.distance(t) < 60 for t in taken_v):
                    continue
                group += 1
                h = Hamlet(village=v.index, group=group, cx=float(cx[i]), cy=float(cy[i]), angle=float(ang[i]),
                           half_len=float(hl[i]), half_wid=float(hw[i]), envelope=env)
                _lanes(rng, h)
                taken_v.append(env)
                v.hamlets.append(h)
                got += sum(ln.length for ln in h.lanes) * 2 / 19.0 * 0.3


def _lanes(rng, h: Hamlet) -> None:
    ux, uy = np.cos(h.angle), np.sin(h.angle)
    vx, vy = -uy, ux
    spacing = rng.uniform(36, 46)
    n = max(1, int(2 * h.half_wid // spacing))
    vs = (np.arange(n) - (n - 1) / 2) * spacing
    lanes = []
    for v in vs:
        half = h.half_len * np.sqrt(max(0.15, 1 - (v / (h.half_wid + spacing / 2)) ** 2)) * rng.uniform(0.85, 1.0)
        u0 = rng.uniform(-0.1, 0.1) * h.half_len
        a, b = u0 - half, u0 + half
        lanes.append(shapely.LineString([(h.cx + a * ux + v * vx, h.cy + a * uy + v * vy),
                                         (h.cx + b * ux + v * vx, h.cy + b * uy + v * vy)]))
    h.lanes = lanes
    us = rng.uniform(-0.25, 0.25) * h.half_len
    v0, v1 = vs[0] - 8.0, vs[-1] + 8.0
    if n == 1:
        v0, v1 = -h.half_wid, h.half_wid
    h.spine = shapely.LineString([(h.cx + us * ux + v0 * vx, h.cy + us * uy + v0 * vy),
                                  (h.cx + us * ux + v1 * vx, h.cy + us * uy + v1 * vy)])
