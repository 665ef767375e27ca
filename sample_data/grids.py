"""Management grids: town → village/community → unit grids (Voronoi tiling), and evaluation grids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from sample_data.layout import Layout
from sample_data.villages import Village


@dataclass
class UnitGrid:
    code: str
    name: str
    village: int
    geom: BaseGeometry


def _points_in(rng, poly, n):
    minx, miny, maxx, maxy = poly.bounds
    shapely.prepare(poly)
    pts = np.empty((0, 2))
    while len(pts) < n:
        xs = rng.uniform(minx, maxx, 4 * n + 20)
        ys = rng.uniform(miny, maxy, 4 * n + 20)
        ok = shapely.contains_xy(poly, xs, ys)
        pts = np.vstack([pts, np.column_stack([xs[ok], ys[ok]])])
    return pts[:n]


def _cells(poly, pts):
    env = poly.buffer(poly.length)
    vor = shapely.voronoi_polygons(shapely.MultiPoint(pts), extend_to=env, ordered=True)
    return shapely.intersection(np.asarray(shapely.get_parts(vor)), poly)


def make_unit_grids(rng: np.random.Generator, lay: Layout, villages: list[Village]) -> list[UnitGrid]:
    total = max(3 * len(villages), int(round(150 * lay.scale)))
    w = np.array([v.poly.area * (3.0 if v.community else 1.0) for v in villages])
    w = w / w.sum()
    out: list[UnitGrid] = []
    for v, wv in zip(villages, w, strict=True):
        n = max(3, int(round(total * wv)))
        pts = _points_in(rng, v.poly, n)
        for _ in range(3):  # Lloyd relaxation for even-sized grids
            cells = _cells(v.poly, pts)
            cen = shapely.centroid(cells)
            inside = shapely.contains(v.poly, cen)
            c = shapely.get_coordinates(cen)
            pts = np.where(inside[:, None], c, pts)
        cells = _cells(v.poly, pts)
        # order grids north-west to south-east for readable codes
        cen = shapely.get_coordinates(shapely.centroid(cells))
        order = np.lexsort((cen[:, 0], -np.round(cen[:, 1] / 400)))
        for k, i in enumerate(order):
            g = cells[i]
            if g.is_empty:
                continue
            out.append(UnitGrid(code=f"{v.code}{k + 1:03d}", name=f"{v.name}第{k + 1}网格", village=v.index, geom=g))
    return out


def evaluation_groups(rng: np.random.Generator, units: list[UnitGrid]) -> list[list[int]]:
    """Groups of 3-6 adjacent unit grids within a village (fewer only when a village is that small)."""
    geoms = np.array([u.geom for u in units], dtype=object)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    m = a != b
    a, b = a[m], b[m]
    shared = shapely.length(shapely.intersection(geoms[a], geoms[b]))
    m = shared > 1.0
    a, b = a[m], b[m]
    same = np.array([units[i].village == units[j].village for i, j in zip(a, b, strict=True)], dtype=bool)
    a, b = a[same], b[same]
    adj: dict[int, list[int]] = {i: [] for i in range(len(units))}
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        adj[i].append(j)
    group_of = np.full(len(units), -1)
    groups: list[list[int]] = []
    for i in range(len(units)):
        if group_of[i] >= 0:
            continue
        size = int(rng.integers(3, 7))
        g = [i]
        group_of[i] = len(groups)
        frontier = [i]
        while frontier and len(g) < size:
            cur = frontier.pop(0)
            for j in sorted(adj[cur]):
                if group_of[j] < 0 and len(g) < size:
                    group_of[j] = len(groups)
                    g.append(j)
                    frontier.append(j)
        groups.append(g)
    # merge groups smaller than 3 into an adjacent group of the same village
    for gi, g in enumerate(groups):
        if 0 < len(g) < 3:
            neigh = sorted({int(group_of[j]) for i in g for j in adj[i]} - {gi})
            neigh = [n for n in neigh if groups[n]]
            if neigh:
                tgt = min(neigh, key=lambda n: len(groups[n]))
                for i in g:
                    group_of[i] = tgt
                groups[tgt].extend(g)
                groups[gi] = []
    return [g for g in groups if g]
