"""Random places in the town for devices, cameras, events and evaluation points (local metres)."""

from __future__ import annotations

import numpy as np
import shapely


def near_polys(rng, polys: np.ndarray, n: int, offset=(0.0, 0.0)) -> np.ndarray:
    """Points at (or just outside, by ``offset`` metres) random polygons."""
    if len(polys) == 0 or n == 0:
        return np.zeros((0, 2))
    idx = rng.integers(0, len(polys), n)
    c = shapely.get_coordinates(shapely.centroid(polys[idx]))
    if offset[1] > 0:
        ang = rng.uniform(0, 2 * np.pi, n)
        r = np.sqrt(shapely.area(polys[idx]) / np.pi) + rng.uniform(*offset, n)
        c = c + np.column_stack([r * np.cos(ang), r * np.sin(ang)])
    return c


def on_lines(rng, lines: np.ndarray, n: int, side=(0.0, 0.0)) -> np.ndarray:
    """Points on random lines (length-weighted), shifted sideways by ``side`` metres."""
    if len(lines) == 0 or n == 0:
        return np.zeros((0, 2))
    L = shapely.length(lines)
    idx = rng.choice(len(lines), size=n, p=L / L.sum())
    s = rng.uniform(0, 1, n) * L[idx]
    p = shapely.get_coordinates(shapely.line_interpolate_point(lines[idx], s))
    q = shapely.get_coordinates(shapely.line_interpolate_point(lines[idx], np.minimum(s + 1, L[idx])))
    d = q - p
    nrm = np.column_stack([-d[:, 1], d[:, 0]]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    off = rng.uniform(*side, n) * rng.choice([-1, 1], n)
    return p + nrm * off[:, None]


def river_bank(rng, terrain, n: int, town, gap=(5.0, 25.0)) -> np.ndarray:
    if n == 0:
        return np.zeros((0, 2))
    minx, _, maxx, _ = town.bounds
    out = np.zeros((0, 2))
    while len(out) < n:
        x = rng.uniform(minx, maxx, 4 * n)
        side = rng.choice([-1, 1], 4 * n)
        slope = terrain.river_slope(x)
        k = 1 / np.sqrt(1 + slope**2)
        d = terrain.river_half_width + rng.uniform(*gap, 4 * n)
        px, py = x - side * d * slope * k, terrain.river_y(x) + side * d * k
        ok = shapely.contains_xy(town, px, py)
        out = np.vstack([out, np.column_stack([px[ok], py[ok]])])
    return out[:n]


def locate(points: np.ndarray, geoms: np.ndarray, codes: list[str]) -> list[str | None]:
    """Code of the polygon containing each point (None outside all)."""
    out: list[str | None] = [None] * len(points)
    if len(points) == 0:
        return out
    tree = shapely.STRtree(geoms)
    pi, gi = tree.query(shapely.points(points), predicate="within")
    for p, g in zip(pi[::-1].tolist(), gi[::-1].tolist(), strict=True):
        out[p] = codes[g]
    return out
