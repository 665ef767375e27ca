"""Pipe-network endpoints: flow direction, trace, valve isolation, statistics (registered by
``gis_api.routers.analysis``). The work is in :mod:`twin.analysis.network`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import numpy as np
import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BBoxDep, SettingsDep, StoreDep
from gis_api.routers.analysis import FeatureRef, features_json, json_response
from gis_api.security import layer_permission  # noqa: E402
from twin import geojson
from twin.analysis import check_distance, check_lonlat
from twin.analysis.metric import frame_for
from twin.analysis.network import UtilityNetwork, pipe_statistics
from twin.analysis.network_service import NetworkService
from twin.analysis.source import FeatureSet
from twin.errors import InvalidParameter
from twin.settings import TwinSettings

router = APIRouter(tags=["Analysis"], dependencies=[Depends(layer_permission("pipelines", "analyse"))])
MAX_FINDINGS = 100


def network_service(request: Request) -> NetworkService:
    svc = getattr(request.app.state, "networks", None)
    if svc is None:
        cap = request.app.state.settings.analysis_network_max_rows
        svc = request.app.state.networks = NetworkService(request.app.state.store, cap=cap)
    return svc


class StartRequest(BaseModel):
    point: list[float] | None = Field(default=None, description="[lon, lat] near a pipe (CRS84)",
                                      examples=[[120.95, 31.38]])
    feature: FeatureRef | None = Field(default=None, description="Or a pipe / pipe node / other feature")
    utility: str | None = Field(default=None, description="Only pipes of this utility (water_supply, sewage, …)")
    max_snap_m: float = Field(default=50.0, description="How far the point may lie from the pipe, metres")
    sources: list[str] | None = Field(default=None, description="Source node codes of a pressure network "
                                      "(default: nodes of a source kind, else assumed — see the findings)")


class TraceRequest(StartRequest):
    direction: Literal["upstream", "downstream"] = Field(description="Follow the flow or go against it")


class IsolationRequest(StartRequest):
    broken_valves: list[str] = Field(default_factory=list, description="Valve codes that cannot be closed")
    service_m: float = Field(default=30.0, description="A building or device is served by its nearest pipe "
                             "of the utility within this many metres")


def _start(svc: NetworkService, settings: TwinSettings, req: StartRequest) -> tuple[UtilityNetwork, str, float]:
    snap = check_distance(req.max_snap_m, maximum=settings.analysis_max_distance_m, what="max_snap_m")
    point = None
    if req.point is not None:
        if len(req.point) != 2:
            raise InvalidParameter("point must be [lon, lat]")
        point = check_lonlat(req.point[0], req.point[1])
    feature = (req.feature.layer, req.feature.id, req.feature.code) if req.feature else None
    util, code, dist = svc.start_pipe(point=point, feature=feature, utility=req.utility, max_snap_m=snap)
    if req.utility and util != req.utility:
        raise InvalidParameter(f"the feature belongs to the {util} network, not {req.utility}")
    return svc.network(util, req.sources), code, dist


def _pipes_fc(svc: NetworkService, net: UtilityNetwork, codes: list[str]) -> dict[str, Any]:
    rows = svc.pipe_rows(net.utility, codes)
    out = []
    for fid, props, g in zip(rows.ids, rows.properties, rows.geometries, strict=True):
        p = net.pipes[props["code"]]
        out.append(("pipelines", fid, {"code": p.code, "diameter_mm": p.diameter_mm,
                                        "material": props.get("material")}, g,
                     {"flow_from": p.flow_from, "flow_to": p.flow_to}))
    return {"type": "FeatureCollection", "features": features_json(out)}


def _nodes_json(net: UtilityNetwork, codes: list[str]) -> list[dict[str, Any]]:
    return [{"code": c, "id": net.node_id.get(c), "kind": net.node_kind.get(c), "lon": net.node_xy[c][0],
             "lat": net.node_xy[c][1]} for c in codes]


def _findings(net: UtilityNetwork) -> dict[str, Any]:
    return {"count": len(net.findings), "items": [f.__dict__ for f in net.findings[:MAX_FINDINGS]]}


def run_trace(svc: NetworkService, settings: TwinSettings, req: TraceRequest) -> dict[str, Any]:
    net, code, dist = _start(svc, settings, req)
    pipes, nodes = net.trace(code, req.direction)
    length = sum(net.pipes[c].length_m for c in pipes)
    return {"utility": net.utility, "start_pipe": code, "start_distance_m": round(dist, 3),
            "direction": req.direction, "pipe_count": len(pipes), "length_m": round(length, 2),
            "pipes": _pipes_fc(svc, net, pipes), "nodes": _nodes_json(net, nodes),
            "sources": net.sources, "findings": _findings(net), "data_version": svc.freshness()}


def run_isolation(svc: NetworkService, settings: TwinSettings, req: IsolationRequest) -> dict[str, Any]:
    net, code, dist = _start(svc, settings, req)
    service = check_distance(req.service_m, maximum=1000.0, what="service_m")
    if net.utility_is_gravity() or not any(k == "valve" for k in net.node_kind.values()):
        raise InvalidParameter(f"valve isolation applies to pressure networks with valves; the {net.utility} "
                               "network has none (use a trace instead)", detail={"utility": net.utility})
    iso = net.isolate(code, req.broken_valves)
    affected = set(iso.isolated_pipes) | set(iso.cut_off_pipes)
    out: dict[str, Any] = {
        "utility": net.utility, "burst_pipe": code, "start_distance_m": round(dist, 3),
        "valves_to_close": _nodes_json(net, iso.valves_to_close),
        "broken_valves": iso.broken_valves, "unknown_valves": iso.unknown_valves,
        "isolated": {"pipes": _pipes_fc(svc, net, iso.isolated_pipes), "nodes": _nodes_json(net, iso.isolated_nodes)},
        "cut_off": {"pipes": _pipes_fc(svc, net, iso.cut_off_pipes), "nodes": _nodes_json(net, iso.cut_off_nodes)},
        "sources": net.sources, "sources_left": iso.sources_left,
    }
    for layer in ("buildings", "devices"):
        fs: FeatureSet = svc.served(layer, net.utility, affected, service)
        out[f"{layer}_affected"] = {
            "count": len(fs),
            "households": int(sum(p.get("households") or 0 for p in fs.properties)) if layer == "buildings" else None,
            "features": [{"id": i, "code": p.get("code"), "name": p.get("name"), "address": p.get("address")}
                         for i, p in zip(fs.ids, fs.properties, strict=True)],
        }
    out["findings"] = _findings(net)
    out["data_version"] = svc.freshness()
    return out


@router.post("/analysis/trace", summary="Upstream / downstream trace through a pipe network")
async def trace(req: TraceRequest, request: Request, settings: SettingsDep) -> Response:
    """From the pipe nearest to `point` (or a given pipe / node), every pipe and node reached following
    the flow (`downstream`) or against it (`upstream`). Gravity networks flow down their inverts;
    pressure networks away from their sources."""
    svc = network_service(request)
    return json_response(await run_in_threadpool(run_trace, svc, settings, req))


@router.post("/analysis/valve-isolation", summary="Burst-pipe valve isolation (valves to close, what is cut off)")
async def valve_isolation(req: IsolationRequest, request: Request, settings: SettingsDep) -> Response:
    """The valves to close around the burst pipe; the pipes and nodes they isolate; every pipe and node
    then cut off from all sources; and the buildings (with households) and devices they serve.
    Valves in `broken_valves` cannot close: the search goes on to the next valves beyond them."""
    svc = network_service(request)
    return json_response(await run_in_threadpool(run_isolation, svc, settings, req))


def _arrow(line_m: shapely.LineString) -> tuple[shapely.Point, float]:
    mid = line_m.interpolate(0.5, normalized=True)
    a = line_m.interpolate(max(line_m.project(mid) - 0.5, 0.0))
    b = line_m.interpolate(min(line_m.project(mid) + 0.5, line_m.length))
    return mid, float(np.degrees(np.arctan2(b.x - a.x, b.y - a.y)) % 360)


def run_flow(svc: NetworkService, store, settings: TwinSettings, bbox, utility: str | None) -> dict[str, Any]:  # noqa: ANN001
    from twin.analysis.source import features_in_bbox

    fs = features_in_bbox(store, "pipelines", bbox, cap=settings.analysis_max_features,
                          filters={"utility": utility} if utility else None)
    feats = []
    if len(fs):
        frame = frame_for(shapely.box(*bbox))
        for fid, props, g in zip(fs.ids, fs.properties, fs.geometries, strict=True):
            net = svc.network(props["utility"])
            p = net.pipes.get(props["code"])
            if p is None:
                continue
            forward = p.flow_from == p.start
            line = g if forward else shapely.reverse(g)
            mid, bearing = _arrow(frame.to_metric(line))
            mid_ll = frame.to_lonlat(mid)
            slope = None
            if p.start_invert_m is not None and p.end_invert_m is not None and p.length_m > 0:
                slope = abs(p.start_invert_m - p.end_invert_m) / p.length_m
            feats.append({"type": "Feature", "id": fid, "geometry": geojson.geometry_fragments([line])[0],
                          "properties": {"code": p.code, "utility": p.utility, "gravity": p.gravity,
                                         "flow_from": p.flow_from, "flow_to": p.flow_to,
                                         "digitised_direction": forward, "reverse_graded": p.reverse_graded,
                                         "flat": p.flat, "slope": None if slope is None else round(slope, 5),
                                         "arrow": {"lon": round(mid_ll.x, 7), "lat": round(mid_ll.y, 7),
                                                   "bearing_deg": round(bearing, 1)}}})
    return {"type": "FeatureCollection", "numberReturned": len(feats), "features": feats}


@router.get("/analysis/flow-direction", summary="Flow direction of the pipes in a bbox, with arrow points")
async def flow_direction(
    request: Request, store: StoreDep, settings: SettingsDep, bbox: BBoxDep,
    utility: Annotated[str | None, Query(description="Only this utility")] = None,
) -> Response:
    """Each pipe's geometry drawn in its flow direction, with `arrow` (a point at its middle and the bearing,
    degrees clockwise from north) for map symbols, `reverse_graded` / `flat` flags of gravity pipes."""
    if bbox is None:
        raise InvalidParameter("bbox is required")
    svc = network_service(request)
    return json_response(await run_in_threadpool(run_flow, svc, store, settings, bbox, utility),
                         "application/geo+json")


@router.get("/analysis/pipe-statistics", summary="Pipe length and count by utility, material, diameter, depth, age")
async def statistics(
    store: StoreDep, settings: SettingsDep, bbox: BBoxDep,
    utility: Annotated[str | None, Query(description="Only this utility")] = None,
    as_of_year: Annotated[int | None, Query(ge=1900, le=2200, description="Year ages are counted to")] = None,
) -> Response:
    """Seed 002 §5.3.2 pipeline statistics: 管径分段、埋深分段、类型、材质、年代 — count and length (m)."""
    from twin.analysis.source import features_in_bbox

    box = bbox or (-180.0, -90.0, 180.0, 90.0)

    def run() -> dict[str, Any]:
        fs = features_in_bbox(store, "pipelines", box, cap=settings.analysis_max_features * 4,
                              filters={"utility": utility} if utility else None)
        return pipe_statistics(fs, as_of_year or dt.date.today().year)

    return json_response(await run_in_threadpool(run))
