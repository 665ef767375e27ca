"""Cameras and video: view cones, "who sees this point", play URLs, the HLS files of the demo stream.

Thin: parsing and serialising only; the work is in :mod:`layers.cameras`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep, BBoxDep, SettingsDep, StoreDep
from gis_api.security import authorize, field_visible, hidden_fields
from layers import cameras as cam
from twin import geojson
from twin.errors import FeatureNotFound, InvalidParameter

router = APIRouter(tags=["Cameras and video"])
GEOJSON = "application/geo+json"


def _visible(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Camera features as the caller may see them: fields hidden by its roles removed, and the
    play URLs too when the stream URL is hidden (a guest sees where cameras look, not what)."""
    hidden = set(hidden_fields(request, "cameras"))
    if "stream_url" in hidden:
        hidden |= {"streams", "play_urls"}
    if hidden:
        feats = body.get("features") if body.get("type") == "FeatureCollection" else [body]
        for f in feats or []:
            props = f.get("properties") or {}
            for k in hidden & set(props):
                del props[k]
    return body


def _json(obj: Any, media_type: str = GEOJSON) -> Response:
    return Response(geojson.dumps(obj), media_type=media_type)


def point_param(
    point: Annotated[str, Query(description="The point as `lon,lat` (CRS84 degrees)", examples=["120.75,31.65"])],
) -> tuple[float, float]:
    parts = point.split(",")
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError:
        raise InvalidParameter(f"point must be lon,lat (two numbers), not {point!r}") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"point {point!r} is not a longitude,latitude in range")
    return lon, lat


PointDep = Annotated[tuple[float, float], Depends(point_param)]
Occlusion = Annotated[bool, Query(description="Take buildings (footprint × height_m) into account: "
                                  "a camera counts only where its sight line passes no building")]
TargetHeight = Annotated[float, Query(ge=0, le=100, description="Height above the ground of what is to be "
                                      "seen, metres (occlusion only): 0 the ground, 1.7 a face")]


@router.get(
    "/cameras/covering",
    summary="Cameras whose view cone covers a point",
    description="Cameras within their range of the point and within their field of view of it, nearest "
    "first, with `distance_m` and `bearing_deg` (from the camera to the point). `occlusion=true` also "
    "drops cameras whose sight line to the point is cut by a building.",
    response_class=Response, responses={200: {"content": {GEOJSON: {}}}},
)
async def covering(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep, point: PointDep,
                   occlusion: Occlusion = False, target_height_m: TargetHeight = 0.0,
                   status: Annotated[str | None, Query(description="Only cameras with this status, e.g. online")]
                   = None) -> Response:
    lon, lat = point
    authorize(request, "cameras", "read")
    body = await run_in_threadpool(lambda: cam.covering(
        store, settings, lon, lat, occlusion=occlusion, target_height_m=target_height_m, status=status,
        base_url=base))
    return _json(_visible(request, body))


@router.get(
    "/cameras/cones",
    summary="View cones of the cameras in an area, as a layer",
    description="One Polygon feature per camera (CRS84) with the camera's properties, `area_m2` and its "
    "play URLs. With `occlusion=true` each polygon is the part of the cone buildings leave visible.",
    response_class=Response, responses={200: {"content": {GEOJSON: {}}}},
)
async def cones(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep, bbox: BBoxDep,
                limit: Annotated[int, Query(ge=1, description="Cones per page")] = 100,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                occlusion: Occlusion = False, target_height_m: TargetHeight = 0.0) -> Response:
    authorize(request, "cameras", "read")
    body = await run_in_threadpool(lambda: cam.cones(
        store, settings, bbox, limit, offset, occlusion=occlusion, target_height_m=target_height_m,
        base_url=base))
    return _json(_visible(request, body))


CameraId = Annotated[str, Path(description="Camera feature id or code (e.g. 12 or CAM00012)",
                               pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


@router.get(
    "/cameras/{camera}/cone",
    summary="One camera's view cone",
    description="The cone (apex at the camera, `heading_deg` clockwise from north, `fov_deg` wide, "
    "`range_m` long) as a GeoJSON Polygon; `occlusion=true` cuts away what buildings hide.",
    response_class=Response, responses={200: {"content": {GEOJSON: {}}}},
)
async def camera_cone(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep, camera: CameraId,
                      occlusion: Occlusion = False, target_height_m: TargetHeight = 0.0) -> Response:
    authorize(request, "cameras", "read")

    def run() -> dict[str, Any]:
        record = cam.find_camera(store, camera)
        return cam.cone_feature(record, settings, store, occlusion=occlusion, target_height_m=target_height_m,
                                base_url=base)

    return _json(_visible(request, await run_in_threadpool(run)))


@router.get("/cameras/{camera}/streams", summary="One camera's play URLs by protocol (hls, flv, rtsp, …)")
async def camera_streams(request: Request, store: StoreDep, base: BaseUrlDep, camera: CameraId) -> Response:
    field_visible(request, "cameras", "stream_url")
    record = await run_in_threadpool(cam.find_camera, store, camera)
    return _json({"camera_id": record.id, "code": record.props.get("code"),
                  "gb28181_id": record.props.get("gb28181_id"),
                  "streams": cam.play_urls(record.props, base)}, media_type="application/json")


MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".m4s": "video/iso.segment",
               ".mp4": "video/mp4"}
_FILE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(m3u8|ts|m4s|mp4)$")


@router.get(
    "/video/{stream}/{file}",
    summary="HLS playlist and segments of a stream published under TWIN_HOME/video",
    description="`twin demo` publishes the synthetic test stream `demo`: `/video/demo/index.m3u8`.",
)
async def video_file(request: Request, settings: SettingsDep,
                     stream: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
                     file: Annotated[str, Path(description="index.m3u8 or a segment")]) -> Response:
    field_visible(request, "cameras", "stream_url")
    if not _FILE.match(file):
        raise InvalidParameter(f"not an HLS file name: {file!r}")
    path = settings.video_dir / stream / file
    try:  # read whole: ffmpeg replaces the playlist and deletes old segments while we serve
        data = await run_in_threadpool(path.read_bytes)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FeatureNotFound(f"no {file} in video stream {stream!r} (is the stream running?)") from None
    suffix = path.suffix
    cache = "no-cache" if suffix == ".m3u8" else "public, max-age=60"
    return Response(data, media_type=MEDIA_TYPES[suffix], headers={"Cache-Control": cache})


def register(app: FastAPI) -> None:
    app.include_router(router)
