"""Cameras as map features: view cones, "who sees this point", play URLs.

The geometry is in :mod:`layers.viewshed`; this module reads cameras and buildings from the
store, places them in a local metric frame and returns GeoJSON-ready dicts (lon/lat, CRS84).
No HTTP here: the router in ``gis_api.routers.cameras`` only parses and serialises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import shapely
from shapely.geometry import LineString, Point, mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Float, func, literal, select

from layers.viewshed import (
    LocalFrame,
    Obstacle,
    ObstacleIndex,
    ViewCone,
    line_of_sight,
    occluders,
    visible_area,
)
from twin.errors import FeatureNotFound, InvalidParameter, LimitExceeded
from twin.params import BBox
from twin.schema import Camera
from twin.settings import TwinSettings
from twin.store import FeatureQuery, SpatialStore

#: play-URL protocols a camera may offer, as video platforms and GB/T 28181 gateways expose a
#: channel (HLS for browsers, HTTP-FLV/WS-FLV for flv.js players, RTSP/RTMP for desktop clients).
PROTOCOLS = ("hls", "flv", "rtsp", "rtmp", "webrtc")
METRES_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class CameraRecord:
    """One camera row: feature id, properties (the table's columns) and its lon/lat."""

    id: int
    props: dict[str, Any]
    lon: float
    lat: float

    def cone(self, frame: LocalFrame) -> ViewCone:
        p = frame.to_local(Point(self.lon, self.lat))
        return self.cone_at(p.x, p.y)

    def cone_at(self, x: float, y: float) -> ViewCone:
        """The cone with its apex at ``(x, y)``, the camera's place in some local frame."""
        return ViewCone(x, y, float(self.props["heading_deg"]) % 360.0,
                        min(360.0, max(0.0, float(self.props["fov_deg"]))), max(0.0, float(self.props["range_m"])))

    def eye_height(self, settings: TwinSettings) -> float:
        h = self.props.get("mount_height_m")
        return float(h) if h is not None and h > 0 else settings.camera_default_mount_height_m


def _records(page: Any) -> list[CameraRecord]:
    return [CameraRecord(i, p, float(g.x), float(g.y))
            for i, p, g in zip(page.ids, page.properties, page.geometries, strict=True)]


def find_camera(store: SpatialStore, ident: str) -> CameraRecord:
    """A camera by feature id (digits) or by code."""
    if ident.isdigit():
        return _records(store.get("cameras", int(ident)))[0]
    page = store.query(FeatureQuery("cameras", filters={"code": ident}, limit=1))
    if not page.ids:
        raise FeatureNotFound(f"no camera with id or code {ident!r}")
    return _records(page)[0]


def _around(lon: float, lat: float, radius_m: float) -> BBox:
    dlat = radius_m / METRES_PER_DEG_LAT
    dlon = radius_m / (METRES_PER_DEG_LAT * max(0.01, math.cos(math.radians(lat))))
    return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)


def _obstacles(store: SpatialStore, bbox: BBox, frame: LocalFrame, settings: TwinSettings) -> list[Obstacle]:
    cap = settings.camera_max_obstacles
    page = store.query(FeatureQuery("buildings", bbox=bbox, properties=["height_m"], limit=cap + 1))
    if page.number_returned > cap:
        raise LimitExceeded(f"more than {cap} buildings around the cone(s); ask for fewer cameras",
                            detail={"camera_max_obstacles": cap})
    local = frame.many_to_local(page.geometries)
    return [Obstacle(g, float(p["height_m"])) for g, p in zip(local, page.properties, strict=True)]


def _check_target_height(target_height_m: float) -> None:
    if not (math.isfinite(target_height_m) and 0.0 <= target_height_m <= 100.0):
        raise InvalidParameter(f"target_height_m must be between 0 and 100 metres, not {target_height_m}")


def cone_feature(cam: CameraRecord, settings: TwinSettings, store: SpatialStore | None = None, *,
                 occlusion: bool = False, target_height_m: float = 0.0,
                 obstacles: ObstacleIndex | None = None, frame: LocalFrame | None = None,
                 base_url: str | None = None) -> dict[str, Any]:
    """The camera's view cone as a GeoJSON Feature (Polygon, CRS84).

    With ``occlusion`` the polygon is what stays visible at ``target_height_m`` above the ground
    once buildings (from ``obstacles`` or read from ``store``) are taken away.
    """
    _check_target_height(target_height_m)
    frame = frame or LocalFrame.around(cam.lon, cam.lat)
    cone = cam.cone(frame)
    geom: BaseGeometry = cone.polygon()
    if occlusion:
        if obstacles is None:
            if store is None:
                raise ValueError("occlusion needs the store or the obstacles")
            obstacles = ObstacleIndex(
                _obstacles(store, _around(cam.lon, cam.lat, cone.range_m * 1.02), frame, settings))
        near = obstacles.near(geom)
        geom = visible_area(cone, cam.eye_height(settings), target_height_m, occluders(cone.x, cone.y, near))
    props = {
        "camera_id": cam.id,
        **{k: cam.props.get(k) for k in ("code", "name", "heading_deg", "fov_deg", "range_m",
                                         "mount_height_m", "status", "grid_code")},
        "occlusion": occlusion,
        "area_m2": round(float(geom.area), 1),
        "streams": play_urls(cam.props, base_url),
    }
    if occlusion:
        props["target_height_m"] = target_height_m
        props["eye_height_m"] = cam.eye_height(settings)
    out = shapely.set_precision(frame.to_lonlat(geom), 1e-7) if not geom.is_empty else geom
    return {"type": "Feature", "id": cam.id, "geometry": None if out.is_empty else mapping(out),
            "properties": props}


def cones(store: SpatialStore, settings: TwinSettings, bbox: BBox | None, limit: int, offset: int, *,
          occlusion: bool = False, target_height_m: float = 0.0, base_url: str | None = None) -> dict[str, Any]:
    """View cones of the cameras in ``bbox`` as a FeatureCollection (one building read for all)."""
    _check_target_height(target_height_m)
    cap = settings.camera_max_cones // (10 if occlusion else 1)
    if limit > cap:
        raise LimitExceeded(f"at most {cap} cones per request{' with occlusion' if occlusion else ''}",
                            detail={"max_limit": cap})
    page = store.query(FeatureQuery("cameras", bbox=bbox, limit=limit, offset=offset))
    cams = _records(page)
    feats: list[dict[str, Any]] = []
    if cams:
        lon = sum(c.lon for c in cams) / len(cams)
        lat = sum(c.lat for c in cams) / len(cams)
        frame = LocalFrame.around(lon, lat)
        obstacles = None
        if occlusion:
            reach = max(float(c.props["range_m"]) for c in cams) * 1.02
            boxes = [_around(c.lon, c.lat, reach) for c in cams]
            union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                     max(b[3] for b in boxes))
            obstacles = ObstacleIndex(_obstacles(store, union, frame, settings))
        feats = [cone_feature(c, settings, occlusion=occlusion, target_height_m=target_height_m,
                              obstacles=obstacles, frame=frame, base_url=base_url) for c in cams]
    return {"type": "FeatureCollection", "numberMatched": page.number_matched,
            "numberReturned": len(feats), "features": feats}


_CANDIDATES: dict[tuple[str, bool], Any] = {}


def _covering_candidates(store: SpatialStore, lon: float, lat: float, status: str | None,
                         limit: int) -> list[CameraRecord]:
    """Cameras near enough to ``(lon, lat)`` to maybe see it, in ONE statement and one round trip.

    The search box is the point ± the longest range stored (a scalar subquery in the same
    statement, not a query of its own), found through the spatial index; positions come back as
    ``ST_X``/``ST_Y`` (no WKB to decode). The statement is built once per backend and reused with
    bound parameters, so SQLAlchemy compiles it once. Cameras with no range see nothing.
    """
    key = (store.dialect.name, status is not None)
    stmt = _CANDIDATES.get(key)
    if stmt is None:
        from sqlalchemy import bindparam

        from twin.catalog import get_layer

        tbl = Camera.__table__
        cols = get_layer("cameras").property_columns
        longest = select((func.coalesce(func.max(tbl.c.range_m), 0.0) * 1.02).label("r")).subquery("longest")
        x, y = bindparam("lon", type_=Float), bindparam("lat", type_=Float)
        kx, ky = bindparam("kx", type_=Float), bindparam("ky", type_=Float)
        r = longest.c.r
        box = (x - r * kx, y - r * ky, x + r * kx, y + r * ky)
        stmt = (select(tbl.c.id, *cols, func.ST_X(tbl.c.geom), func.ST_Y(tbl.c.geom))
                .select_from(tbl.join(longest, literal(True)))
                .where(store.dialect.bbox_clause(tbl, box), tbl.c.range_m > 0)  # type: ignore[arg-type]
                .order_by(tbl.c.id).limit(bindparam("cap")))
        if status is not None:
            stmt = stmt.where(tbl.c.status == bindparam("status"))
        _CANDIDATES[key] = stmt = (stmt, [c.name for c in cols])
    query, names = stmt
    params: dict[str, Any] = {"lon": lon, "lat": lat, "ky": 1.0 / METRES_PER_DEG_LAT, "cap": limit,
                              "kx": 1.0 / (METRES_PER_DEG_LAT * max(0.01, math.cos(math.radians(lat))))}
    if status is not None:
        params["status"] = status
    with store.engine.connect() as conn:
        rows = conn.execute(query, params).all()
    return [CameraRecord(r[0], dict(zip(names, r[1:-2], strict=True)), float(r[-2]), float(r[-1])) for r in rows]


def max_range(store: SpatialStore) -> float:
    """The longest camera range stored (how far to look for cameras that may see a point)."""
    with store.engine.connect() as conn:
        value = conn.execute(select(func.max(Camera.range_m))).scalar()
    return float(value or 0.0)


def covering(store: SpatialStore, settings: TwinSettings, lon: float, lat: float, *, occlusion: bool = False,
             target_height_m: float = 0.0, status: str | None = None,
             base_url: str | None = None) -> dict[str, Any]:
    """Cameras whose view cone covers ``(lon, lat)``, nearest first, as a FeatureCollection.

    Exact tests (geodesic-accurate distance in a local frame, angle off the heading), not the
    cone polygon's chords. With ``occlusion`` a camera counts only if no building cuts its sight
    line to the point at ``target_height_m``.
    """
    _check_target_height(target_height_m)
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"point {lon},{lat} is not a longitude,latitude")
    found: list[tuple[float, dict[str, Any]]] = []
    cams = _covering_candidates(store, lon, lat, status, settings.camera_max_cones + 1)
    if cams:
        frame = LocalFrame.around(lon, lat)
        xs, ys = frame.points_to_local([c.lon for c in cams] + [lon], [c.lat for c in cams] + [lat])
        target = Point(xs[-1], ys[-1])
        hits: list[tuple[CameraRecord, ViewCone]] = []
        for cam, x, y in zip(cams, xs, ys, strict=False):
            cone = cam.cone_at(float(x), float(y))
            if cone.contains(target.x, target.y):
                hits.append((cam, cone))
        index = ObstacleIndex([])
        if occlusion and hits:
            far = max(math.hypot(target.x - c.x, target.y - c.y) for _, c in hits)
            index = ObstacleIndex(_obstacles(store, _around(lon, lat, far * 1.02 + 1), frame, settings))
        for cam, cone in hits:
            dist = math.hypot(target.x - cone.x, target.y - cone.y)
            if occlusion:
                near = index.near(LineString([(cone.x, cone.y), (target.x, target.y)]))
                if not line_of_sight((cone.x, cone.y, cam.eye_height(settings)),
                                     (target.x, target.y, target_height_m), occluders(cone.x, cone.y, near)):
                    continue
            bearing = math.degrees(math.atan2(target.x - cone.x, target.y - cone.y)) % 360.0
            found.append((dist, {
                "type": "Feature", "id": cam.id,
                "geometry": {"type": "Point", "coordinates": [cam.lon, cam.lat]},
                "properties": {**_public(cam.props), "distance_m": round(dist, 2),
                               "bearing_deg": round(bearing, 2), "streams": play_urls(cam.props, base_url)},
            }))
    found.sort(key=lambda t: (t[0], t[1]["id"]))
    return {"type": "FeatureCollection", "numberMatched": len(found), "numberReturned": len(found),
            "point": [lon, lat], "occlusion": occlusion, "features": [f for _, f in found]}


def _public(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "streams"}


def play_urls(props: dict[str, Any], base_url: str | None = None) -> dict[str, str]:
    """The camera's play URLs by protocol: its ``streams`` plus ``stream_url`` under ``protocol``.

    A GB/T 28181 channel is played through the gateway that registered it, which offers it as
    RTSP (and usually HLS/FLV too); ``protocol = "gb28181"`` with an ``rtsp://`` URL is listed as
    ``rtsp``. Relative URLs (the demo stream, ``/video/demo/index.m3u8``) are resolved against
    ``base_url`` when it is given.
    """
    urls: dict[str, str] = {}
    main, proto = props.get("stream_url"), props.get("protocol")
    if isinstance(main, str) and main:
        key = proto if proto in PROTOCOLS else _protocol_of(main)
        if key:
            urls[key] = main
    streams = props.get("streams")
    if isinstance(streams, dict):
        urls.update({k: v for k, v in streams.items() if k in PROTOCOLS and isinstance(v, str) and v})
    if base_url:
        urls = {k: urljoin(base_url.rstrip("/") + "/", v) if v.startswith("/") else v for k, v in urls.items()}
    return {k: urls[k] for k in PROTOCOLS if k in urls}


def _protocol_of(url: str) -> str | None:
    low = url.lower()
    if low.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if low.startswith("rtmp://"):
        return "rtmp"
    if ".m3u8" in low:
        return "hls"
    if ".flv" in low:
        return "flv"
    return None


__all__ = ["CameraRecord", "PROTOCOLS", "cone_feature", "cones", "covering", "find_camera", "max_range",
           "play_urls"]
