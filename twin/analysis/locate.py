"""Locating: the k nearest features of a layer to a point, and the grids containing a point.

Nearest: the store's spatial index is asked for a box around the point that grows
(100 m, then doubling, or straight to the current k-th distance) until the k-th
nearest candidate lies within the box's inscribed circle — from then on no feature
outside the box can be nearer, so the answer is exact, not a guess from one box.
Distances are ground metres to the nearest point of each feature (local metric frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from twin.analysis.buffer import distances_m, search_bbox
from twin.analysis.metric import frame_at
from twin.analysis.source import FeatureSet, features_in_bbox
from twin.store import SpatialStore

START_RADIUS_M = 100.0


@dataclass
class NearestHit:
    layer: str
    id: int
    distance_m: float
    properties: dict[str, Any]
    geometry: shapely.Geometry


def nearest_in(point: shapely.Point, fs: FeatureSet, n: int, max_distance_m: float) -> list[NearestHit]:
    """The ``n`` features of ``fs`` nearest to ``point`` (lon/lat) within ``max_distance_m``, nearest first."""
    if not len(fs):
        return []
    d = distances_m(point, fs.geometries, frame_at(point.x, point.y))
    order = np.lexsort((np.asarray(fs.ids), d))
    return [NearestHit(fs.layer, fs.ids[i], float(d[i]), fs.properties[i], fs.geometries[i])
            for i in order[:n] if d[i] <= max_distance_m]


def nearest_features(store: SpatialStore, layer: str, lon: float, lat: float, n: int, *,
                     max_distance_m: float, cap: int, filters: dict[str, str] | None = None) -> list[NearestHit]:
    """The ``n`` nearest features of ``layer`` to ``(lon, lat)``, at most ``max_distance_m`` away (exact)."""
    point = shapely.Point(lon, lat)
    r = min(START_RADIUS_M, max_distance_m)
    while True:
        fs = features_in_bbox(store, layer, search_bbox(point, r), cap=cap, filters=filters)
        hits = nearest_in(point, fs, n, r)  # within r: certainly nearer than anything outside the box
        if len(hits) >= n or r >= max_distance_m:
            return hits
        all_hits = nearest_in(point, fs, n, max_distance_m)
        kth = all_hits[n - 1].distance_m if len(all_hits) >= n else 0.0
        r = min(max(2 * r, kth), max_distance_m)


@dataclass
class GridMatch:
    level: str
    id: int
    properties: dict[str, Any]
    geometry: shapely.Geometry


def grids_at(point: shapely.Point, grids: FeatureSet) -> dict[str, GridMatch | None]:
    """The unit, village and town grid covering ``point`` (the smallest one per level if they overlap)."""
    out: dict[str, GridMatch | None] = {"unit": None, "village": None, "town": None}
    if not len(grids):
        return out
    covers = shapely.covers(grids.geometries, point)
    areas = shapely.area(grids.geometries)
    for i in np.flatnonzero(covers)[np.argsort(areas[covers], kind="stable")]:
        level = grids.properties[i].get("level")
        if level in out and out[level] is None:
            out[level] = GridMatch(level, grids.ids[i], grids.properties[i], grids.geometries[i])
    return out


def locate_grid(store: SpatialStore, lon: float, lat: float, *, cap: int) -> dict[str, GridMatch | None]:
    eps = 1e-9
    grids = features_in_bbox(store, "grids", (lon - eps, lat - eps, lon + eps, lat + eps), cap=cap)
    return grids_at(shapely.Point(lon, lat), grids)


__all__ = ["GridMatch", "NearestHit", "grids_at", "locate_grid", "nearest_features", "nearest_in"]
