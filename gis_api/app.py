"""The FastAPI application: assembles the routers; holds no endpoint logic itself."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from gis_api import errors
from gis_api.deps import base_url
from gis_api.metrics import MetricsMiddleware
from gis_api.routers import features, landing, ops
from gis_api.tile_front import CachedTileFront
from twin.settings import TwinSettings, get_settings
from twin.store import SpatialStore

STATIC = Path(__file__).parent / "static"


def create_app(settings: TwinSettings | None = None, store: SpatialStore | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: from the environment) and an optional ready store."""
    settings = settings or get_settings()
    store = store or SpatialStore.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        for start in getattr(app.state, "startup", ()):  # services that run in the background (live layers)
            await run_in_threadpool(start)
        yield
        for name in ("tiles", "raster_tile_cache", "live"):  # services that hold connections
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
        app.mount("/static/vendor", StaticFiles(directory=vendor), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
        expose_headers=["ETag", "Content-Crs"],
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CachedTileFront, fastapi_app=app)  # outermost: memory-cached tiles skip the stack
    return app


#: Service routers beyond features; each module exposes ``register(app)``.
SERVICE_ROUTERS = ("imports", "tiles", "raster", "wmts", "ogc_tiles", "scenes", "live", "analysis")


def _include_optional_routers(app: FastAPI) -> None:
    """Register the routers of the other services present in ``gis_api.routers``."""
    import importlib
    import importlib.util

    for name in SERVICE_ROUTERS:
        module_name = f"gis_api.routers.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(app)
