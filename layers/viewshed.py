"""What a camera sees on the ground: its view cone, and the part of it buildings leave visible.

Pure geometry, no database: everything here works in a local metric frame (metres east and
north of a chosen origin, :class:`LocalFrame`) with the camera at ``(x, y)``. Headings are
degrees clockwise from north, as compasses and the ``cameras`` table give them.

Occlusion model (documented in ``docs/video-and-events.md``): flat ground, buildings as
flat-roofed prisms of ``height_m`` standing on their footprints, the camera's eye at
``mount_height_m`` above the ground and the target ``target_height_m`` above it. A building
hides a target when the straight sight line passes through the prism. For a camera above the
target this has an exact polygon form: seen from the camera, a building of height ``H`` hides
the ground behind each wall point at distance ``s`` up to distance ``k·s`` with
``k = (eye − target)/(eye − H)`` (to the end of the range when ``H ≥ eye``), so the shadow of a
wall edge is the quadrilateral between the edge and its image under the homothety of ratio
``k`` centred on the camera. The union of those quads and the footprints is the hidden area;
:func:`line_of_sight` gives the same answer for one point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

#: arc vertices per degree of field of view are 1/ARC_STEP_DEG (a 90° cone: 46 arc points)
ARC_STEP_DEG = 2.0


@dataclass(frozen=True)
class LocalFrame:
    """A transverse Mercator frame (metres, GRS80/CGCS2000 ellipsoid) centred on ``(lon0, lat0)``.

    Across a town (a few km) its scale error is below 1e-6 and grid north is within a few
    hundredths of a degree of true north, so distances and compass headings can be used as is.
    """

    lon0: float
    lat0: float

    @classmethod
    def around(cls, lon: float, lat: float) -> LocalFrame:
        """A frame near ``(lon, lat)``; rounded to 0.01° so nearby requests share transformers."""
        return cls(round(lon, 2), round(lat, 2))

    def to_local(self, geom: BaseGeometry) -> BaseGeometry:
        fwd, _ = _transformers(self.lon0, self.lat0)
        return shapely.transform(geom, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))

    def to_lonlat(self, geom: BaseGeometry) -> BaseGeometry:
        _, inv = _transformers(self.lon0, self.lat0)
        return shapely.transform(geom, lambda xy: np.column_stack(inv.transform(xy[:, 0], xy[:, 1])))

    def points_to_local(self, lons: Sequence[float], lats: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Many lon/lat points at once, no geometry objects (one pyproj call)."""
        fwd, _ = _transformers(self.lon0, self.lat0)
        xs, ys = fwd.transform(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        return np.asarray(xs), np.asarray(ys)

    def many_to_local(self, geoms: Sequence[BaseGeometry] | np.ndarray) -> np.ndarray:
        fwd, _ = _transformers(self.lon0, self.lat0)
        arr = np.asarray(geoms, dtype=object)
        if len(arr) == 0:
            return arr
        return shapely.transform(arr, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))


@lru_cache(maxsize=64)
def _transformers(lon0: float, lat0: float) -> tuple[Transformer, Transformer]:
    tm = f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
    return (Transformer.from_crs("EPSG:4326", tm, always_xy=True),
            Transformer.from_crs(tm, "EPSG:4326", always_xy=True))


@dataclass(frozen=True)
class ViewCone:
    """A camera's horizontal view: apex ``(x, y)`` in a local frame, heading, field of view, range."""

    x: float
    y: float
    heading_deg: float
    fov_deg: float
    range_m: float

    @property
    def full_circle(self) -> bool:
        return self.fov_deg >= 360.0

    def polygon(self) -> Polygon:
        """The sector as a polygon: apex plus arc vertices every ``ARC_STEP_DEG`` (a disc for 360°)."""
        if self.range_m <= 0 or self.fov_deg <= 0:
            return Polygon()
        if self.full_circle:
            return Point(self.x, self.y).buffer(self.range_m, quad_segs=int(90 / ARC_STEP_DEG))
        n = max(2, math.ceil(self.fov_deg / ARC_STEP_DEG) + 1)
        bearings = np.radians(self.heading_deg + np.linspace(-self.fov_deg / 2, self.fov_deg / 2, n))
        arc = np.column_stack([self.x + self.range_m * np.sin(bearings), self.y + self.range_m * np.cos(bearings)])
        return Polygon([(self.x, self.y), *arc.tolist()])

    def contains(self, x: float, y: float) -> bool:
        """Exact test (true sector, not the polygon's chords): within range and within the angle."""
        dx, dy = x - self.x, y - self.y
        dist = math.hypot(dx, dy)
        if dist > self.range_m:
            return False
        if self.full_circle or dist == 0:
            return True
        return angle_off_heading(self.heading_deg, bearing_deg(dx, dy)) <= self.fov_deg / 2 + 1e-9


def bearing_deg(dx: float, dy: float) -> float:
    """Compass bearing (0 = north, 90 = east) of the vector ``(dx east, dy north)``."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


def angle_off_heading(heading_deg: float, bearing: float) -> float:
    """Absolute angle in degrees (0…180) between a heading and a bearing."""
    d = (bearing - heading_deg) % 360.0
    return min(d, 360.0 - d)


@dataclass(frozen=True)
class Obstacle:
    """A building prism: footprint in the local frame, height above ground in metres."""

    footprint: BaseGeometry
    height_m: float


def line_of_sight(eye: tuple[float, float, float], target: tuple[float, float, float],
                  obstacles: Iterable[Obstacle]) -> bool:
    """True when no prism cuts the straight line from ``eye`` (x, y, z) to ``target`` (x, y, z).

    The sight line's height varies linearly with horizontal distance, so over the part of the
    line above a footprint it is lowest at one end of that part: the line is cut when the
    building is taller than the line there.
    """
    ex, ey, ez = eye
    tx, ty, tz = target
    total = math.hypot(tx - ex, ty - ey)
    if total == 0:
        return True
    seg = LineString([(ex, ey), (tx, ty)])
    for ob in obstacles:
        if ob.height_m <= min(ez, tz) or not ob.footprint.intersects(seg):
            continue
        crossing = ob.footprint.intersection(seg)
        coords = shapely.get_coordinates(crossing)
        if len(coords) == 0:
            continue
        s = np.hypot(coords[:, 0] - ex, coords[:, 1] - ey) / total  # 0 at the eye, 1 at the target
        line_h = ez + (tz - ez) * s
        if np.any(ob.height_m > line_h + 1e-9):
            return False
    return True


def shadow(eye: tuple[float, float, float], target_height_m: float, ob: Obstacle,
           reach_m: float) -> BaseGeometry:
    """The ground area (at target height) that ``ob`` hides from ``eye``, out to ``reach_m``.

    Exact for an eye above the target (see the module docstring); an obstacle no taller than
    the target hides nothing.
    """
    parts = shadow_parts(eye, target_height_m, ob, reach_m)
    return shapely.union_all(parts) if len(parts) else Polygon()


def shadow_parts(eye: tuple[float, float, float], target_height_m: float, ob: Obstacle,
                 reach_m: float) -> np.ndarray:
    """The pieces whose union is :func:`shadow`: one quadrilateral per wall edge, and the footprint."""
    ex, ey, ez = eye
    ht, H = target_height_m, ob.height_m
    if H <= ht or ez <= ht:
        return np.array([], dtype=object)
    rings = _rings(ob.footprint)
    if not rings:
        return np.array([ob.footprint], dtype=object)
    p = np.concatenate([r[:-1] for r in rings]) - (ex, ey)
    q = np.concatenate([r[1:] for r in rings]) - (ex, ey)
    d = q - p
    den = np.einsum("ij,ij->i", d, d)
    t = np.clip(np.divide(-np.einsum("ij,ij->i", p, d), den, out=np.zeros_like(den), where=den > 0), 0.0, 1.0)
    near = np.hypot(*(p + t[:, None] * d).T)  # distance from the eye to each edge
    keep = near > 1e-6  # an edge through the eye: the camera is mounted on that wall
    far = np.divide(reach_m * 1.01, near, out=np.zeros_like(near), where=keep)
    k = np.minimum((ez - ht) / (ez - H), far) if H < ez else far
    keep &= k > 1.0
    p, q, k = p[keep], q[keep], k[keep][:, None]
    quads = np.stack([p, q, q * k, p * k, p], axis=1) + (ex, ey)
    polys = shapely.polygons(quads)
    polys = polys[shapely.area(polys) > 0]
    return np.concatenate([shapely.make_valid(polys), np.array([ob.footprint], dtype=object)])


def _rings(geom: BaseGeometry) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        out.append(np.asarray(poly.exterior.coords))
        out.extend(np.asarray(r.coords) for r in poly.interiors)
    return out


def visible_area(cone: ViewCone, eye_height_m: float, target_height_m: float,
                 obstacles: Iterable[Obstacle]) -> BaseGeometry:
    """The cone minus what the obstacles hide.

    Pass the obstacles through :func:`occluders` first, as for :func:`line_of_sight`.
    """
    poly = cone.polygon()
    eye = (cone.x, cone.y, eye_height_m)
    parts = [shadow_parts(eye, target_height_m, ob, cone.range_m) for ob in obstacles
             if ob.footprint.intersects(poly)]
    hidden = np.concatenate(parts) if parts else np.array([], dtype=object)
    if len(hidden) == 0:
        return poly
    return poly.difference(shapely.union_all(hidden))


class ObstacleIndex:
    """Obstacles in an STRtree, for many cones over one set of buildings."""

    def __init__(self, obstacles: Sequence[Obstacle]):
        self.obstacles = list(obstacles)
        self._tree = shapely.STRtree([o.footprint for o in self.obstacles])

    def near(self, geom: BaseGeometry) -> list[Obstacle]:
        """The obstacles whose footprint intersects ``geom``."""
        return [self.obstacles[i] for i in self._tree.query(geom, predicate="intersects")]


#: a camera this close to a footprint (metres) is taken to be mounted on that building
MOUNT_TOLERANCE_M = 0.5


def occluders(apex_x: float, apex_y: float, obstacles: Iterable[Obstacle]) -> list[Obstacle]:
    """The obstacles that can hide things from a camera at the apex: every building except the
    one(s) it is mounted on (within ``MOUNT_TOLERANCE_M`` of the apex), which it looks out from."""
    apex = Point(apex_x, apex_y)
    return [ob for ob in obstacles if ob.footprint.distance(apex) > MOUNT_TOLERANCE_M]


__all__ = [
    "ARC_STEP_DEG", "LocalFrame", "Obstacle", "ObstacleIndex", "ViewCone", "angle_off_heading", "bearing_deg",
    "line_of_sight", "occluders", "shadow", "shadow_parts", "visible_area",
]
