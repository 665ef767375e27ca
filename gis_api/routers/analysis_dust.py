"""Dust heat map endpoints (seed 002 §5.1.5) and the ``dust-heat`` virtual raster dataset.

``GET /analysis/dust-heat`` returns the heat grid as GeoJSON cells with the monitor
table and PM10 warnings; ``PUT /analysis/dust-heat/inputs`` (bearer token, like every
write) updates readings and truck positions; the raster catalogue serves the same grid
as ``/raster/dust-heat/{z}/{x}/{y}.png`` through :class:`DustHeatTiles`.
"""

from __future__ import annotations

from typing import Annotated, Any

import morecantile
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep, BBoxDep
from gis_api.routers.analysis import json_response
from tiles.raster import WEB_MERCATOR, RasterInfo, VirtualSource, catalog_for
from twin.analysis.dust import heat_rgba
from twin.analysis.dust_service import DustHeatService

try:  # with role-based access (gis_api.security): writes need the admin role, which the admin token has
    from gis_api.security import require_role

    _writer = require_role("admin")
except ImportError:  # without it: the admin bearer token, as for imports
    from gis_api.routers.imports import require_admin as _writer

from gis_api.security import layer_permission  # noqa: E402

router = APIRouter(tags=["Analysis"])
DATASET = "dust-heat"


class DustHeatTiles(VirtualSource):
    """The heat map as raster tiles: each pixel centre scored exactly as the grid cells are."""

    name = DATASET

    def __init__(self, service: DustHeatService):
        self.service = service

    def version(self) -> str:
        return self.service.version()

    def info(self) -> RasterInfo:
        ext = self.service.state().extent or (-180.0, -85.0, 180.0, 85.0)
        return RasterInfo(name=DATASET, bounds=ext, crs="EPSG:3857", dtype="uint8", count=4, width=0, height=0,
                          nodata=None, overviews=[], minzoom=10, maxzoom=20,
                          colorinterp=["red", "green", "blue", "alpha"])

    def tile(self, z: int, x: int, y: int, tilesize: int) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.zeros((3, tilesize, tilesize), np.uint8), np.zeros((tilesize, tilesize), np.uint8))
        st = self.service.state()
        b = WEB_MERCATOR.bounds(morecantile.Tile(x, y, z))
        if st.extent is None or b.left > st.extent[2] or b.right < st.extent[0] or b.bottom > st.extent[3] \
                or b.top < st.extent[1]:
            return empty
        xb = WEB_MERCATOR.xy_bounds(morecantile.Tile(x, y, z))
        res = (xb.right - xb.left) / tilesize
        mx = xb.left + (np.arange(tilesize) + 0.5) * res
        my = xb.top - (np.arange(tilesize) + 0.5) * res
        MX, MY = np.meshgrid(mx, my)
        lon = MX / 6378137.0 * 180 / np.pi
        lat = np.degrees(2 * np.arctan(np.exp(MY / 6378137.0)) - np.pi / 2)
        rgba = heat_rgba(self.service.heat_at(lon, lat), self.service.config)
        return np.moveaxis(rgba[..., :3], -1, 0).copy(), rgba[..., 3].copy()


def dust_service(request: Request) -> DustHeatService:
    return request.app.state.dust


class DustInputs(BaseModel):
    readings: dict[str, float] | None = Field(default=None, description="PM10 µg/m³ by monitor (device) code",
                                              examples=[{"IOTYC00001": 182.0}])
    trucks: list[list[float]] | None = Field(default=None, description="Muck-truck positions [[lon, lat], …]")
    replace: bool = Field(default=False, description="Replace all readings instead of merging")


@router.put("/analysis/dust-heat/inputs", summary="Update PM10 readings and muck-truck positions (bearer token)",
            dependencies=[Depends(_writer)])
async def put_inputs(body: DustInputs, request: Request) -> Response:
    svc = dust_service(request)
    svc.set_inputs(body.readings, body.trucks, body.replace)
    return json_response({"version": await run_in_threadpool(svc.version), "readings": len(svc.readings),
                          "trucks": len(svc.trucks)})


@router.get("/analysis/dust-heat", dependencies=[Depends(layer_permission("devices", "analyse"))], summary="Dust impact heat map: grid cells with score and grade, monitor factors",
            responses={200: {"content": {"application/geo+json": {}}}})
async def dust_heat(
    request: Request, bbox: BBoxDep, base: BaseUrlDep,
    cell_m: Annotated[float | None, Query(gt=0, le=1000, description="Cell size, metres (default 25)")] = None,
    min_score: Annotated[float, Query(ge=0, le=100, description="Leave out cells scoring less")] = 1.0,
) -> Response:
    """Each monitor's four factors (PM10, distance to heavy-traffic roads, muck trucks nearby, distance
    to large sites), their grades and weighted score; the score spread over a metric grid as GeoJSON
    cells with `score` (0–100) and `grade` (0–4); PM10 warnings. Method: docs/analysis.md."""
    svc = dust_service(request)

    def run() -> dict[str, Any]:
        grid = svc.grid(bbox, cell_m)
        st = svc.state()
        cells = grid.cells(min_score) if grid is not None else []
        return {
            "type": "FeatureCollection", "version": st.version, "numberReturned": len(cells),
            "cell_m": grid.cell_m if grid is not None else (cell_m or svc.config.cell_m),
            "features": cells,
            "monitors": [m.as_dict() for m in st.monitors],
            "warnings": [{"code": m.monitor.code, "pm10": m.monitor.pm10, "message": "PM10 over its limit"}
                         for m in st.monitors if m.pm10_over_limit],
            "config": {"factors": [f.__dict__ for f in svc.config.factors],
                       "grade_thresholds": svc.config.grade_thresholds, "influence_m": svc.config.influence_m},
            "tiles": f"{base}/raster/{DATASET}/{{z}}/{{x}}/{{y}}.png",
        }

    return json_response(await run_in_threadpool(run), "application/geo+json")


def install(app: FastAPI) -> None:
    """Create the app's dust service and register its heat tiles in the raster catalogue (called by
    ``gis_api.routers.analysis.register``; named ``install`` so router discovery does not run it twice)."""
    app.state.dust = DustHeatService(app.state.store, cap=app.state.settings.analysis_max_features * 4)
    catalog_for(app.state.settings.raster_dir).register_virtual(DustHeatTiles(app.state.dust))
    app.include_router(router)


__all__ = ["DustHeatTiles", "install"]
