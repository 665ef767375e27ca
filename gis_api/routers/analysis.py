"""Analysis endpoints (``/analysis/…``): parse the request, call ``twin.analysis``, serialise.

Every body is a pydantic model (so the OpenAPI document shows it); geometries and
distances are checked by :mod:`twin.analysis.inputs`, which raises the core errors
that ``gis_api.errors`` maps to 4xx JSON.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import orjson
import shapely
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import SettingsDep, StoreDep
from gis_api.security import authorize
from twin import geojson
from twin.analysis import (
    FeatureSet,
    buffer_polygon,
    check_distance,
    feature_by_ref,
    features_in_bbox,
    features_near_point,
    features_within,
    frame_for,
    parse_geometry,
    plain_point_xy,
    search_bbox,
)
from twin.analysis.buffer import bounds_search_bbox, circle_ring
from twin.analysis.clearance import check_clearance, clearance_table, section_clearance
from twin.analysis.ground import ground_model
from twin.analysis.metric import area_frame_for
from twin.analysis.overlap import overlap_analysis
from twin.analysis.section import cross_section
from twin.analysis.section_svg import cross_section_svg
from twin.catalog import LAYERS, get_layer
from twin.errors import InvalidGeometry, InvalidParameter, LimitExceeded
from twin.params import check_lonlat_bbox, parse_bbox
from twin.settings import TwinSettings
from twin.store import SpatialStore

router = APIRouter(tags=["Analysis"])

#: The layer each analysis reads first: the caller needs `analyse` on it (roles.json). The
#: buffer needs it on every layer it is asked to intersect.
ANALYSIS_LAYER = {"cross-section": "pipelines", "clearance": "pipelines", "overlap": "zones", "trace": "pipelines",
                  "valve-isolation": "pipelines", "pipe-statistics": "pipelines", "flow-direction": "pipelines",
                  "dust-heat": "devices"}


def analyse(analysis: str):  # noqa: ANN201 - a FastAPI dependency
    def check(request: Request) -> None:
        check_analyse(request, analysis)

    return check


def check_analyse(request: Request, analysis: str, req: Any = None) -> None:
    """The one authorisation step of every analysis, over HTTP or as an OGC process."""
    if analysis == "buffer":
        for name in check_layers(list(getattr(req, "layers", None) or DEFAULT_BUFFER_LAYERS)):
            authorize(request, name, "analyse")
        return
    authorize(request, ANALYSIS_LAYER[analysis], "analyse")

DEFAULT_BUFFER_LAYERS = ["buildings", "pipelines", "pipe_nodes", "devices", "cameras"]
MAX_LAYERS = len(LAYERS)


def json_response(obj: Any, media_type: str = "application/json") -> Response:
    return Response(geojson.dumps(obj), media_type=media_type)


class FeatureRef(BaseModel):
    """A stored feature, by numeric ``id`` or business ``code``."""

    layer: str = Field(description="Layer id", examples=["pipelines"])
    id: int | None = Field(default=None, description="Feature id (as in /collections/{layer}/items/{id})")
    code: str | None = Field(default=None, description="Business code, e.g. RQL000012")


class BufferRequest(BaseModel):
    geometry: dict[str, Any] | None = Field(
        default=None, description="GeoJSON geometry in CRS84 lon/lat (or give `feature`)",
        examples=[{"type": "Point", "coordinates": [120.95, 31.38]}],
    )
    feature: FeatureRef | None = Field(default=None, description="Buffer around a stored feature instead")
    distance: float = Field(description="Buffer distance in metres on the ground (0 … TWIN_ANALYSIS_MAX_DISTANCE_M)",
                            examples=[50])
    layers: list[str] = Field(default_factory=lambda: list(DEFAULT_BUFFER_LAYERS),
                              description="Layers whose features are tested against the buffer")
    include_geometry: bool = Field(default=True, description="Return each feature's geometry")


def resolve_geometry(store: SpatialStore, settings: TwinSettings, geometry: dict[str, Any] | None,
                     feature: FeatureRef | None, **kw: Any):  # noqa: ANN201 - shapely geometry
    """The request's geometry (lon/lat) and, for a feature reference, its ``(layer, id)``."""
    if (geometry is None) == (feature is None):
        raise InvalidParameter("give exactly one of 'geometry' or 'feature'")
    if geometry is not None:
        return parse_geometry(geometry, max_vertices=settings.analysis_max_vertices, **kw), None
    assert feature is not None
    fs = feature_by_ref(store, feature.layer, id=feature.id, code=feature.code)
    return fs.geometries[0], (fs.layer, fs.ids[0])


def check_layers(layers: list[str]) -> list[str]:
    if not layers:
        raise InvalidParameter("name at least one layer")
    if len(layers) > MAX_LAYERS:
        raise LimitExceeded(f"at most {MAX_LAYERS} layers")
    return list(dict.fromkeys(get_layer(name).id for name in layers))


def feature_json(layer: str, fid: int, props: dict[str, Any], geom: Any, extra: dict[str, Any],
                 include_geometry: bool = True) -> dict[str, Any]:
    return {
        "type": "Feature", "id": fid,
        "geometry": geojson.geometry_fragments([geom])[0] if include_geometry and geom is not None else None,
        "properties": {"layer": layer, **extra, **props},
    }


def features_json(rows: list[tuple[str, int, dict[str, Any], Any, dict[str, Any]]],
                  include_geometry: bool = True) -> list[dict[str, Any]]:
    """GeoJSON features of ``(layer, id, properties, geometry, extra properties)`` rows; the geometries
    are encoded in one vectorised call (geometries already GeoJSON — ``orjson.Fragment`` — go as they are)."""
    frags: list[Any] = [None] * len(rows)
    if include_geometry and rows:
        todo = [k for k, r in enumerate(rows) if not isinstance(r[3], orjson.Fragment)]
        if len(todo) == len(rows):
            frags = geojson.geometry_fragments(np.array([r[3] for r in rows], dtype=object))
        else:
            frags = [r[3] for r in rows]
            done = geojson.geometry_fragments(np.array([rows[k][3] for k in todo], dtype=object)) if todo else []
            for k, f in zip(todo, done, strict=True):
                frags[k] = f
    return [{"type": "Feature", "id": fid, "geometry": g, "properties": {"layer": layer, **extra, **props}}
            for (layer, fid, props, _, extra), g in zip(rows, frags, strict=True)]


def run_buffer(store: SpatialStore, settings: TwinSettings, req: BufferRequest) -> dict[str, Any]:
    distance = check_distance(req.distance, maximum=settings.analysis_max_distance_m)
    geometry = "geojson" if req.include_geometry else "none"
    cap = settings.analysis_max_features
    xy = plain_point_xy(req.geometry) if req.feature is None and distance > 0 else None
    if xy is not None:  # the commonest buffer, around a point: no geometry is made on this side
        layers = check_layers(req.layers)
        box = bounds_search_bbox((xy[0], xy[1], xy[0], xy[1]), distance)
        found = [features_near_point(store, name, xy[0], xy[1], distance, box, cap=cap, geometry=geometry)
                 for name in layers]
        ring, area = circle_ring(None, xy[0], xy[1], distance)
        return buffer_answer(distance, layers, found, geojson.ring_polygon_fragment(ring), area, None)
    geom, ref = resolve_geometry(store, settings, req.geometry, req.feature)
    layers = check_layers(req.layers)
    box = search_bbox(geom, distance)
    # the hits' geometries come as GeoJSON text straight from PostGIS (nothing to decode and encode again)
    found = [features_within(store, name, geom, distance, box, cap=cap, geometry=geometry) for name in layers]
    if geom.geom_type == "Point" and distance > 0:  # its ring straight to JSON
        ring, area = circle_ring(frame_for(geom, "tmerc"), geom.x, geom.y, distance)
        drawn = geojson.ring_polygon_fragment(ring)
    else:
        poly, area = buffer_polygon(geom, distance)
        drawn = geojson.polygon_fragment(poly)
    return buffer_answer(distance, layers, found, drawn, area, ref)


def buffer_answer(distance: float, layers: list[str], found: list[tuple[FeatureSet, np.ndarray]], drawn: Any,
                  area: float, ref: tuple[str, int] | None) -> dict[str, Any]:
    """The buffer's JSON answer: the drawn polygon and every hit of ``found`` (nearest first, but the
    feature ``ref`` the buffer was drawn around)."""
    hits = [(float(d[i]), fs.layer, fid, fs.properties[i], fs.geometries[i]) for fs, d in found
            for i, fid in enumerate(fs.ids) if ref is None or (fs.layer, fid) != ref]
    if len(found) > 1:  # each layer comes nearest first; all of them together too
        hits.sort(key=lambda h: h[:3])
    counts = dict.fromkeys(layers, 0)
    for h in hits:
        counts[h[1]] += 1
    return {
        "distance_m": distance,
        "area_m2": round(area, 3),
        "buffer": drawn,
        "counts": counts,
        "features": {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "id": fid, "geometry": g,
                          "properties": {"layer": layer, "distance_m": round(d, 3), **props}}
                         for d, layer, fid, props, g in hits],
        },
    }


@router.post("/analysis/buffer", summary="Features within a distance (metres) of a geometry or feature")
async def buffer(request: Request, req: BufferRequest, store: StoreDep, settings: SettingsDep) -> Response:
    """The buffer polygon and every feature of `layers` within `distance` metres, nearest first.

    Distances are exact ground distances (local azimuthal-equidistant frame); a feature is
    inside when its distance is at most `distance`.
    """
    check_analyse(request, "buffer", req)
    return json_response(await run_in_threadpool(run_buffer, store, settings, req))


class CrossSectionRequest(BaseModel):
    line: dict[str, Any] = Field(
        description="The cut: a GeoJSON LineString in CRS84 lon/lat (two or more distinct points)",
        examples=[{"type": "LineString", "coordinates": [[120.950, 31.380], [120.9502, 31.3801]]}],
    )
    step_m: float | None = Field(default=None, description="Ground profile sample spacing in metres "
                                 "(default: length/200, at least 0.5 m)")


def run_cross_section(store: SpatialStore, settings: TwinSettings, req: CrossSectionRequest):  # noqa: ANN201
    cut = parse_geometry(req.line, max_vertices=settings.analysis_max_vertices, kinds=("LineString",), what="line")
    frame = frame_for(cut)
    length = float(frame.to_metric(cut).length)
    check_distance(length, maximum=settings.analysis_max_distance_m, what="cut line length")
    step = None
    if req.step_m is not None:
        step = check_distance(req.step_m, maximum=settings.analysis_max_distance_m, what="step_m", allow_zero=False)
        if length / step > 20_000:
            raise LimitExceeded("step_m is too small for this cut: at most 20000 profile samples")
    pipes = features_in_bbox(store, "pipelines", search_bbox(cut, 0.01), cap=settings.analysis_max_features)
    model = ground_model(settings.raster_dir / "dem.tif")
    return cross_section(cut, pipes, model.elevation if model else None, step)


@router.post(
    "/analysis/cross-section",
    dependencies=[Depends(analyse("cross-section"))],
    summary="Pipes crossed by a cut line, at their depth, with the ground profile (JSON or SVG drawing)",
    responses={200: {"content": {"application/json": {}, "image/svg+xml": {}}}},
)
async def cross_section_endpoint(
    req: CrossSectionRequest, store: StoreDep, settings: SettingsDep,
    format: Literal["json", "svg"] = Query("json", description="`svg` draws the section"),
) -> Response:
    """Every pipe the cut crosses: offset along the cut (m), ground (DEM), top and invert elevations and
    depths below ground, diameter, utility, material — and the ground profile along the cut."""
    sec = await run_in_threadpool(run_cross_section, store, settings, req)
    if format == "svg":
        return Response(cross_section_svg(sec), media_type="image/svg+xml")
    return json_response({
        "length_m": round(sec.length_m, 3),
        "crossings": [c.as_dict() for c in sec.crossings],
        "profile": {"offset_m": np.round(sec.profile_offsets_m, 3).tolist(),
                    "ground_m": [None if not np.isfinite(z) else round(float(z), 3) for z in sec.profile_ground_m]},
        "ground_source": "dem" if np.isfinite(sec.profile_ground_m).any() else "none",
        "clearance": section_clearance(sec.crossings, clearance_table()),
    })


class OverlapRequest(BaseModel):
    geometry: dict[str, Any] | None = Field(
        default=None, description="The project polygon: GeoJSON Polygon or MultiPolygon, CRS84 lon/lat",
        examples=[{"type": "Polygon", "coordinates": [[[120.95, 31.38], [120.952, 31.38], [120.952, 31.382],
                                                       [120.95, 31.38]]]}],
    )
    feature: FeatureRef | None = Field(default=None, description="Or a stored polygon feature (e.g. a construction site)")


def run_overlap(store: SpatialStore, settings: TwinSettings, req: OverlapRequest) -> dict[str, Any]:
    geom, _ = resolve_geometry(store, settings, req.geometry, req.feature, kinds=("Polygon", "MultiPolygon"))
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidGeometry(f"overlap needs a polygon, not a {geom.geom_type}")
    area = float(area_frame_for(geom).to_metric(geom).area)
    max_area = settings.analysis_max_distance_m ** 2
    if area > max_area:
        raise LimitExceeded(f"polygon covers {area / 1e6:.1f} km²; at most {max_area / 1e6:g} km²")
    box = search_bbox(geom, 0.01)
    cap = settings.analysis_max_features
    sets = [features_in_bbox(store, name, box, cap=cap) for name in ("zones", "control_lines", "farmland", "grids")]
    return overlap_analysis(geom, *sets).as_dict()


@router.post("/analysis/overlap", dependencies=[Depends(analyse("overlap"))], summary="Overlap of a project polygon with zones, control lines and farmland")
async def overlap(req: OverlapRequest, store: StoreDep, settings: SettingsDep) -> Response:
    """Overlap area (m² and 亩 mu) with each zone (三区), control line (三线) and farmland grade, with a
    verdict when the polygon enters the ecological red line or permanent basic farmland, and the
    overlap by village and by unit grid. Areas are exact (local equal-area projection)."""
    return json_response(await run_in_threadpool(run_overlap, store, settings, req))


class ClearanceRequest(BaseModel):
    bbox: list[float] | None = Field(default=None, description="Area to check: [minlon, minlat, maxlon, maxlat]")
    geometry: dict[str, Any] | None = Field(default=None, description="Or a GeoJSON polygon (pipes meeting it)")
    pipes: list[str] | None = Field(default=None, description="Or the codes of the pipes to check among themselves")
    overrides: dict[str, dict[str, float]] | None = Field(
        default=None, description="Replace table values: {\"horizontal_m\": {\"gas|water\": 0.8}, \"vertical_m\": {…}}")


def run_clearance(store: SpatialStore, settings: TwinSettings, req: ClearanceRequest) -> dict[str, Any]:
    given = [x is not None for x in (req.bbox, req.geometry, req.pipes)]
    if sum(given) != 1:
        raise InvalidParameter("give exactly one of 'bbox', 'geometry' or 'pipes'")
    table = clearance_table(req.overrides)
    cap = settings.analysis_max_features
    if req.pipes is not None:
        if not req.pipes or len(req.pipes) > 1000:
            raise InvalidParameter("pipes: 1 to 1000 codes")
        sets = [feature_by_ref(store, "pipelines", code=c) for c in dict.fromkeys(req.pipes)]
        pipes = FeatureSet("pipelines", [f.ids[0] for f in sets], [f.properties[0] for f in sets],
                           np.array([f.geometries[0] for f in sets], dtype=object))
    else:
        if req.bbox is not None:
            box = parse_bbox(",".join(str(v) for v in req.bbox))
            check_lonlat_bbox(box)
            area = shapely.box(*box)
        else:
            area = parse_geometry(req.geometry, max_vertices=settings.analysis_max_vertices,
                                  kinds=("Polygon", "MultiPolygon"))
        if float(area_frame_for(area).to_metric(area).area) > 4e6:
            raise LimitExceeded("the clearance check covers at most 4 km² per request")
        pipes = features_in_bbox(store, "pipelines", area.bounds, cap=cap)
        keep = np.flatnonzero(shapely.intersects(pipes.geometries, area)) if len(pipes) else []
        pipes = pipes.take(keep)
    pairs = check_clearance(pipes, table)
    return {"checked_pipes": len(pipes), "count": len(pairs), "pairs": [p.as_dict() for p in pairs],
            "table": table.as_dict()}


@router.post("/analysis/clearance", dependencies=[Depends(analyse("clearance"))], summary="Pipe pairs closer than GB 50289 allows (horizontal and at crossings)")
async def clearance(req: ClearanceRequest, store: StoreDep, settings: SettingsDep) -> Response:
    """Horizontal clear distance between pipes that do not cross, vertical clear distance where they cross,
    each against the GB 50289 minimum for the two utilities (the table is returned; `overrides` change it)."""
    return json_response(await run_in_threadpool(run_clearance, store, settings, req))


def register(app: FastAPI) -> None:
    from gis_api.routers import analysis_dust, analysis_network

    app.include_router(router)
    app.include_router(analysis_network.router)
    analysis_dust.install(app)
