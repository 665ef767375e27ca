"""Farmland parcels on ~40 % of the land: field grids per village, off roads, hamlets and buildings."""

from __future__ import annotations

import numpy as np
import shapely

from sample_data.geo import rect_polygons
from sample_data.layout import Layout
from sample_data.roads import Road
from sample_data.villages import Village

CROPS = ["rice", "rice", "rice", "wheat", "wheat", "rapeseed", "vegetables", "vegetables", "corn", "soybean", "orchard"]
SHARE = 0.40


def make_farmland(rng: np.random.Generator, lay: Layout, villages: list[Village], roads: list[Road],
                  buildings: np.ndarray, sites: list) -> tuple[list[dict], np.ndarray]:
    agri_in = lay.zones["agricultural"].buffer(-3.0)
    excl = [shapely.buffer(np.array([r.line for r in roads], dtype=object), np.array([r.width / 2 + 2.0 for r in roads])),
            np.array([h.envelope.buffer(4) for v in villages for h in v.hamlets], dtype=object),
            shapely.buffer(np.asarray(buildings, dtype=object), 5.0),
            np.asarray(sites, dtype=object)]
    excl = np.concatenate([e for e in excl if len(e)])
    all_polys, all_meta = [], []
    for v in villages:
        region = v.poly.intersection(agri_in)
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
        us = np.arange(-r, r, plen + 3.0)
        vs_ = np.arange(-r, r, pwid + 2.0)
        vs_ = vs_ + (np.arange(len(vs_)) // 6) * 4.0  # a farm track every six strips
        U, V = np.meshgrid(us, vs_)
        U, V = U.ravel(), V.ravel()
        cx, cy = c.x + U * ux + V * vx, c.y + U * uy + V * vy
        ok = shapely.contains_xy(region, cx, cy)
        cx, cy, U, V = cx[ok], cy[ok], U[ok], V[ok]
        polys = rect_polygons(cx, cy, np.full(len(cx), plen), np.full(len(cx), pwid), np.full(len(cx), ang))
        inside = shapely.contains(region, polys)
        polys, U, V = polys[inside], U[inside], V[inside]
        blocks = (np.floor(U / 330).astype(int) * 1000 + np.floor(V / 330).astype(int))
        all_polys.append(polys)
        all_meta.append(np.column_stack([np.full(len(polys), v.index), blocks + v.index * 10**7]))
    if not all_polys:
        return [], np.array([], dtype=object)
    polys = np.concatenate(all_polys)
    meta = np.concatenate(all_meta)
    tree = shapely.STRtree(polys)
    _, hit = tree.query(excl, predicate="intersects")
    keep = np.ones(len(polys), bool)
    keep[hit] = False
    polys, meta = polys[keep], meta[keep]
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
    perm = block_perm[inv] & (grade <= 7)
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
