"""The FastAPI application: assembles the routers; holds no endpoint logic itself."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gis_api import errors
from gis_api.deps import base_url
from gis_api.guard import Guard
from gis_api.metrics import MetricsMiddleware
from gis_api.negotiation import NegotiatedGZipMiddleware
from gis_api.routers import features, landing, ops
from gis_api.static_files import GzipStaticFiles
from gis_api.tile_front import CachedTileFront
from twin import gc_pauses
from twin.settings import TwinSettings, get_settings
from twin.store import SpatialStore

STATIC = Path(__file__).parent / "static"


def _native_telemetry() -> dict:
    """``FastAPI(**…)``: FastAPI's own OpenTelemetry hooks only when OpenTelemetry is set up
    (``OTEL_*`` or ``FASTAPI_OTEL_AUTO_CONFIGURE`` in the environment, or an SDK provider installed).

    Left on with nothing set up, they do nothing but ask the three global providers on every
    request: ~6 µs, a third of a cached tile's cost in the process (docs/benchmarks.md).
    """
    import inspect

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}  # a FastAPI without native telemetry
    if any(k.startswith("OTEL_") or k == "FASTAPI_OTEL_AUTO_CONFIGURE" for k in os.environ):
        return {}
    from opentelemetry import _logs, metrics, trace

    deferred = {"ProxyTracerProvider", "_ProxyMeterProvider", "ProxyLoggerProvider"}  # the API's placeholders
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if any(type(p).__name__ not in deferred for p in providers):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: TwinSettings | None = None, store: SpatialStore | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment) and an optional ready store."""
    settings = settings or get_settings()
    store = store or SpatialStore.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        for start in getattr(app.state, "startup", ()):  # services that run in the background (live layers)
            try:
                await run_in_threadpool(start)
            except Exception as exc:  # noqa: BLE001 - a database or broker down at start: serve anyway
                logging.getLogger("twin.api").warning("a background service did not start (retried on use): %s", exc)
        if getattr(app.state, "tiles", None) is not None:
            from gis_api.routers.tiles import start_background

            start_background(app)  # building blocks, warm pyramid
        gc_pauses.watch()
        if settings.gc_freeze:  # the collector's full passes then skip the start-up heap (twin/gc_pauses.py)
            gc_pauses.freeze_startup_heap()
        yield
        for name in ("first_view_warm", "tile_warmer", "block_maintainer", "tiles", "raster_tile_cache", "scenes", "terrain", "live"):
            service = getattr(app.state, name, None)
            if service is not None:
                service.close()
        store.engine.dispose()

    app = FastAPI(
        title="twin",
        version="0.1.0",
        description="Geospatial digital-twin map server and scene service.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
        **_native_telemetry(),
        responses=errors.OPENAPI_ERRORS,
    )
    app.state.settings = settings
    app.state.store = store
    errors.install(app)
    app.include_router(landing.router)
    app.include_router(features.router)
    app.include_router(ops.router)
    _include_optional_routers(app)

    @app.get("/", include_in_schema=False)
    async def viewer(request: Request) -> Response:
        """The viewer for browsers; the OGC API landing page for JSON clients (GDAL, QGIS)."""
        accept = request.headers.get("accept", "")
        if request.query_params.get("f") == "json" or (
            "json" in accept and "text/html" not in accept
        ):
            return await landing.landing(base_url(request))
        return FileResponse(STATIC / "index.html")

    @app.get("/scene", include_in_schema=False)
    async def scene() -> FileResponse:
        """The 3D scene (CesiumJS): terrain, the 3D Tiles tileset, picking."""
        return FileResponse(STATIC / "scene.html")

    @app.get("/field", include_in_schema=False)
    async def field() -> FileResponse:
        """The phone page for field staff: search by name, where am I, report an event."""
        return FileResponse(STATIC / "field.html")

    @app.get("/api/collections", include_in_schema=False)
    @app.get("/api/collections/{rest:path}", include_in_schema=False)
    @app.get("/api/conformance", include_in_schema=False)
    async def api_prefix_redirect(request: Request) -> RedirectResponse:
        """Clients given the landing page URL (/api) append /collections to it: send them on."""
        target = request.url.path.removeprefix("/api")
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(target + query, status_code=308)

    vendor = STATIC / "node_modules"
    if vendor.is_dir():  # browser libraries installed by run.sh (npm ci in gis_api/static)
        app.mount("/static/vendor", GzipStaticFiles(directory=vendor), name="vendor")
    app.mount("/static", GzipStaticFiles(directory=STATIC), name="static")
    app.add_middleware(NegotiatedGZipMiddleware, minimum_size=1024)  # q-values honoured; tiles left alone
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
        expose_headers=["ETag", "Content-Crs"],
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CachedTileFront, fastapi_app=app)  # memory-cached tiles skip the stack
    app.add_middleware(Guard, settings=settings, fastapi_app=app)  # outermost: rate limit, breaker, caps
    return app


#: Routers registered first, in this order (their paths are matched before the others');
#: every other module of ``gis_api.routers`` with a ``register(app)`` follows, by name.
FIRST_ROUTERS = ("imports", "tiles", "raster", "wmts", "ogc_tiles")


def _include_optional_routers(app: FastAPI) -> None:
    """Register the service routers found in ``gis_api.routers`` (each exposes ``register(app)``),
    so a new service is one new module and no list to edit."""
    import importlib
    import pkgutil

    from gis_api import routers

    found = {m.name for m in pkgutil.iter_modules(routers.__path__)}
    order = [n for n in FIRST_ROUTERS if n in found] + sorted(found - set(FIRST_ROUTERS))
    for name in order:
        module = importlib.import_module(f"gis_api.routers.{name}")
        if hasattr(module, "register"):
            module.register(app)
