"""Quantized-mesh terrain for CesiumJS: ``/terrain/layer.json`` and ``/terrain/{z}/{x}/{y}.terrain``.

The work is in :mod:`scenes.terrain`; this module picks the DEM from the settings,
negotiates the extension (Cesium asks for vertex normals in ``Accept``) and the
encoding (tiles are kept gzipped and sent with ``Content-Encoding: gzip``, which the
browser undoes before Cesium reads them), and answers ``If-None-Match`` with 304.
"""

from __future__ import annotations

import gzip
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gis_api.responses import JSONResponse
from scenes.terrain import MEDIA_TYPE, OCT_VERTEX_NORMALS, TerrainService, wants_normals

router = APIRouter(prefix="/terrain", tags=["3D scenes"])

TILE_MEDIA: dict[str, dict[str, object]] = {MEDIA_TYPE: {}, f"{MEDIA_TYPE};extensions={OCT_VERTEX_NORMALS}": {}}


def terrain_service(request: Request) -> TerrainService:
    """The app's terrain service over ``{raster_dir}/{TWIN_TERRAIN_DATASET}.tif`` (built on first use)."""
    service = getattr(request.app.state, "terrain", None)
    if service is None:
        from tiles.cache import TileCache

        s = request.app.state.settings
        cache = TileCache(s.tile_cache_mb * 2**20 // 4, s.redis_url, redis_prefix="twin:terrain:")
        service = TerrainService(s.raster_dir / f"{s.terrain_dataset}.tif", max_zoom=s.terrain_max_zoom,
                                 finest_m=s.terrain_tolerance_m, cache=cache)
        request.app.state.terrain = service
    return service


def _cache_control(request: Request) -> str:
    return f"public, max-age={int(request.app.state.settings.tile_max_age_s)}"


@router.get(
    "/layer.json", summary="Terrain metadata for CesiumJS",
    description="TileJSON-like metadata of the quantized-mesh terrain: geographic tiling (EPSG:4326, TMS), "
                "the levels and tile ranges available, the `octvertexnormals` extension. Open it with "
                "`Cesium.CesiumTerrainProvider.fromUrl('/terrain', {requestVertexNormals: true})`.",
    responses={404: {"description": "no DEM loaded"}},
)
def layer_json(request: Request) -> JSONResponse:
    body = terrain_service(request).layer_json()
    return JSONResponse(body, headers={"Cache-Control": _cache_control(request)})


@router.get(
    "/{z}/{x}/{y}.terrain", summary="Quantized-mesh 1.0 terrain tile",
    description="One terrain tile in Cesium's geographic tiling scheme (TMS rows from the south). Vertex "
                "normals are included when `Accept` asks for them "
                f"(`{MEDIA_TYPE};extensions={OCT_VERTEX_NORMALS}`). Sent gzipped when the client accepts "
                "gzip. Tiles off the DEM are the flat ellipsoid; levels past `maxzoom` are 404.",
    response_class=Response,
    responses={200: {"content": TILE_MEDIA}, 304: {"description": "not modified"},
               400: {"description": "no such tile address"}, 404: {"description": "level not available"}},
)
async def terrain_tile(
    request: Request,
    z: Annotated[int, Path(ge=0, le=30, description="level (0: two tiles, west and east hemisphere)")],
    x: Annotated[int, Path(ge=0, description="column from the antimeridian, eastwards")],
    y: Annotated[int, Path(ge=0, description="row from the south pole, northwards (TMS)")],
    accept: Annotated[str | None, Header(description="Cesium's extension request")] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    service = terrain_service(request)
    normals = wants_normals(accept)
    key = await run_in_threadpool(service.tile_key, z, x, y, normals)  # checks the DEM file (a stat, at most 1/s)
    etag = f'"{key}"'
    headers = {"ETag": etag, "Cache-Control": _cache_control(request), "Vary": "Accept, Accept-Encoding"}
    if if_none_match is not None and (etag in if_none_match or if_none_match.strip() == "*"):
        return Response(status_code=304, headers=headers)
    cache = service.cache
    hit = cache.get_memory("terrain:" + key) if cache is not None and hasattr(cache, "get_memory") else None
    body: bytes = hit if hit is not None else await run_in_threadpool(service.tile, z, x, y, normals=normals)
    media = f"{MEDIA_TYPE};extensions={OCT_VERTEX_NORMALS}" if normals else MEDIA_TYPE
    if "gzip" in (accept_encoding or "").lower():
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type=media, headers=headers)


def register(app: FastAPI) -> None:
    app.include_router(router)
