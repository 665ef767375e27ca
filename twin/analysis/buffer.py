"""Buffer analysis: what lies within N metres of a geometry, with each feature's distance.

Method: the geometry is projected into a local azimuthal-equidistant frame centred on
it (:mod:`twin.analysis.metric`); a candidate is *inside* when its exact planar
distance to the geometry in that frame is at most N. Membership is decided by that
distance, not by intersecting the drawn polygon, so nothing inside is missed where the
polygon's straight edges cut the true circle short, and nothing outside is reported.
The buffer polygon returned for display has ``quad_segs`` segments per quarter circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from twin.analysis.metric import LocalFrame, frame_for, metres_to_degrees_box
from twin.analysis.source import FeatureSet
from twin.dialect import BBox

#: slack on the distance test: float noise of the projection, far below survey accuracy
EPS_M = 1e-6


@dataclass
class BufferHit:
    layer: str
    id: int
    distance_m: float
    properties: dict[str, Any]
    geometry: shapely.Geometry


@dataclass
class BufferResult:
    """The buffer polygon (lon/lat), its area on the ground and the features within it, nearest first."""

    distance_m: float
    buffer: shapely.Geometry
    area_m2: float
    hits: list[BufferHit] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hits:
            out[h.layer] = out.get(h.layer, 0) + 1
        return out


def search_bbox(geom: shapely.Geometry, distance_m: float) -> BBox:
    """A lon/lat box that contains every point within ``distance_m`` of ``geom`` (for the index)."""
    minx, miny, maxx, maxy = geom.bounds
    lat = max(abs(miny), abs(maxy))
    dlon, dlat = metres_to_degrees_box((minx + maxx) / 2, lat, distance_m)
    return (max(minx - dlon, -180.0), max(miny - dlat, -90.0), min(maxx + dlon, 180.0), min(maxy + dlat, 90.0))


def buffer_polygon(geom: shapely.Geometry, distance_m: float, frame: LocalFrame | None = None,
                   quad_segs: int = 16, metric: shapely.Geometry | None = None) -> tuple[shapely.Geometry, float]:
    """The buffer of ``geom`` (lon/lat) by ``distance_m`` metres, as lon/lat, and its area in m²
    (``metric``: ``geom`` already in ``frame``, to skip projecting it again)."""
    frame = frame or frame_for(geom)
    metric = frame.to_metric(geom) if metric is None else metric
    buf = shapely.buffer(metric, distance_m, quad_segs=quad_segs) if distance_m > 0 else metric
    return frame.to_lonlat(buf), float(buf.area)


def distances_m(geom: shapely.Geometry, geoms: np.ndarray, frame: LocalFrame | None = None,
                metric: shapely.Geometry | None = None) -> np.ndarray:
    """Ground distance in metres from ``geom`` to each of ``geoms`` (all lon/lat); 0 where they meet."""
    if len(geoms) == 0:
        return np.zeros(0)
    frame = frame or frame_for(geom)
    metric = frame.to_metric(geom) if metric is None else metric
    return shapely.distance(metric, frame.to_metric(np.asarray(geoms, dtype=object)))


def buffer_analysis(geom: shapely.Geometry, distance_m: float, candidates: Sequence[FeatureSet],
                    exclude: tuple[str, int] | None = None, quad_segs: int = 16) -> BufferResult:
    """Features of ``candidates`` within ``distance_m`` metres of ``geom`` (lon/lat), nearest first.

    ``exclude`` names a ``(layer, id)`` left out of the hits (the feature the buffer was drawn around).
    """
    frame = frame_for(geom)
    metric = frame.to_metric(geom)
    poly, area = buffer_polygon(geom, distance_m, frame, quad_segs, metric)
    hits: list[BufferHit] = []
    for fs in candidates:
        if not len(fs):
            continue
        d = distances_m(geom, fs.geometries, frame, metric)
        for i in np.flatnonzero(d <= distance_m + EPS_M):
            if exclude is not None and (fs.layer, fs.ids[i]) == exclude:
                continue
            hits.append(BufferHit(fs.layer, fs.ids[i], float(d[i]), fs.properties[i], fs.geometries[i]))
    hits.sort(key=lambda h: (h.distance_m, h.layer, h.id))
    return BufferResult(distance_m=distance_m, buffer=poly, area_m2=area, hits=hits)


__all__ = ["BufferHit", "BufferResult", "buffer_analysis", "buffer_polygon", "distances_m", "search_bbox"]
