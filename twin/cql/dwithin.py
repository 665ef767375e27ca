"""S_DWITHIN's literal: the set of points within a distance (metres) of a CRS84 geometry.

``S_DWITHIN(geom, g, d)`` is evaluated as ``S_INTERSECTS(geom, grown(g, d))`` so both
backends answer with the same GEOS predicate on the same polygon. ``grown`` must stay a
valid lon/lat polygon for any distance and place, so:

* a point grows into a geodesic circle on the WGS84 ellipsoid (``pyproj.Geod``), cut at
  the antimeridian and closed over a pole the circle contains; from half the
  circumference of the Earth on, it is the whole world;
* a small geometry (it and the distance within ``LOCAL_KM`` of its centre) is buffered in
  an equidistant projection centred on it (error well under 0.1 % of the distance);
* anything larger is the union of the geometry and geodesic circles around its vertices,
  densified so the scallops between circles stay under about 0.1 % of the distance.

Coordinates outside lon [-180, 180] / lat [-90, 90] are refused: there is no distance from
a point that is not on the Earth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer

#: the whole world in CRS84
WORLD = shapely.box(-180.0, -90.0, 180.0, 90.0)
#: no two points of the WGS84 ellipsoid are further apart (half a meridian)
MAX_DISTANCE_M = 20_003_931.5
#: the equidistant-projection buffer is used while geometry and distance fit in this radius
LOCAL_KM = 500.0
#: vertices of one geodesic circle
CIRCLE_VERTICES = 256
#: at most this many circles for a large geometry
MAX_CIRCLES = 128

_GEOD = Geod(ellps="WGS84")


class OutsideTheEarth(ValueError):
    """The geometry has coordinates outside lon [-180, 180] / lat [-90, 90]."""


def grown(g: Any, metres: float) -> Any:
    """``g`` (CRS84) grown by ``metres`` (≥ 0) as a valid CRS84 (multi)polygon."""
    x0, y0, x1, y1 = g.bounds
    if x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        raise OutsideTheEarth("S_DWITHIN needs longitudes in [-180, 180] and latitudes in [-90, 90]")
    if metres <= 0:
        return g
    if metres >= MAX_DISTANCE_M:
        return WORLD
    if isinstance(g, shapely.Point):
        return _polygonal(_circle(g.x, g.y, metres))
    c = g.centroid
    _, _, reach = _GEOD.inv(np.full(len(pts := shapely.get_coordinates(g)), c.x), np.full(len(pts), c.y),
                            pts[:, 0], pts[:, 1])
    if float(np.max(reach)) + metres <= LOCAL_KM * 1000:
        local = _local_buffer(g, c, metres)
        if local is not None:
            return local
    return _polygonal(_circles_around(g, metres))


def _polygonal(g: Any) -> Any:
    """Only the polygons of ``g`` (make_valid and cuts can leave slivers of lines)."""
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    polys = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(polys) if polys else g


def _local_buffer(g: Any, c: Any, metres: float) -> Any | None:
    """Buffer in an azimuthal equidistant projection centred on ``c``; None if it leaves ±180/±90."""
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
    fwd = Transformer.from_crs("OGC:CRS84", aeqd, always_xy=True)
    back = Transformer.from_crs(aeqd, "OGC:CRS84", always_xy=True)
    local = shapely.transform(g, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    out = shapely.transform(shapely.buffer(local, metres, quad_segs=32),
                            lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    x0, y0, x1, y1 = out.bounds
    lons = shapely.get_coordinates(out)[:, 0]
    # a jump of more than 180° between neighbours means the ring crossed the antimeridian
    if not (out.is_valid and x0 >= -180 and x1 <= 180 and y0 >= -90 and y1 <= 90) or (
            np.abs(np.diff(lons)).max(initial=0) > 180):
        return None
    return out


def _circles_around(g: Any, metres: float) -> Any:
    """``g`` plus geodesic circles around its (densified) vertices, valid in CRS84."""
    pts = shapely.get_coordinates(g)
    # densify so circles overlap well: spacing about a quarter of the distance (in degrees
    # of latitude, a lower bound of the length of a degree anywhere)
    step_deg = max(metres / 4 / 110_574.0, 1e-6)
    try:
        dense = shapely.get_coordinates(shapely.segmentize(g, step_deg))
    except shapely.errors.GEOSException:  # degenerate parts (a line of two equal points)
        dense = pts
    dense = np.unique(dense, axis=0)
    if len(dense) > MAX_CIRCLES:
        dense = dense[np.linspace(0, len(dense) - 1, MAX_CIRCLES).round().astype(int)]
    circles = [_circle(x, y, metres, vertices=64 if len(dense) > 8 else CIRCLE_VERTICES) for x, y in dense]
    body = shapely.intersection(g, WORLD) if g.geom_type.endswith("Polygon") else None
    return shapely.make_valid(shapely.union_all([*circles, *([body] if body is not None else [])]))


def _circle(lon: float, lat: float, metres: float, vertices: int = CIRCLE_VERTICES) -> Any:
    """The geodesic circle of radius ``metres`` around (lon, lat), cut at ±180, closed at a pole."""
    az = np.linspace(0.0, 360.0, vertices, endpoint=False)
    lons, lats, _ = _GEOD.fwd(np.full(vertices, lon), np.full(vertices, lat), az, np.full(vertices, metres))
    lons = np.degrees(np.unwrap(np.radians(lons)))
    # the closing step, wrapped to (-180, 180]: the ring winds once around a pole if the
    # longitudes do not come back to where they started
    back = (lons[0] - lons[-1] + 180.0) % 360.0 - 180.0
    winding = lons[-1] + back - lons[0]
    north_in = _GEOD.inv(lon, lat, lon, 90.0)[2] <= metres
    south_in = _GEOD.inv(lon, lat, lon, -90.0)[2] <= metres
    if abs(winding) > 180.0:  # one pole inside: close the ring along the pole's parallel
        pole = 90.0 if north_in else -90.0
        end = lons[0] + math.copysign(360.0, winding)
        ring = [*zip(lons, lats, strict=True), (end, lats[0]), (end, pole), (lons[0], pole)]
        return _split_at_antimeridian(shapely.Polygon(ring))
    shape = _split_at_antimeridian(shapely.Polygon(np.column_stack([lons, lats])))
    if north_in and south_in:  # the ring is around the antipode: the circle is the rest
        return shapely.difference(WORLD, shape)
    return shape


def _split_at_antimeridian(poly: Any) -> Any:
    """A polygon in unwrapped longitudes (any range) as valid parts within [-180, 180]."""
    poly = shapely.make_valid(poly)
    x0, _, x1, _ = poly.bounds
    parts = []
    for k in range(math.floor((x0 + 180.0) / 360.0), math.floor((x1 + 180.0) / 360.0) + 1):
        window = shapely.box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0)
        piece = shapely.intersection(poly, window)
        if not piece.is_empty:
            parts.append(shapely.transform(piece, lambda xy, k=k: xy - np.array([360.0 * k, 0.0])))
    return shapely.make_valid(shapely.union_all(parts))
