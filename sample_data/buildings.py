"""Building footprints: rotated rectangles along roads, non-overlapping, out of the river."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from sample_data.geo import rect_polygons
from sample_data.layout import Layout
from sample_data.roads import Road
from sample_data.villages import Village


@dataclass
class Candidates:
    polys: np.ndarray
    kind: np.ndarray  # 0 centre frontage, 1 centre interior, 2 park, 3 hamlet
    road: np.ndarray  # index of the road it fronts
    side: np.ndarray  # +1 left / -1 right
    pos: np.ndarray  # distance along the road


def _frontage(rng, line, road_idx, offsets, w_rng, d_rng, gap_rng, kind):
    L = line.length
    n = int(L / (w_rng[0] + gap_rng[0])) + 2
    out = []
    for side in (1, -1):
        for off in offsets:
            w = rng.uniform(*w_rng, n)
            d = rng.uniform(*d_rng, n)
            gap = rng.uniform(*gap_rng, n)
            s = np.cumsum(w + gap) - w / 2 + rng.uniform(0, gap_rng[1])
            ok = s + w / 2 < L - 3
            if not ok.any():
                continue
            w, d, s = w[ok], d[ok], s[ok]
            p = shapely.get_coordinates(shapely.line_interpolate_point(line, s))
            q0 = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(s - 2, 0)))
            q1 = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(s + 2, L)))
            ang = np.arctan2(q1[:, 1] - q0[:, 1], q1[:, 0] - q0[:, 0])
            nx, ny = -np.sin(ang), np.cos(ang)
            dist = side * (off + d / 2)
            polys = rect_polygons(p[:, 0] + dist * nx, p[:, 1] + dist * ny, w, d, ang)
            m = len(polys)
            out.append(Candidates(polys, np.full(m, kind), np.full(m, road_idx), np.full(m, side), s))
    return out


def _concat(parts: list[Candidates]) -> Candidates:
    if not parts:
        e = np.array([], dtype=object)
        return Candidates(e, np.array([], int), np.array([], int), np.array([], int), np.array([], float))
    return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("polys", "kind", "road", "side", "pos")))


def _take(c: Candidates, idx) -> Candidates:
    return Candidates(c.polys[idx], c.kind[idx], c.road[idx], c.side[idx], c.pos[idx])


def candidates(rng, roads: list[Road]) -> Candidates:
    parts: list[Candidates] = []
    for i, r in enumerate(roads):
        hw = r.width / 2
        if r.area == "centre" or (r.road_class == "arterial" and r.area == "centre"):
            parts += _frontage(rng, r.line, i, [hw + 4], (16, 42), (12, 16), (5, 14), 0)
            parts += _frontage(rng, r.line, i, [hw + 30, hw + 58], (26, 56), (11, 15), (8, 18), 1)
        elif r.area == "park" and r.road_class == "local":
            parts += _frontage(rng, r.line, i, [hw + 10, hw + 95], (50, 140), (30, 70), (14, 30), 2)
        elif r.area == "hamlet" and r.width <= 4.0:
            parts += _frontage(rng, r.line, i, [hw + 2.5], (9, 14), (9, 12), (2, 6), 3)
    return _concat(parts)


def select(rng, lay: Layout, roads: list[Road], cand: Candidates, sites, targets: dict[int, int]) -> Candidates:
    """Drop candidates on roads, in the river, on construction sites or overlapping; trim to targets."""
    polys = cand.polys
    tree = shapely.STRtree(polys)
    bad = np.zeros(len(polys), bool)
    road_buf = shapely.buffer(np.array([r.line for r in roads], dtype=object),
                              np.array([r.width / 2 + 1.0 for r in roads]), cap_style="flat")
    excl = np.concatenate([road_buf, np.array([lay.river.buffer(15.0)], dtype=object), np.asarray(sites, dtype=object)])
    _, hit = tree.query(excl, predicate="intersects")
    bad[hit] = True
    # outside the town, or the urban buildings outside the urban zone
    bad |= ~shapely.contains(lay.town, polys)
    keep_idx = np.flatnonzero(~bad)
    c = _take(cand, keep_idx)
    # greedy overlap removal (1 m clearance), priority in random order within kind
    prio = np.lexsort((rng.random(len(c.polys)), c.kind))
    c = _take(c, prio)
    tree = shapely.STRtree(c.polys)
    a, b = tree.query(c.polys, predicate="dwithin", distance=1.0)
    m = a < b
    a, b = a[m], b[m]
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    starts = np.searchsorted(a, np.arange(len(c.polys) + 1))
    alive = np.ones(len(c.polys), bool)
    for i in np.unique(a):
        if alive[i]:
            alive[b[starts[i]:starts[i + 1]]] = False
    c = _take(c, np.flatnonzero(alive))
    # trim per kind to the targets; what the town centre and park cannot hold goes to the villages
    avail = {k: int(np.sum(c.kind == k)) for k in targets}
    short = sum(max(0, targets[k] - avail[k]) for k in targets if k != 3)
    targets = {**targets, 3: targets.get(3, 0) + short}
    keep = []
    for kind, want in targets.items():
        idx = np.flatnonzero(c.kind == kind)
        if len(idx) > want:
            idx = np.sort(rng.choice(idx, size=want, replace=False))
        keep.append(idx)
    return _take(c, np.sort(np.concatenate(keep)))


PUBLIC_NAMES = ["江畔镇人民政府", "江畔镇中心小学", "江畔镇卫生院", "江畔中学", "江畔镇便民服务中心", "江畔镇派出所",
                "江畔镇文化站", "江畔幼儿园", "江畔镇敬老院", "江畔镇综合执法局", "江畔镇社区卫生服务站", "江畔体育馆"]


def attributes(rng, c: Candidates, roads: list[Road], villages: list[Village], village_idx: np.ndarray,
               hamlet_of_road: dict[int, tuple[int, int]]) -> list[dict]:
    n = len(c.polys)
    rows: list[dict] = [None] * n  # type: ignore[list-item]
    u = rng.random(n)
    seq_per_village: dict[int, int] = {}
    house_no: dict[tuple[int, int], int] = {}
    street_no: dict[int, list[int]] = {}
    pub = 0
    estates = ["阳光花园", "江畔新村", "锦绣苑", "金港名都", "和美家园", "丰泽苑", "翠湖湾", "书香门第", "东方明珠苑", "碧水湾"]
    order = np.lexsort((c.pos, c.side, c.road))
    for i in order:
        kind = int(c.kind[i])
        vi = int(village_idx[i])
        v = villages[vi]
        road = roads[int(c.road[i])]
        area = float(c.polys[i].area)
        name = None
        households = None
        if kind == 0:
            if u[i] < 0.06 and area > 350:
                use, floors = "public", int(rng.integers(3, 7))
                name = PUBLIC_NAMES[pub] if pub < len(PUBLIC_NAMES) else f"公共服务楼{pub + 1}"
                pub += 1
            elif u[i] < 0.6:
                use, floors = "commercial", int(rng.integers(4, 9))
            else:
                use, floors = "residential", int(rng.integers(4, 12))
            year = int(rng.integers(1992, 2025))
        elif kind == 1:
            use, floors = ("residential", int(rng.integers(6, 19))) if u[i] < 0.9 else ("commercial", int(rng.integers(4, 10)))
            year = int(rng.integers(1998, 2025))
        elif kind == 2:
            use, floors = ("industrial", int(rng.integers(1, 3))) if u[i] < 0.85 else ("commercial", int(rng.integers(3, 7)))
            year = int(rng.integers(2003, 2025))
        else:
            use = "residential" if u[i] < 0.96 else "commercial"
            floors = int(rng.choice([2, 2, 3, 3, 3, 1])) if use == "residential" else int(rng.integers(1, 3))
            year = int(rng.integers(1982, 2023))
        if use == "industrial":
            height = floors * rng.uniform(5.0, 7.5)
        else:
            height = floors * 3.0 + rng.uniform(-0.3, 1.2) + (1.5 if use == "commercial" else 0.0)
        if use == "residential":
            if kind == 3:
                households = int(rng.choice([1, 1, 1, 2]))
            else:
                households = max(2, int(round(area / 95 * floors * rng.uniform(0.85, 1.1))))
        if kind == 3:
            g = hamlet_of_road.get(int(c.road[i]), (vi, 1))[1]
            key = (vi, g)
            house_no[key] = house_no.get(key, 0) + 1
            address = f"{v.name}{g:02d}组{house_no[key]:02d}号"
        else:
            nums = street_no.setdefault(int(c.road[i]), [-1, 0])
            j = 0 if c.side[i] > 0 else 1
            nums[j] += 2
            address = f"{road.name}{nums[j] + 2}号"
            if use == "residential" and name is None:
                name = f"{estates[int(c.road[i]) % len(estates)]}{nums[j] // 2 + 1}幢"
        seq_per_village[vi] = seq_per_village.get(vi, 0) + 1
        rows[i] = {
            "code": f"{v.code}B{seq_per_village[vi]:05d}",
            "name": name,
            "address": address,
            "use": use,
            "floors": floors,
            "height_m": round(float(height), 1),
            "households": households,
            "year_built": year,
            "village_code": v.code,
        }
    return rows
