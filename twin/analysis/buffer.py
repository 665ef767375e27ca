"""Buffer analysis: what lies within N metres of a geometry, with each feature's distance.

Method: the geometry is projected into a local azimuthal-equidistant frame centred on
it (:mod:`twin.analysis.metric`); a candidate is *inside* when its exact planar
distance to the geometry in that frame is at most N. Membership is decided by that
distance, not by intersecting the drawn polygon, so nothing inside is missed where the
polygon's straight edges cut the true circle short, and nothing outside is reported.
The buffer polygon returned for display has ``quad_segs`` segments per quarter circle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import shapely

from twin.analysis.metric import (
    LocalFrame,
    _transformers,
    frame_at,
    frame_for,
    metres_to_degrees_box,
)
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
    return bounds_search_bbox(geom.bounds, distance_m)


def bounds_search_bbox(bounds: BBox, distance_m: float) -> BBox:
    """:func:`search_bbox` of lon/lat ``bounds`` (a point's are ``(lon, lat, lon, lat)``)."""
    minx, miny, maxx, maxy = bounds
    lat = max(abs(miny), abs(maxy))
    dlon, dlat = metres_to_degrees_box((minx + maxx) / 2, lat, distance_m)
    return (max(minx - dlon, -180.0), max(miny - dlat, -90.0), min(maxx + dlon, 180.0), min(maxy + dlat, 90.0))


def buffer_polygon(geom: shapely.Geometry, distance_m: float, frame: LocalFrame | None = None,
                   quad_segs: int = 16, metric: shapely.Geometry | None = None) -> tuple[shapely.Geometry, float]:
    """The buffer of ``geom`` (lon/lat) by ``distance_m`` metres, as lon/lat, and its area in m²
    (``metric``: ``geom`` already in ``frame``, to skip projecting it again).

    Drawn by default in a local transverse Mercator frame (:class:`~twin.analysis.metric.LocalFrame`
    ``tmerc``: conformal, scale within 10⁻⁷ of 1 near its meridian, so the polygon is the true
    buffer to well under a millimetre per 100 m) — several times cheaper to project back to lon/lat
    than the azimuthal-equidistant frame the distances use, and the polygon is only drawn, never
    used to decide what is inside."""
    frame = frame or frame_for(geom, "tmerc")
    if metric is None and distance_m > 0 and shapely.get_type_id(geom) == 0:  # a point: the circle directly
        return _circle(frame, geom.x, geom.y, distance_m, quad_segs)
    metric = frame.to_metric(geom) if metric is None else metric
    buf = shapely.buffer(metric, distance_m, quad_segs=quad_segs) if distance_m > 0 else metric
    return frame.to_lonlat(buf), float(buf.area)


def _circle(frame: LocalFrame, lon: float, lat: float, r: float, quad_segs: int) -> tuple[shapely.Geometry, float]:
    """What ``shapely.buffer`` of the point makes in ``frame`` — the same ``4 * quad_segs`` vertices,
    clockwise from east — and its area, without the general buffer machinery (a point buffer is a
    sizeable part of a small buffer request)."""
    ring, area = circle_ring(frame, lon, lat, r, quad_segs)
    return shapely.polygons(ring), area


def circle_ring(frame: LocalFrame | None, lon: float, lat: float, r: float, quad_segs: int = 16) -> tuple[np.ndarray, float]:
    """The closed lon/lat ring (an ``(n + 1, 2)`` array) of the buffer of the point ``(lon, lat)`` by
    ``r`` metres drawn in ``frame`` (by default the point's ``tmerc`` frame), and its area in m² (the
    polygon of :func:`buffer_polygon`, without making a geometry of it: an answer only needs its
    coordinates).

    A small circle — one whose vertices the local linear map from metres to degrees at the point
    places within :data:`SMALL_RING_TOLERANCE_M` of the projected ones (up to 50 m at any latitude
    below 78°, 135 m at 31° N) — is drawn with that map directly: degrees per metre from the WGS84
    radii of curvature, no projection. Its error grows as ``r² · tan(lat) / R``, about a thousandth
    of the polygon's own chord error at 50 m, and the ring only draws the buffer: what lies inside is
    decided by distances (:func:`twin.analysis.source.features_within`)."""
    n = 4 * quad_segs
    cos, sin = _unit_circle(n)
    ring = np.empty((n + 1, 2))
    if small_ring_error_m(lat, r) <= SMALL_RING_TOLERANCE_M:
        dlon, dlat = degrees_per_metre(lat)
        ring[:, 0] = lon + (r * dlon) * cos
        ring[:, 1] = lat + (r * dlat) * sin
    else:
        frame = frame or frame_at(lon, lat, "tmerc")
        fwd, inv = _transformers(frame.lon0, frame.lat0, frame.kind)
        cx, cy = fwd.transform(lon, lat)
        ring[:, 0], ring[:, 1] = inv.transform(cx + r * cos, cy + r * sin)
    ring[-1] = ring[0]  # closed exactly
    return ring, float(0.5 * n * r * r * math.sin(2 * math.pi / n))  # the regular n-gon's (shoelace in the frame)


#: Largest distance, in metres, between a vertex of a small circle drawn by the local linear map and
#: the same vertex drawn in the projected frame (see :func:`circle_ring`).
SMALL_RING_TOLERANCE_M = 1e-3
#: WGS84 semi-major axis (m) and first eccentricity squared
_WGS84_A = 6_378_137.0
_WGS84_E2 = 0.0066943799901413165


def small_ring_error_m(lat: float, r: float) -> float:
    """An upper bound of the vertex error of the linear construction of :func:`circle_ring` for a circle
    of ``r`` metres at latitude ``lat`` (the second-order term, ``r² (|tan lat| + 0.1) / 2R``, which
    checked against geodesics on the WGS84 ellipsoid is 2.5–55 times the real error)."""
    return r * r * (abs(math.tan(math.radians(lat))) + 0.1) / (2 * _WGS84_A)


def degrees_per_metre(lat: float) -> tuple[float, float]:
    """Degrees of longitude and of latitude per metre on the ground at latitude ``lat`` (WGS84: the
    prime-vertical and meridional radii of curvature)."""
    phi = math.radians(lat)
    w = 1.0 - _WGS84_E2 * math.sin(phi) ** 2
    n = _WGS84_A / math.sqrt(w)
    m = _WGS84_A * (1.0 - _WGS84_E2) / w ** 1.5
    return math.degrees(1.0 / (n * max(math.cos(phi), 1e-12))), math.degrees(1.0 / m)


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = -2 * np.pi * np.arange(n + 1) / n
    cos, sin = np.cos(a), np.sin(a)
    cos[-1], sin[-1] = cos[0], sin[0]
    return cos, sin


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
    found = []
    for fs in candidates:
        if not len(fs):
            continue
        d = distances_m(geom, fs.geometries, frame, metric)
        keep = np.flatnonzero(d <= distance_m + EPS_M)
        found.append((fs.take(keep), d[keep]))
    return buffer_result(geom, distance_m, found, exclude, quad_segs)


def buffer_result(geom: shapely.Geometry, distance_m: float, found: Sequence[tuple[FeatureSet, np.ndarray]],
                  exclude: tuple[str, int] | None = None, quad_segs: int = 16) -> BufferResult:
    """The buffer of ``geom`` and the features already found within it, each with its distance in
    metres (``(features, distances)`` per layer, as :func:`twin.analysis.source.features_within`
    reads them), nearest first."""
    poly, area = buffer_polygon(geom, distance_m, quad_segs=quad_segs)
    hits: list[BufferHit] = []
    for fs, d in found:
        for i in range(len(fs)):
            if exclude is not None and (fs.layer, fs.ids[i]) == exclude:
                continue
            hits.append(BufferHit(fs.layer, fs.ids[i], float(d[i]), fs.properties[i], fs.geometries[i]))
    hits.sort(key=lambda h: (h.distance_m, h.layer, h.id))
    return BufferResult(distance_m=distance_m, buffer=poly, area_m2=area, hits=hits)


__all__ = ["BufferHit", "BufferResult", "buffer_analysis", "buffer_polygon", "buffer_result", "circle_ring", "distances_m",
           "search_bbox"]
