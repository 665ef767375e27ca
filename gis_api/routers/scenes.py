"""3D over HTTP: ``/scenes/scene.glb`` (one GLB of a bbox) and ``/scenes/tileset.json`` (3D Tiles 1.1).

Thin: parses the query, runs :class:`scenes.service.SceneService` in the thread pool,
sets cache headers. Errors are the core's exceptions, mapped in ``gis_api.errors``.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gis_api.deps import BBoxDep
from gis_api.responses import JSONResponse
from scenes.service import SceneService
from twin.errors import InvalidParameter

GLB_MEDIA_TYPE = "model/gltf-binary"
router = APIRouter(tags=["3D scenes"])

LayersQuery = Annotated[str | None, Query(
    description="Comma-separated 3D layers: buildings, pipelines, pipe_nodes (and terrain for scene.glb); "
                "default all", examples=["buildings,pipelines,pipe_nodes,terrain"])]


def scene_service(app: FastAPI) -> SceneService:
    """The app's scene service, built on first use from the app's settings and store."""
    svc = getattr(app.state, "scenes", None)
    if svc is None:
        svc = SceneService(app.state.store, app.state.settings)
        app.state.scenes = svc
    return svc


def _glb(data: bytes, etag: str, max_age: int) -> Response:
    return Response(data, media_type=GLB_MEDIA_TYPE, headers={
        "etag": f'"{etag}"', "cache-control": f"public, max-age={max_age}"})


@router.get(
    "/scenes/scene.glb",
    summary="One binary glTF of a bbox: buildings on the DEM, pipes at depth, pipe nodes, terrain",
    response_class=Response,
    responses={200: {"content": {GLB_MEDIA_TYPE: {}},
                     "description": "glTF 2.0 binary; local ENU frame at the bbox centre (asset.extras.twin.frame)"},
               400: {"description": "bad bbox, layer or texture; area, feature or triangle cap exceeded"}},
)
async def scene_glb(
    request: Request,
    bbox: BBoxDep,
    layers: LayersQuery = None,
    texture: Annotated[Literal["ortho", "none"] | None, Query(
        description="'ortho' drapes the orthophoto on the terrain")] = None,
) -> Response:
    if bbox is None:
        raise InvalidParameter("bbox is required: minlon,minlat,maxlon,maxlat")
    svc = scene_service(request.app)
    scene = await run_in_threadpool(svc.scene, bbox, layers, texture)
    return Response(scene.glb, media_type=GLB_MEDIA_TYPE,
                    headers={"cache-control": "no-cache",
                             "content-disposition": 'inline; filename="scene.glb"'})


@router.get("/scenes/tileset.json", summary="3D Tiles 1.1 tileset of the whole twin (GLB content, ADD refinement)")
async def tileset(request: Request, layers: LayersQuery = None) -> Response:
    svc = scene_service(request.app)
    names = svc.tileset_layers(layers)
    q = quote(",".join(names), safe=",")
    doc = await run_in_threadpool(svc.tileset, names, f"tiles/{{z}}/{{x}}/{{y}}.glb?layers={q}&v={{v}}")
    etag = f'"{doc["asset"]["extras"]["twin"]["version"]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    return JSONResponse(doc, headers={"cache-control": "no-cache", "etag": etag})


@router.get(
    "/scenes/tiles/{z}/{x}/{y}.glb",
    summary="Content of one tileset tile (GLB with feature ids and property tables)",
    response_class=Response,
    responses={200: {"content": {GLB_MEDIA_TYPE: {}}}, 304: {"description": "Not modified"},
               404: {"description": "No tile with content at this address"}},
)
async def tile_content(
    request: Request,
    z: Annotated[int, Path(ge=0, le=30)],
    x: Annotated[int, Path(ge=0)],
    y: Annotated[int, Path(ge=0)],
    layers: LayersQuery = None,
    v: Annotated[str | None, Query(description="Tileset version (cache buster set by tileset.json)")] = None,
) -> Response:
    svc = scene_service(request.app)
    names = svc.tileset_layers(layers)
    data, etag = await run_in_threadpool(svc.content, names, z, x, y)
    if request.headers.get("if-none-match", "").strip('"') == etag:
        return Response(status_code=304, headers={"etag": f'"{etag}"'})
    return _glb(data, etag, int(request.app.state.settings.tile_max_age_s))


def register(app: FastAPI) -> None:
    app.include_router(router)
