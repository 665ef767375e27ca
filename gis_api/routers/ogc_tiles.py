"""OGC API – Tiles (Part 1) for the vector layers, and the tile matrix sets they use.

Tiles come from the same service (and cache) as ``/tiles/...``; only the address
differs: ``{tileMatrix}/{tileRow}/{tileCol}`` is ``z/y/x``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import morecantile
from fastapi import APIRouter, FastAPI, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gis_api.deps import BaseUrlDep
from gis_api.responses import JSONResponse
from gis_api.routers.landing import register_conformance
from gis_api.routers.tiles import MVT_MEDIA_TYPE, serve_tile, tile_service
from gis_api.security import authorize
from tiles.tilejson import vector_layer
from tiles.tms import MAX_ZOOM, TILE_NUMBER_PATTERN, parse_tile
from twin.catalog import get_layer
from twin.errors import InvalidParameter

TMS_ID = "WebMercatorQuad"
TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
CRS_3857 = "http://www.opengis.net/def/crs/EPSG/0/3857"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
)

router = APIRouter(tags=["OGC API Tiles"])


@lru_cache(maxsize=1)
def _tms_document() -> dict[str, Any]:
    return morecantile.tms.get(TMS_ID).model_dump(mode="json", exclude_none=True)


def _check_tms(tms: str) -> None:
    if tms != TMS_ID:
        raise InvalidParameter(f"unknown tile matrix set {tms!r}; only {TMS_ID} is offered",
                               detail={"tileMatrixSets": [TMS_ID]})


@router.get("/tileMatrixSets", summary="Tile matrix sets offered")
async def tile_matrix_sets(base: BaseUrlDep) -> JSONResponse:
    return JSONResponse({"tileMatrixSets": [{
        "id": TMS_ID, "title": _tms_document().get("title"), "uri": TMS_URI, "crs": CRS_3857,
        "links": [{"href": f"{base}/tileMatrixSets/{TMS_ID}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                   "type": "application/json", "title": TMS_ID}],
    }]})


@router.get("/tileMatrixSets/{tileMatrixSetId}", summary="One tile matrix set (OGC TMS 2.0 JSON)")
async def tile_matrix_set(tileMatrixSetId: str) -> JSONResponse:  # noqa: N803 - OGC parameter name
    _check_tms(tileMatrixSetId)
    return JSONResponse(_tms_document())


def _limits(extent: Any, min_zoom: int, max_zoom: int) -> list[dict[str, Any]]:
    """Per zoom, the rows and columns that hold data (the whole matrix when the layer is empty).

    Clients (GDAL's OGCAPI driver, QGIS) read these to know where the data is."""
    tms = morecantile.tms.get(TMS_ID)
    out = []
    for z in range(min_zoom, max_zoom + 1):
        if extent is None:
            lo_col, lo_row, hi_col, hi_row = 0, 0, (1 << z) - 1, (1 << z) - 1
        else:
            top_left = tms.tile(extent[0], extent[3], z)
            bottom_right = tms.tile(extent[2], extent[1], z)
            lo_col, lo_row, hi_col, hi_row = top_left.x, top_left.y, bottom_right.x, bottom_right.y
        out.append({"tileMatrix": str(z), "minTileRow": lo_row, "maxTileRow": hi_row,
                    "minTileCol": lo_col, "maxTileCol": hi_col})
    return out


def _tileset(base: str, layer: str, extent: Any) -> dict[str, Any]:
    spec = get_layer(layer)
    doc: dict[str, Any] = {
        "title": f"{spec.title} ({TMS_ID})",
        "description": spec.description,
        "dataType": "vector",
        "crs": CRS_3857,
        "tileMatrixSetURI": TMS_URI,
        "links": [
            {"href": f"{base}/collections/{layer}/tiles/{TMS_ID}", "rel": "self", "type": "application/json",
             "title": "This tileset"},
            {"href": f"{base}/tileMatrixSets/{TMS_ID}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
             "type": "application/json", "title": TMS_ID},
            {"href": f"{base}/collections/{layer}/tiles/{TMS_ID}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}",
             "rel": "item", "type": MVT_MEDIA_TYPE, "templated": True, "title": "Vector tiles"},
            {"href": f"{base}/collections/{layer}", "rel": "collection", "type": "application/json"},
            {"href": f"{base}/tiles/{layer}/tilejson.json", "rel": "describedby", "type": "application/json",
             "title": "TileJSON"},
        ],
        "tileMatrixSetLimits": _limits(extent, spec.min_zoom, min(spec.max_zoom, MAX_ZOOM)),
        "layers": [{**vector_layer(spec), "dataType": "vector",
                    "propertiesSchema": {"type": "object", "properties": {
                        k: {"type": {"Number": "number", "Boolean": "boolean"}.get(v, "string")}
                        for k, v in vector_layer(spec)["fields"].items()}}}],
    }
    if extent is not None:  # in the tileset's CRS (Web Mercator metres), as OGC API Tiles asks
        tms = morecantile.tms.get(TMS_ID)
        x0, y0 = tms.xy(extent[0], extent[1])
        x1, y1 = tms.xy(extent[2], extent[3])
        doc["boundingBox"] = {"lowerLeft": [x0, y0], "upperRight": [x1, y1], "crs": CRS_3857}
    return doc


async def _extent(request: Request, layer: str) -> Any:
    svc = tile_service(request.app)
    spec = get_layer(layer)
    extents = await run_in_threadpool(lambda: svc.extents((spec,), svc.versions.get()))
    return extents[spec.id]


@router.get("/collections/{layer}/tiles", summary="Tilesets of a layer")
async def tilesets(request: Request, layer: str, base: BaseUrlDep) -> JSONResponse:
    authorize(request, get_layer(layer).id)
    doc = _tileset(base, layer, await _extent(request, layer))
    entry = {k: doc[k] for k in ("title", "dataType", "crs", "tileMatrixSetURI")}
    entry["links"] = [{**doc["links"][0], "rel": "self"}, doc["links"][1], doc["links"][2]]
    return JSONResponse({"links": [{"href": f"{base}/collections/{layer}/tiles", "rel": "self",
                                    "type": "application/json"}], "tilesets": [entry]})


@router.get("/collections/{layer}/tiles/{tileMatrixSetId}", summary="Tileset metadata")
async def tileset(request: Request, layer: str, tileMatrixSetId: str, base: BaseUrlDep) -> JSONResponse:  # noqa: N803
    authorize(request, get_layer(layer).id)
    _check_tms(tileMatrixSetId)
    return JSONResponse(_tileset(base, layer, await _extent(request, layer)))


@router.get(
    "/collections/{layer}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
    summary="Vector tile (MVT); row = y, col = x",
    response_class=Response,
    responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "Empty tile"}},
)
async def ogc_tile(
    request: Request,
    layer: str,
    tileMatrixSetId: str,  # noqa: N803
    tileMatrix: Annotated[str, Path(description="Zoom level", pattern=TILE_NUMBER_PATTERN)],  # noqa: N803
    tileRow: Annotated[str, Path(description="Row (y, from the north)", pattern=TILE_NUMBER_PATTERN)],  # noqa: N803
    tileCol: Annotated[str, Path(description="Column (x)", pattern=TILE_NUMBER_PATTERN)],  # noqa: N803
) -> Response:
    _check_tms(tileMatrixSetId)
    get_layer(layer)
    return await serve_tile(request, layer, parse_tile(tileMatrix, tileCol, tileRow))


def register(app: FastAPI) -> None:
    register_conformance(*CONFORMANCE)
    tile_service(app)
    app.include_router(router)
