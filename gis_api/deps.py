"""Small typed dependencies shared by the routers: the store, bbox, limit, layer.

Routers never parse query strings by hand; they declare these.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from twin.catalog import LAYERS, LayerSpec, get_layer
from twin.crs import bbox_to_crs84, check_supported, parse_crs
from twin.errors import InvalidParameter, LimitExceeded
from twin.params import BBox, check_lonlat_bbox, parse_bbox
from twin.settings import TwinSettings
from twin.store import SpatialStore


def get_store(request: Request) -> SpatialStore:
    return request.app.state.store


def get_app_settings(request: Request) -> TwinSettings:
    return request.app.state.settings


StoreDep = Annotated[SpatialStore, Depends(get_store)]
SettingsDep = Annotated[TwinSettings, Depends(get_app_settings)]


def layer_spec(
    layer: Annotated[str, Path(description="Layer id", json_schema_extra={"enum": list(LAYERS)})],
) -> LayerSpec:
    return get_layer(layer)


LayerDep = Annotated[LayerSpec, Depends(layer_spec)]


def bbox_crs84(
    settings: SettingsDep,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in bbox-crs (default CRS84 lon/lat)")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="CRS URI of bbox")] = None,
) -> BBox | None:
    """The bbox as CRS84 lon/lat, bounded in size so no request scans a province."""
    if bbox is None:
        if bbox_crs is not None:
            raise InvalidParameter("bbox-crs given without bbox")
        return None
    box = parse_bbox(bbox)
    if bbox_crs is not None:
        crs = parse_crs(bbox_crs)
        check_supported(crs)
        box = bbox_to_crs84(box, crs)
    check_lonlat_bbox(box)
    area = (box[2] - box[0]) * (box[3] - box[1])
    if area > settings.max_bbox_area_deg2:
        raise LimitExceeded(
            f"bbox covers {area:.1f} square degrees; at most {settings.max_bbox_area_deg2} allowed",
            detail={"max_bbox_area_deg2": settings.max_bbox_area_deg2},
        )
    return box


BBoxDep = Annotated[BBox | None, Depends(bbox_crs84)]


def page_limit(
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, description="Features per page")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Features to skip")] = 0,
) -> tuple[int, int]:
    n = settings.default_items_limit if limit is None else limit
    if n > settings.max_items_limit:
        raise LimitExceeded(
            f"limit {n} exceeds the maximum of {settings.max_items_limit}; page with offset",
            detail={"max_limit": settings.max_items_limit},
        )
    return n, offset


PageDep = Annotated[tuple[int, int], Depends(page_limit)]


def base_url(request: Request) -> str:
    configured = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


BaseUrlDep = Annotated[str, Depends(base_url)]
