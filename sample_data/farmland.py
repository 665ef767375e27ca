"""Farmland parcels on ~40 % of the land: field grids per village, off roads, hamlets and buildings."""

from __future__ import annotations

import numpy as np
import shapely

from sample_data.geo import rect_polygons
from sample_data.layout import Layout
from sample_data.planning import RED_LINE
from sample_data.roads import Road
from sample_data.villages import Village

CROPS = ["rice", "rice", "rice", "wheat", "wheat", "rapeseed", "vegetables", "vegetables", "corn", "soybean", "orchard"]
SHARE = 0.40
GAP_U, GAP_V = 3.0, 2.0  # ditch between strips along / across
CELL_MIN = 24.0  # shortest piece of a cut strip (m)


def _runs(ok: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of every run of True in a 1-D boolean array."""
    out, k = [], 0
    while k < len(ok):
        if ok[k]:
            j = k
            while j + 1 < len(ok) and ok[j + 1]:
                j += 1
            out.append((k, j))
            k = j + 1
        else:
            k += 1
    return out


def _road_pieces(roads: list[Road], margin: float) -> np.ndarray:
    """The roads buffered by half their width + ``margin``, as short pieces (small boxes for the STRtree)."""
    lines = shapely.segmentize(np.array([r.line for r in roads], dtype=object), 100.0)
    xy, idx = shapely.get_coordinates(lines, return_index=True)
    same = idx[1:] == idx[:-1]
    segs = shapely.linestrings(np.stack([xy[:-1][same], xy[1:][same]], axis=1))
    half = np.array([r.width / 2 + margin for r in roads])[idx[:-1][same]]
    return shapely.buffer(segs, half, quad_segs=2)


def farm_land(lay: Layout):
    """Where fields may lie: the agricultural zone plus the ecological zone outside the red line (3 m in)."""
    red = lay.river.buffer(RED_LINE * lay.eco_width + 3.0)
    open_eco = lay.zones["ecological"].difference(red)
    return shapely.union(lay.zones["agricultural"], open_eco).buffer(-3.0)


def make_farmland(rng: np.random.Generator, lay: Layout, villages: list[Village], roads: list[Road],
                  buildings: np.ndarray, sites: list) -> tuple[list[dict], np.ndarray]:
    land = farm_land(lay)
    agri_in = lay.zones["agricultural"].buffer(-3.0)
    shapely.prepare(agri_in)
    excl = [_road_pieces(roads, 1.5),
            shapely.buffer(np.array([h.envelope for v in villages for h in v.hamlets], dtype=object), 2.0,
                           join_style="mitre"),
            shapely.buffer(np.asarray(buildings, dtype=object), 4.0, join_style="mitre"),
            np.asarray(sites, dtype=object)]
    excl = np.concatenate([e for e in excl if len(e)])
    excl_tree = shapely.STRtree(excl)

    def clear(polys: np.ndarray, region) -> np.ndarray:
        ok = shapely.contains(region, polys)
        hit, _ = excl_tree.query(polys, predicate="intersects")
        ok[hit] = False
        return ok

    all_polys, all_meta = [], []
    for v in villages:
        region = v.poly.intersection(land)
        if region.is_empty:
            continue
        shapely.prepare(region)
        ang = v.angle + 0.05
        ux, uy = np.cos(ang), np.sin(ang)
        vx, vy = -uy, ux
        c = region.centroid
        r = np.hypot(region.bounds[2] - region.bounds[0], region.bounds[3] - region.bounds[1]) / 2 + 50
        plen = rng.uniform(80, 110)
        pwid = rng.uniform(26, 36)
        us = np.arange(-r, r, plen + GAP_U)
        vs_ = np.arange(-r, r, pwid + GAP_V)
        vs_ = vs_ + (np.arange(len(vs_)) // 6) * 4.0  # a farm track every six strips
        U, V = np.meshgrid(us, vs_)
        U, V = U.ravel(), V.ravel()
        cx, cy = c.x + U * ux + V * vx, c.y + U * uy + V * vy
        near = shapely.dwithin(region, shapely.points(cx, cy), plen / 2 + pwid)
        cx, cy, U, V = cx[near], cy[near], U[near], V[near]
        polys = rect_polygons(cx, cy, np.full(len(cx), plen), np.full(len(cx), pwid), np.full(len(cx), ang))
        ok = clear(polys, region)
        # a strip cut by a road, a hamlet or the edge of the land: keep the clear runs of its cells
        n_cell = max(2, int((plen + GAP_U) // (CELL_MIN + GAP_U)))
        cell = (plen - (n_cell - 1) * GAP_U) / n_cell
        off = (np.arange(n_cell) - (n_cell - 1) / 2) * (cell + GAP_U)
        bad = np.flatnonzero(~ok)
        cu = (U[bad, None] + off[None, :]).ravel()
        cv = np.repeat(V[bad], n_cell)
        cells = rect_polygons(c.x + cu * ux + cv * vx, c.y + cu * uy + cv * vy, np.full(len(cu), cell),
                              np.full(len(cu), pwid), np.full(len(cu), ang))
        cell_ok = clear(cells, region).reshape(-1, n_cell)
        fu, fv, fl = list(U[ok]), list(V[ok]), [plen] * int(ok.sum())
        for k, row in enumerate(cell_ok):
            for a, b in _runs(row):
                fu.append(U[bad[k]] + (off[a] + off[b]) / 2)
                fv.append(V[bad[k]])
                fl.append((b - a + 1) * cell + (b - a) * GAP_U)
        fu, fv, fl = np.array(fu), np.array(fv), np.array(fl)
        polys = rect_polygons(c.x + fu * ux + fv * vx, c.y + fu * uy + fv * vy, fl, np.full(len(fu), pwid),
                              np.full(len(fu), ang))
        blocks = (np.floor(fu / 330).astype(int) * 1000 + np.floor(fv / 330).astype(int))
        all_polys.append(polys)
        all_meta.append(np.column_stack([np.full(len(polys), v.index), blocks + v.index * 10**7]))
    if not all_polys:
        return [], np.array([], dtype=object)
    polys = np.concatenate(all_polys)
    meta = np.concatenate(all_meta)
    # keep whole field blocks (random order) until ~40 % of the town is farmland
    target = SHARE * lay.town.area
    areas = shapely.area(polys)
    ublocks, inv = np.unique(meta[:, 1], return_inverse=True)
    block_area = np.bincount(inv, weights=areas)
    order = rng.permutation(len(ublocks))
    cum = np.cumsum(block_area[order])
    n_keep = int(np.searchsorted(cum, target)) + 1
    kept_blocks = np.zeros(len(ublocks), bool)
    kept_blocks[order[:n_keep]] = True
    sel = kept_blocks[inv]
    polys, meta, areas, inv = polys[sel], meta[sel], areas[sel], inv[sel]
    # attributes: grade smooth in space, permanent-basic by block, crop by block
    cen = shapely.get_coordinates(shapely.centroid(polys))
    p1, p2 = rng.uniform(0, 6.3, 2)
    field = 4.2 + 2.2 * np.sin(cen[:, 0] / 1400 + p1) * np.cos(cen[:, 1] / 1100 + p2)
    grade = np.clip(np.round(field + rng.normal(0, 0.9, len(polys))), 1, 10).astype(int)
    block_perm = rng.random(len(ublocks)) < 0.8
    block_crop = rng.integers(0, len(CROPS), len(ublocks))
    perm = block_perm[inv] & (grade <= 7) & shapely.contains(agri_in, polys)  # not in the ecological zone
    crop_idx = np.where(rng.random(len(polys)) < 0.8, block_crop[inv], rng.integers(0, len(CROPS), len(polys)))
    rows = []
    seq: dict[int, int] = {}
    contract: dict[int, int] = {}
    left = 0
    for i in np.lexsort((cen[:, 0], -cen[:, 1], meta[:, 0])):
        vi = int(meta[i, 0])
        v = villages[vi]
        seq[vi] = seq.get(vi, 0) + 1
        if left <= 0:
            contract[vi] = contract.get(vi, 0) + 1
            left = int(rng.integers(1, 5))
        left -= 1
        rows.append((i, {
            "code": f"{v.code}F{seq[vi]:05d}",
            "grade": int(grade[i]),
            "is_permanent_basic": bool(perm[i]),
            "contract_code": f"{v.code}HT{contract.get(vi, 1):04d}",
            "crop": CROPS[int(crop_idx[i])],
            "village_code": v.code,
            "area_m2": round(float(areas[i]), 1),
        }))
    idx = np.array([i for i, _ in rows])
    return [r for _, r in rows], polys[idx]
