"""Raster tiles from the COGs in ``settings.raster_dir``: tiles, TileJSON, info, list.

The work is in :mod:`tiles.raster`; this module parses, caches and serialises.
A cached tile is answered on the event loop (no thread hop); a miss renders in the
threadpool. ETags change with the file (mtime, size), the tile address and every
rendering parameter; ``If-None-Match`` answers 304.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from gis_api.deps import BaseUrlDep, SettingsDep
from gis_api.negotiation import etag_matches, header_values
from gis_api.responses import JSONResponse
from tiles.raster import (
    ALGORITHMS,
    FORMATS,
    RasterCatalog,
    RasterDataset,
    TileParams,
    catalog_for,
    parse_rescale,
)
from tiles.tms import parse_tile_number
from twin.errors import InvalidParameter

RASTER_LOOKUPS = Counter("twin_raster_tile_lookups_total",
                         "Raster tile requests: hit (memory or Redis) or miss (rendered while the client waited)",
                         ["result"])
_RASTER_HIT, _RASTER_MISS = RASTER_LOOKUPS.labels("hit"), RASTER_LOOKUPS.labels("miss")


def cache_control(settings: object) -> str:
    """``Cache-Control`` of tiles: ``TWIN_TILE_MAX_AGE_S`` (shared with vector tiles); the ETag settles the rest."""
    return f"public, max-age={int(getattr(settings, 'tile_max_age_s', 60))}"

TileFormat = Literal["png", "webp", "jpg", "jpeg"]


def raster_catalog(settings: SettingsDep) -> RasterCatalog:
    return catalog_for(settings.raster_dir)


CatalogDep = Annotated[RasterCatalog, Depends(raster_catalog)]


def render_options(
    colormap: Annotated[str | None, Query(description="Colormap for single-band data (rio-tiler names, default terrain)")] = None,
    rescale: Annotated[str | None, Query(description="min,max data values mapped to 0..255", examples=["0,60"])] = None,
    algorithm: Annotated[str | None, Query(description=f"One of {', '.join(ALGORITHMS)}")] = None,
    azimuth: Annotated[float, Query(description="Hillshade: light direction, degrees clockwise from north")] = 315.0,
    altitude: Annotated[float, Query(description="Hillshade: light angle above the horizon, degrees")] = 45.0,
    z_factor: Annotated[float, Query(description="Hillshade: vertical exaggeration")] = 1.0,
    tilesize: Annotated[int, Query(description="256 or 512 pixels")] = 256,
) -> dict[str, Any]:
    """The rendering query parameters, unchecked (checked when :class:`TileParams` is built)."""
    return dict(colormap=colormap, rescale=rescale, algorithm=algorithm, azimuth=azimuth, altitude=altitude,
                z_factor=z_factor, tilesize=tilesize)


RenderDep = Annotated[dict[str, Any], Depends(render_options)]


def tile_params(fmt: str, options: dict[str, Any]) -> TileParams:
    return TileParams(fmt=fmt, **{**options, "rescale": parse_rescale(options["rescale"])})


def _query_string(options: dict[str, Any]) -> str:
    """The non-default rendering options as a query string (for TileJSON/WMTS URLs)."""
    defaults = render_options()
    kept = {k: v for k, v in options.items() if v is not None and v != defaults[k]}
    return ("?" + urlencode(kept)) if kept else ""


def raster_tile_cache(app: FastAPI):  # noqa: ANN201 - tiles.cache.TileCache, built on first use
    cache = getattr(app.state, "raster_tile_cache", None)
    if cache is None:
        from tiles.cache import TileCache

        with _CACHE_LOCK:  # requests and the first-view warm-up (another thread) may both build it
            cache = getattr(app.state, "raster_tile_cache", None)
            if cache is None:
                settings = app.state.settings
                cache = TileCache(settings.tile_cache_mb * 2**20, settings.redis_url, redis_prefix="twin:raster:")
                app.state.raster_tile_cache = cache
    return cache


_CACHE_LOCK = threading.Lock()


def tile_cache(request: Request):  # noqa: ANN201 - tiles.cache.TileCache, built on first use
    return raster_tile_cache(request.app)


@dataclass
class RasterTilesFactory:
    """Routes for COG datasets under ``prefix``; ``catalog`` resolves dataset names to files."""

    prefix: str = "/raster"
    tags: tuple[str, ...] = ("Raster tiles",)

    def __post_init__(self) -> None:
        self.router = APIRouter(prefix=self.prefix, tags=list(self.tags))
        self.router.add_api_route("", self.list_datasets, methods=["GET"], summary="Raster datasets")
        self.router.add_api_route("/{dataset}/info", self.info, methods=["GET"], summary="Dataset metadata")
        self.router.add_api_route("/{dataset}/tilejson.json", self.tilejson, methods=["GET"], summary="TileJSON 3.0.0")
        self.router.add_api_route(
            "/{dataset}/{z}/{x}/{y}.{fmt}", self.tile, methods=["GET"], summary="Raster tile",
            responses={200: {"content": {t: {} for _, t, _ in FORMATS.values()}}, 304: {}, 404: {}},
            response_class=Response,
        )

    def _links(self, base: str, ds: RasterDataset, fmt: str = "png", query: str = "") -> dict[str, str]:
        root = f"{base}{self.prefix}/{ds.name}"
        return {
            "info": f"{root}/info",
            "tilejson": f"{root}/tilejson.json{query}",
            "tiles": f"{root}/{{z}}/{{x}}/{{y}}.{fmt}{query}",
        }

    def list_datasets(self, catalog: CatalogDep, base: BaseUrlDep) -> JSONResponse:
        out = []
        for ds in catalog.datasets():
            info = catalog.info(ds)
            out.append({
                "name": ds.name, "algorithm": ds.algorithm, "bounds": list(info.bounds), "bands": info.count,
                "dtype": info.dtype, "links": self._links(base, ds),
            })
        return JSONResponse({"datasets": out})

    def info(self, dataset: str, catalog: CatalogDep, base: BaseUrlDep) -> JSONResponse:
        ds = catalog.get(dataset)
        return JSONResponse({**catalog.info(ds).to_dict(), "algorithm": ds.algorithm,
                             "links": self._links(base, ds)})

    def tilejson(
        self, dataset: str, catalog: CatalogDep, base: BaseUrlDep, options: RenderDep,
        format: Annotated[TileFormat, Query(description="Tile format")] = "png",  # noqa: A002
    ) -> JSONResponse:
        ds = catalog.get(dataset)
        params = tile_params(format, options)
        info = catalog.info(ds)
        # a 512 px tile at z covers what 256 px tiles do at z+1
        shift = 1 if params.tilesize == 512 else 0
        minzoom, maxzoom = max(0, info.minzoom - shift), max(0, info.maxzoom - shift)
        lon, lat = info.center
        return JSONResponse({
            "tilejson": "3.0.0",
            "name": ds.name,
            "description": f"Raster tiles of {ds.name}" + (f" ({ds.algorithm})" if ds.algorithm else ""),
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [self._links(base, ds, format, _query_string(options))["tiles"]],
            "minzoom": minzoom,
            "maxzoom": maxzoom,
            "bounds": list(info.bounds),
            "center": [lon, lat, min(maxzoom, max(minzoom, 14))],
        })

    async def tile(
        self, request: Request, dataset: str, z: int, x: int, y: int, fmt: TileFormat,
        options: RenderDep,
        if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """Documentation entry; requests are answered by the fast route registered ahead of it."""
        return await serve_tile(request, dataset, z, x, y, tile_params(fmt, options))


async def serve_tile(request: Request, dataset: str, z: int, x: int, y: int, params: TileParams) -> Response:
    """One raster tile: 304 on a matching ETag, a memory-cache hit on the loop, else render in a thread."""
    catalog = catalog_for(request.app.state.settings.raster_dir)
    ds = catalog.get(dataset)
    etag = ds.etag(z, x, y, params)
    headers = {"ETag": etag, "Cache-Control": cache_control(request.app.state.settings)}
    if etag_matches(header_values(request.headers, "if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    cache = tile_cache(request)
    key = "raster:" + etag.strip('"')
    body = cache.get_memory(key)
    if body is None:
        body = await run_in_threadpool(render_cached, cache, key, catalog, ds, z, x, y, params, True)
    else:
        _RASTER_HIT.inc()
    return Response(body, media_type=params.media_type, headers=headers)


#: TileParams by (format, raw query string): parsing once per distinct URL style
_PARAMS: dict[tuple[str, bytes], TileParams] = {}
_OPTION_TYPES = {"colormap": str, "rescale": str, "algorithm": str, "azimuth": float, "altitude": float,
                 "z_factor": float, "tilesize": int}


def _params_from_query(fmt: str, request: Request) -> TileParams:
    raw = request.scope.get("query_string", b"")
    params = _PARAMS.get((fmt, raw))
    if params is not None:
        return params
    options = render_options()
    for name, value in request.query_params.items():
        kind = _OPTION_TYPES.get(name)
        if kind is None:
            continue  # unknown parameters are ignored, as on every other route
        try:
            options[name] = kind(value)
        except ValueError:
            raise InvalidParameter(f"{name}: {value!r} is not a valid {kind.__name__}",
                                   detail={"parameter": name}) from None
    if fmt not in FORMATS:
        raise InvalidParameter(f"unsupported tile format {fmt!r}", detail={"formats": sorted(FORMATS)})
    params = tile_params(fmt, options)
    if len(_PARAMS) < 4096:
        _PARAMS[(fmt, raw)] = params
    return params


async def _fast_tile(request: Request) -> Response:
    """The tile route without FastAPI's dependency machinery (the cached path is a few µs of Python)."""
    p = request.path_params
    z, x, y = (parse_tile_number(p[k], k) for k in ("z", "x", "y"))
    return await serve_tile(request, p["dataset"], z, x, y, _params_from_query(p["fmt"], request))


def render_cached(cache: Any, key: str, catalog: RasterCatalog, ds: RasterDataset,
                  z: int, x: int, y: int, params: TileParams, count: bool = False) -> bytes:
    """The tile from the shared cache tier, else rendered and stored (runs in a worker thread).
    ``count``: a client is waiting (a request, not a warm-up): counted as a hit or a miss."""
    body = cache.get(key)  # the shared (Redis) tier, if any
    if body is None:
        if count:
            _RASTER_MISS.inc()
        body = catalog.render_tile(ds, z, x, y, params)
        cache.set(key, body)
    elif count:
        _RASTER_HIT.inc()
    return body


def register(app: FastAPI) -> None:
    factory = RasterTilesFactory()
    path = f"{factory.prefix}/{{dataset}}/{{z}}/{{x}}/{{y}}.{{fmt}}"
    app.router.routes.insert(0, Route(path, _fast_tile, methods=["GET", "HEAD"], name="raster_tile"))
    app.include_router(factory.router)
