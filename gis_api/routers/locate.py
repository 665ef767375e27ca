"""Locate endpoints: ``/search`` (names, addresses, codes), ``/nearest`` and ``/locate/grid``.

The work is in :mod:`twin.search` and :mod:`twin.analysis.locate`; this module parses
and serialises. One search index per app, rebuilt when a searched layer changes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gis_api.deps import SettingsDep, StoreDep
from gis_api.routers.analysis import feature_json, json_response
from gis_api.security import authorize, hidden_fields, readable_layers
from twin.analysis import check_distance, check_lonlat, parse_point
from twin.analysis.locate import locate_grid, nearest_features
from twin.catalog import LAYERS, get_layer
from twin.errors import InvalidParameter, LimitExceeded
from twin.search import SEARCH_FIELDS, SearchService

router = APIRouter(tags=["Locate"])


def search_service(request: Request) -> SearchService:
    svc = getattr(request.app.state, "search", None)
    if svc is None:
        svc = request.app.state.search = SearchService(request.app.state.store)
    return svc


@router.get("/search", summary="Find buildings, houses, devices, grids, pipes … by name, address or code",
            responses={200: {"content": {"application/geo+json": {}}}})
async def search(
    request: Request,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Text to find (part of a name, address or code)",
                            examples=["张家宅"])],
    layers: Annotated[str | None, Query(description=f"Comma-separated layers to search (default all: {', '.join(SEARCH_FIELDS)})")] = None,
    limit: Annotated[int, Query(ge=1, description="Most results (at most TWIN_SEARCH_MAX_RESULTS)")] = 20,
) -> Response:
    """Partial matches anywhere in the text, ranked exact → starts with → contains; `3组`, `03组` and
    `三组` match alike; full-width letters and digits match half-width. Each result is a GeoJSON point
    feature (a point on the feature) with `layer`, `label`, the matched `field`/`text` and `match`."""
    if limit > settings.search_max_results:
        raise LimitExceeded(f"limit must be at most {settings.search_max_results}")
    names = [s.strip() for s in layers.split(",") if s.strip()] if layers else list(SEARCH_FIELDS)
    for name in names:  # only layers the caller may read are searched (a named one it may not: 401/403)
        get_layer(name)
    allowed = readable_layers(request, names)
    if not allowed:
        authorize(request, names[0], "read")
    names = allowed
    svc = search_service(request)
    hits = await run_in_threadpool(svc.search, q, limit, names)
    feats = [{
        "type": "Feature", "id": h.id,
        "geometry": {"type": "Point", "coordinates": list(h.point)} if h.point else None,
        "properties": {"layer": h.layer, "label": h.label, "code": h.code, "field": h.field, "text": h.text,
                       "match": h.match, "rank": k + 1},
    } for k, h in enumerate(hits)]
    return json_response({"type": "FeatureCollection", "query": q, "numberReturned": len(feats), "features": feats},
                         "application/geo+json")


@router.get("/nearest", summary="The n nearest features of a layer to a point, with distances in metres",
            responses={200: {"content": {"application/geo+json": {}}}})
async def nearest(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    lon: Annotated[float, Query(description="Longitude (CRS84)")],
    lat: Annotated[float, Query(description="Latitude (CRS84)")],
    layer: Annotated[str, Query(description="Layer id", json_schema_extra={"enum": list(LAYERS)})] = "devices",
    n: Annotated[int, Query(ge=1, description="How many (at most TWIN_NEAREST_MAX_N)")] = 5,
    max_distance: Annotated[float | None, Query(description="Search no farther than this, metres")] = None,
    kind: Annotated[str | None, Query(description="Only features of this `kind` (devices, pipe nodes)")] = None,
) -> Response:
    """Exact k-nearest by ground distance (to the nearest point of each feature), nearest first."""
    check_lonlat(lon, lat)
    spec = get_layer(layer)
    authorize(request, spec.id, "read")
    hidden = hidden_fields(request, spec.id)
    if n > settings.nearest_max_n:
        raise LimitExceeded(f"n must be at most {settings.nearest_max_n}")
    maxd = check_distance(settings.analysis_max_distance_m if max_distance is None else max_distance,
                          maximum=settings.analysis_max_distance_m, what="max_distance")
    filters: dict[str, str] = {}
    if kind is not None:
        if "kind" not in spec.table.c:
            raise InvalidParameter(f"layer {spec.id!r} has no 'kind'")
        filters["kind"] = kind
    hits = await run_in_threadpool(nearest_features, store, spec.id, lon, lat, n, max_distance_m=maxd,
                                   cap=settings.analysis_max_features, filters=filters)
    feats = [feature_json(h.layer, h.id, {k: v for k, v in h.properties.items() if k not in hidden}, h.geometry,
                          {"distance_m": round(h.distance_m, 3), "rank": k + 1}) for k, h in enumerate(hits)]
    return json_response({"type": "FeatureCollection", "numberReturned": len(feats), "features": feats},
                         "application/geo+json")


@router.get("/locate/grid", summary="The unit grid, village and town containing a point")
async def grid(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    point: Annotated[str | None, Query(description="lon,lat (CRS84)", examples=["120.95,31.38"])] = None,
    lon: Annotated[float | None, Query(description="Longitude, instead of `point`")] = None,
    lat: Annotated[float | None, Query(description="Latitude, instead of `point`")] = None,
) -> Response:
    """`unit`, `village` and `town`: each the grid feature of that level covering the point, or null
    when the point lies outside every grid of that level."""
    if point is not None:
        if lon is not None or lat is not None:
            raise InvalidParameter("give either point=lon,lat or lon and lat, not both")
        x, y = parse_point(point)
    elif lon is not None and lat is not None:
        x, y = check_lonlat(lon, lat)
    else:
        raise InvalidParameter("give point=lon,lat (or lon and lat)")
    authorize(request, "grids", "read")
    found = await run_in_threadpool(locate_grid, store, x, y, cap=settings.analysis_max_features)
    out: dict[str, Any] = {"point": [x, y]}
    for level, m in found.items():
        out[level] = None if m is None else feature_json("grids", m.id, m.properties, m.geometry, {})
    return json_response(out)


def register(app: FastAPI) -> None:
    app.include_router(router)
