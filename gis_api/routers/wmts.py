"""OGC WMTS 1.0.0: RESTful capabilities, KVP GetCapabilities and GetTile.

Unlike the rest of the API, errors here are OWS ``ExceptionReport`` XML (HTTP 400),
because that is what WMTS clients (GDAL, QGIS, OpenLayers) read. The XML and the
request checks live in :mod:`tiles.wmts`.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep, SettingsDep, StoreDep
from gis_api.negotiation import etag_matches, header_values
from gis_api.routers.raster import CatalogDep, cache_control, render_cached, tile_cache
from gis_api.security import readable_layers
from tiles.raster import RasterCatalog, TileOutsideBounds, TileParams, catalog_for
from tiles.wmts import (
    MVT,
    RASTER_FORMATS,
    GetTile,
    OwsException,
    WmtsLayer,
    capabilities_xml,
    kvp_request,
    parse_get_tile,
    raster_layers,
    vector_layers,
)
from twin.catalog import LAYERS
from twin.errors import TwinError
from twin.store import SpatialStore

router = APIRouter(tags=["WMTS"])

XML = "application/xml"


def _layers(catalog: RasterCatalog, store: SpatialStore, base: str,
            readable: set[str] | None = None) -> list[WmtsLayer]:
    """Raster datasets, and the vector layers the caller may read."""
    vectors = [v for v in vector_layers(store, base) if readable is None or v.identifier in readable]
    return raster_layers(catalog, base) + vectors


def _capabilities(catalog: RasterCatalog, store: SpatialStore, base: str, readable: set[str]) -> Response:
    return Response(capabilities_xml(base, _layers(catalog, store, base, readable)), media_type=XML,
                    headers={"Cache-Control": "public, max-age=60", "Vary": "Authorization"})


def _ows_error(exc: OwsException) -> Response:
    return Response(exc.to_xml(), status_code=exc.status, media_type=XML)


@router.get("/wmts/1.0.0/WMTSCapabilities.xml", summary="WMTS capabilities (RESTful)",
            response_class=Response, responses={200: {"content": {XML: {}}}})
def capabilities(request: Request, catalog: CatalogDep, store: StoreDep, base: BaseUrlDep) -> Response:
    return _capabilities(catalog, store, base, set(readable_layers(request, LAYERS)))


@router.get("/wmts", summary="WMTS KVP: GetCapabilities, GetTile", response_class=Response,
            responses={200: {"content": {XML: {}, "image/png": {}, "image/jpeg": {}}},
                       400: {"description": "OWS ExceptionReport", "content": {XML: {}}}})
async def kvp(request: Request, settings: SettingsDep, store: StoreDep, base: BaseUrlDep) -> Response:
    """``SERVICE=WMTS&REQUEST=GetCapabilities`` or ``REQUEST=GetTile&LAYER=…&TILEMATRIXSET=…&TILEMATRIX=…&TILEROW=…&TILECOL=…&FORMAT=…``."""
    catalog = catalog_for(settings.raster_dir)
    query = dict(request.query_params)
    try:
        op = kvp_request(query)
        readable = set(readable_layers(request, LAYERS))
        if op == "GetCapabilities":
            return await run_in_threadpool(_capabilities, catalog, store, base, readable)
        layers = await run_in_threadpool(_layers, catalog, store, base, readable)
        tile = parse_get_tile(query, {layer.identifier: layer for layer in layers})
        if tile.media_type == MVT:
            # vector tiles are served by /tiles; send the client there
            return RedirectResponse(f"{base}/tiles/{tile.layer}/{tile.z}/{tile.x}/{tile.y}.mvt", status_code=307)
        return await _raster_tile(request, catalog, tile)
    except OwsException as exc:
        return _ows_error(exc)


async def _raster_tile(request: Request, catalog: RasterCatalog, tile: GetTile) -> Response:
    params = TileParams(fmt=RASTER_FORMATS[tile.media_type])
    caching = cache_control(request.app.state.settings)
    try:
        ds = catalog.get(tile.layer)
        etag = ds.etag(tile.z, tile.x, tile.y, params)
        if etag_matches(header_values(request.headers, "if-none-match"), etag):
            return Response(status_code=304, headers={"ETag": etag, "Cache-Control": caching})
        cache = tile_cache(request)
        key = "raster:" + etag.strip('"')
        body = cache.get_memory(key) or await run_in_threadpool(
            render_cached, cache, key, catalog, ds, tile.z, tile.x, tile.y, params
        )
    except TileOutsideBounds as exc:
        return _ows_error(OwsException("TileOutOfRange", exc.message, "TILEROW"))
    except TwinError as exc:
        return _ows_error(OwsException("NoApplicableCode", exc.message))
    return Response(body, media_type=tile.media_type, headers={"ETag": etag, "Cache-Control": caching})


def register(app: FastAPI) -> None:
    app.include_router(router)
