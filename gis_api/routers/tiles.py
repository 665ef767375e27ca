"""Vector tiles over HTTP: ``/tiles/{layers}/{z}/{x}/{y}.mvt``, TileJSON, the MapLibre style.

The ``.mvt`` route is a plain Starlette route placed ahead of the FastAPI routes: a
cached tile is answered from memory in the event loop with no dependency
injection or validation models in the way (≥3,000 req/s per worker); misses go to
the tile service's render threads. Empty tiles are ``204 No Content`` (as Martin
does), with the same ETag and cache headers as any tile.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from gis_api.deps import BaseUrlDep, StoreDep
from gis_api.negotiation import choose_encoding, etag_matches, header_values, tile_etag
from gis_api.responses import JSONResponse
from gis_api.security import readable_layers, tile_layers
from tiles.cache import TileCache
from tiles.service import STALE_CACHE_CONTROL, TileService
from tiles.style import twin_style
from tiles.tilejson import tilejson, union_extent
from tiles.tms import TILE_NUMBER_PATTERN, Tile, parse_tile
from twin.catalog import LAYERS, LayerSpec

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
TILE_PATH = "/tiles/{layers}/{z}/{x}/{y}.mvt"

router = APIRouter(tags=["Tiles"])


def tile_service(app: FastAPI) -> TileService:
    """The app's tile service, built on first use from the app's settings and store."""
    svc = getattr(app.state, "tiles", None)
    if svc is None:
        s = app.state.settings
        cache = TileCache(
            int(s.tile_cache_mb) * 2**20,
            s.redis_url,
            redis_prefix=s.tile_redis_prefix,
        )
        svc = TileService(
            app.state.store,
            cache=cache,
            feature_cap=s.tile_feature_cap,
            version_ttl=s.tile_version_ttl_s,
            statement_timeout_ms=s.statement_timeout_ms,
            workers=s.tile_workers,
            max_log_rows=s.change_log_max_rows,
            invalidation=s.tile_invalidation,
            stale_s=s.tile_stale_s,
        )
        app.state.tiles = svc
    return svc


def _specs(svc: TileService, raw: str) -> tuple[LayerSpec, ...]:
    return svc.layer_specs_cached(raw)


async def serve_tile(request: Request, layers: str, tile: Tile) -> Response:
    """Answer one tile request: 304 on a matching ETag, memory hit in the loop, else render threads."""
    app = request.app
    svc = app.state.tiles if hasattr(app.state, "tiles") else tile_service(app)
    specs = tile_layers(request, _specs(svc, layers))  # only what the caller may see
    headers = request.headers
    encoding = choose_encoding(header_values(headers, "accept-encoding"))
    inm = header_values(headers, "if-none-match")
    # a conditional request (a browser revalidating the tile it holds) gets the current version,
    # never the previous one: stale answers are for first sight (TWIN_TILE_STALE_S, docs/tiles.md)
    # a caller with a token may get layers the public may not: such an answer is for that caller
    # only (Cache-Control: private), never for a shared cache (nginx, a CDN) to hand to others
    private = "authorization" in headers
    result = svc.cached(specs, tile, encoding, stale_ok=not inm)
    if result is None:
        if inm:
            key = svc.etag_if_fresh(specs, tile)
            if key is not None and etag_matches(inm, tile_etag(key, encoding)):
                return _not_modified(key, encoding, app.state.settings, private=private)
        result = await svc.tile_async(specs, tile, encoding, stale_ok=not inm)
    etag = tile_etag(result.etag, encoding)
    if etag_matches(inm, etag):
        return _not_modified(result.etag, encoding, app.state.settings, stale=result.stale, private=private)
    out = {
        "etag": etag,
        "cache-control": _cache_control(app.state.settings, stale=result.stale, private=private),
        "vary": "Accept-Encoding",
    }
    if not result.body:
        return Response(status_code=204, headers=out)
    if encoding != "identity":
        out["content-encoding"] = encoding
    return Response(result.body, media_type=MVT_MEDIA_TYPE, headers=out)


def _cache_control(settings, *, stale: bool = False, private: bool = False) -> str:  # noqa: ANN001
    """A tile's Cache-Control; a stale answer (the previous version while the new one renders) must
    be revalidated before reuse, so the viewer's next request gets the new version. An answer to a
    request with a token is ``private``: browsers keep it, shared caches (nginx, CDNs) must not."""
    cc = STALE_CACHE_CONTROL if stale else f"public, max-age={int(settings.tile_max_age_s)}"
    return cc.replace("public", "private", 1) if private else cc


def _not_modified(key: str, encoding: str, settings, *, stale: bool = False,  # noqa: ANN001
                  private: bool = False) -> Response:
    return Response(status_code=304, headers={
        "etag": tile_etag(key, encoding), "cache-control": _cache_control(settings, stale=stale, private=private),
        "vary": "Accept-Encoding"})


async def _mvt_endpoint(request: Request) -> Response:
    p = request.path_params
    return await serve_tile(request, p["layers"], parse_tile(p["z"], p["x"], p["y"]))


@router.get(
    TILE_PATH,
    summary="Vector tile (MVT) of one layer or several joined by ','",
    response_class=Response,
    responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "Empty tile"},
               304: {"description": "Not modified (If-None-Match)"}},
)
async def vector_tile(
    request: Request,
    layers: Annotated[str, Path(description="Layer id, or several joined by ',' (at most 20)")],
    z: Annotated[str, Path(description="Zoom 0..24", pattern=TILE_NUMBER_PATTERN)],
    x: Annotated[str, Path(description="Column 0..2^z-1", pattern=TILE_NUMBER_PATTERN)],
    y: Annotated[str, Path(description="Row 0..2^z-1, from the north", pattern=TILE_NUMBER_PATTERN)],
) -> Response:
    """Documentation entry; requests are answered by the fast route registered ahead of it."""
    return await serve_tile(request, layers, parse_tile(z, x, y))


@router.get("/tiles/{layers}/tilejson.json", summary="TileJSON 3.0.0 of one or several layers")
async def tilejson_endpoint(request: Request, layers: str, base: BaseUrlDep) -> JSONResponse:
    svc = tile_service(request.app)
    specs = tile_layers(request, _specs(svc, layers))

    def work() -> dict:
        return svc.extents(specs, svc.versions.get())

    extents = await run_in_threadpool(work)
    ids = ",".join(s.id for s in specs)
    return JSONResponse(tilejson(specs, f"{base}/tiles/{ids}/{{z}}/{{x}}/{{y}}.mvt", extents))


@router.get("/styles/twin.json", summary="MapLibre GL style (v8) for the whole twin")
async def style_endpoint(request: Request, base: BaseUrlDep, store: StoreDep) -> JSONResponse:
    svc = tile_service(request.app)
    specs = tuple(LAYERS.values())
    extents = await run_in_threadpool(lambda: svc.extents(specs, svc.versions.get()))
    box = union_extent(extents)
    center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) if box else None
    ortho = await run_in_threadpool(_ortho_extent, request.app.state.settings)
    style = twin_style(base, center=center, zoom=14, bounds=box, ortho=ortho)
    from gis_api.routers.fonts import current_label_glyphs, glyphs_url

    labels = await run_in_threadpool(current_label_glyphs, request.app)
    if labels is not None:
        # glyph ranges holding only the labels' characters (a key names the set), and the list
        # of those ranges: a client may fetch them with the tiles
        style["glyphs"] = glyphs_url(base, labels)
        style["metadata"]["twin:glyph-ranges"] = [f"{a}-{b}" for a, b in labels.ranges]
    return JSONResponse(inline_tilejson(restrict_style(style, set(readable_layers(request, LAYERS))), extents),
                        headers={"Vary": "Authorization"})


#: the TileJSON fields MapLibre reads from a source's ``url`` (the rest is for other clients)
SOURCE_FIELDS = ("tiles", "bounds", "minzoom", "maxzoom", "attribution", "scheme")


def inline_tilejson(style: dict, extents: dict) -> dict:
    """Each twin vector source with its TileJSON fields (``tiles``, ``bounds``, zooms) in place of
    its ``url``, as a MapLibre user writes a source by hand: a client makes the map from the
    style alone, without one more round trip per source before its first tile request. The
    TileJSON stays at ``/tiles/{layers}/tilejson.json``, named in ``metadata["twin:tilejson"]``."""
    sources: dict = {}
    links: dict = {}
    for name, src in style["sources"].items():
        url = src.get("url", "")
        if src.get("type") == "vector" and "/tiles/" in url and url.endswith("/tilejson.json"):
            head, _, tail = url.partition("/tiles/")
            ids = tail.partition("/")[0].split(",")
            tj = tilejson([LAYERS[i] for i in ids], f"{head}/tiles/{','.join(ids)}/{{z}}/{{x}}/{{y}}.mvt",
                          {i: extents.get(i) for i in ids})
            src = {"type": "vector", **{k: tj[k] for k in SOURCE_FIELDS if k in tj},
                   **{k: v for k, v in src.items() if k not in ("type", "url")}}
            links[name] = url
        sources[name] = src
    return {**style, "sources": sources, "metadata": {**style.get("metadata", {}), "twin:tilejson": links}}


def restrict_style(style: dict, allowed: set[str]) -> dict:
    """The style with only the layers the caller may read: style layers drawing other layers
    are dropped, and each vector source's TileJSON URL names only allowed layers."""
    sources: dict = {}
    for name, src in style["sources"].items():
        url = src.get("url", "")
        if src.get("type") == "vector" and "/tiles/" in url:
            head, _, tail = url.partition("/tiles/")
            ids, _, rest = tail.partition("/")
            keep = [i for i in ids.split(",") if i in allowed]
            if not keep:
                continue
            src = {**src, "url": f"{head}/tiles/{','.join(keep)}/{rest}"}
        sources[name] = src
    layers = [lyr for lyr in style["layers"] if ("source" not in lyr or lyr["source"] in sources)
              and ("source-layer" not in lyr or lyr["source-layer"] in allowed)]
    return {**style, "sources": sources, "layers": layers}


def _ortho_extent(settings) -> dict | None:  # noqa: ANN001 - TwinSettings
    """Bounds and zooms of the orthophoto, or None when this twin has none (the style then
    declares no raster source, so no client asks for tiles that cannot exist)."""
    from tiles.raster import DatasetNotFound, catalog_for

    try:
        catalog = catalog_for(settings.raster_dir)
        info = catalog.info(catalog.get("ortho"))
    except (DatasetNotFound, OSError):
        return None
    return {"bounds": info.bounds, "minzoom": info.minzoom, "maxzoom": 22}


def _show_twin_info_logs() -> None:
    """uvicorn configures only its own loggers: give twin's background jobs (warm progress, block
    refreshes) a stderr handler at INFO, unless the host application configured logging itself."""
    import logging

    twin_log = logging.getLogger("twin")
    if twin_log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    twin_log.addHandler(handler)
    twin_log.setLevel(logging.INFO)


def start_background(app: FastAPI) -> None:
    """Start the tile service's background jobs: the building-block maintainer (``TWIN_TILE_BLOCKS``)
    and the warm pyramid over the style's vector sources (``TWIN_TILE_WARM``)."""
    from tiles.style import source_layers
    from tiles.warm import TileWarmer, parse_zoom_range
    from twin.blocks import BlockMaintainer

    s = app.state.settings
    svc = tile_service(app)
    _show_twin_info_logs()
    if s.tile_blocks:
        app.state.block_maintainer = BlockMaintainer(
            app.state.store, svc.versions.feed, poll_s=max(s.tile_version_ttl_s, 0.2)).start()
    start_first_view_warm(app)
    if not s.tile_warm:
        return
    app.state.tile_warmer = TileWarmer(
        svc, source_layers(), zooms=parse_zoom_range(s.tile_warm_zooms), cpu_share=s.tile_warm_cpu_share,
        poll_s=max(s.tile_version_ttl_s, 0.2), demand_window_s=s.tile_warm_demand_s or None,
    ).start()


class FirstViewWarm:
    """Renders, once, in a background thread at start, every tile of the viewer's first view
    (``TWIN_FIRST_VIEW_WARM``): the vector tiles of each source of the style as a guest gets
    it, and the orthophoto tiles, for each map size, into the tile caches (memory, Redis).
    The first visitor then waits for no render. Reported by ``/readyz``."""

    def __init__(self, app: FastAPI, sizes: list[tuple[int, int]]):
        import threading

        self.app, self.sizes = app, sizes
        self.done = threading.Event()
        self._stop = threading.Event()
        self.total = self.rendered = 0
        self.seconds: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="twin-first-view-warm", daemon=True)

    def start(self) -> FirstViewWarm:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the tile being rendered (at app shutdown, before the caches and store close)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        if not self.done.is_set():
            return f"warming ({self.rendered}/{self.total or '?'} tiles)"
        if self.seconds is None:
            return "stopped"
        return f"ok ({self.total} tiles, {self.rendered} rendered, {self.seconds:.1f} s)"

    def jobs(self) -> list[Callable[[], bool]]:
        """One callable per tile of the first view; each renders its tile unless cached (True if rendered)."""
        from tiles.first_view import first_view_tiles
        from tiles.service import ENCODINGS
        from twin.security.policy import Policy

        app, s = self.app, self.app.state.settings
        svc = tile_service(app)
        extents = svc.extents(tuple(LAYERS.values()), svc.versions.get())  # what the style endpoint computes
        box = union_extent(extents)
        if box is None:
            return []
        pol, roles = Policy.from_file(s.roles_file), {s.anonymous_role}
        style = restrict_style(twin_style("", bounds=box, ortho=_ortho_extent(s)), set(pol.readable(roles, LAYERS)))
        # per source: (tiles of one map size -> jobs); sizes outer, so the first size's view is warm first
        makers: list[Callable[[tuple[int, int]], list[Callable[[], bool]]]] = []
        for name, src in style["sources"].items():
            if src.get("type") == "vector":  # the ids the source's TileJSON puts in its tile URL (tile_layers)
                ids = src["url"].split("/tiles/", 1)[1].split("/", 1)[0]
                specs = tuple(sp for sp in svc.layer_specs(ids) if pol.can(roles, sp.id, "read")
                              and not (pol.hidden(roles, sp.id) & set(sp.tile_properties)))
                if not specs:
                    continue
                tj = tilejson(specs, "", svc.extents(specs, svc.versions.get()))
                # gzip: what browsers ask for over http; br over https (made from the gzip form)
                encodings = [e for e in ENCODINGS if e != "identity"]

                def vector(size, specs=specs, tj=tj, encodings=encodings):  # noqa: ANN001, ANN202
                    return [partial(self._vector, svc, specs, t, enc)
                            for t in first_view_tiles(box, [size], tile_size=512, minzoom=tj["minzoom"],
                                                      maxzoom=tj["maxzoom"], source_bounds=tj["bounds"])
                            for enc in encodings]
                makers.append(vector)
            elif src.get("type") == "raster" and name == "ortho":
                from gis_api.routers.raster import (
                    raster_tile_cache,
                    render_cached,
                    render_options,
                    tile_params,
                )
                from tiles.raster import catalog_for

                catalog = catalog_for(s.raster_dir)
                ds, cache = catalog.get("ortho"), raster_tile_cache(app)
                params = tile_params(src["tiles"][0].rsplit(".", 1)[1], render_options())

                def raster(size, src=src, catalog=catalog, ds=ds, cache=cache, params=params):  # noqa: ANN001, ANN202
                    out = []
                    for t in first_view_tiles(box, [size], tile_size=int(src.get("tileSize", 256)), round_zoom=True,
                                              minzoom=src["minzoom"], maxzoom=src["maxzoom"],
                                              source_bounds=src["bounds"]):
                        key = "raster:" + ds.etag(t.z, t.x, t.y, params).strip('"')
                        out.append(partial(self._raster, cache, key, catalog, ds, t, params, render_cached))
                    return out
                makers.append(raster)
        out: list[Callable[[], bool]] = []
        for size in self.sizes:
            for make in makers:
                out.extend(make(size))  # a tile two sizes share is found cached the second time
        return out

    @staticmethod
    def _vector(svc: TileService, specs: tuple[LayerSpec, ...], t: Tile, enc: str) -> bool:
        if svc.cache.get(f"{svc.etag(specs, t)}:{enc}") is not None:
            return False
        svc.tile(specs, t, enc, background=True)
        return True

    @staticmethod
    def _raster(cache, key, catalog, ds, t, params, render_cached) -> bool:  # noqa: ANN001
        if cache.get_memory(key) is not None:
            return False
        render_cached(cache, key, catalog, ds, t.z, t.x, t.y, params)
        return True

    def _run(self) -> None:
        import logging
        import time

        log = logging.getLogger("twin.tiles.first_view")
        started = time.perf_counter()
        try:
            jobs = self.jobs()
            self.total = len(jobs)
            for job in jobs:
                if self._stop.is_set():  # the app is shutting down
                    return
                if job():
                    self.rendered += 1
            self.seconds = time.perf_counter() - started
            log.info("first view warm: %d tiles, %d rendered, %.1f s", self.total, self.rendered, self.seconds)
        except Exception as exc:  # noqa: BLE001 - an accelerator: tiles still render on request
            if self._stop.is_set():
                return  # stopped mid-render: the app's services are closing under it
            self.error = str(exc) or type(exc).__name__
            log.warning("first view warm-up failed (tiles render on request): %s", exc)
        finally:
            self.done.set()


def start_first_view_warm(app: FastAPI) -> FirstViewWarm | None:
    from tiles.first_view import parse_sizes

    sizes = parse_sizes(app.state.settings.first_view_warm)
    if not sizes or not tile_service(app).cache.enabled:  # no tile cache (TWIN_TILE_CACHE_MB=0, no Redis):
        return None  # nothing would keep the renders, so warming would only take the CPU from the first visitor
    app.state.first_view_warm = FirstViewWarm(app, sizes).start()
    return app.state.first_view_warm


def register(app: FastAPI) -> None:
    tile_service(app)
    app.router.routes.insert(0, Route(TILE_PATH, _mvt_endpoint, methods=["GET", "HEAD"], name="mvt_tile"))
    app.include_router(router)
