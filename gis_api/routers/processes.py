"""OGC API – Processes (Part 1: Core, synchronous execution) around the analyses.

Each process is the same function as its plain endpoint (``/analysis/…``) with the same
inputs: the request body's fields become the process inputs, described from the same
pydantic models. Execution is synchronous; the single output ``result`` is returned as
the response body (the "raw value" form of a one-output sync execution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep
from gis_api.routers import analysis as A
from gis_api.routers import analysis_network as N
from twin.errors import InvalidParameter, NotFound

router = APIRouter(tags=["Processes"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
]


class NoSuchProcess(NotFound):
    code = "no-such-process"


@dataclass(frozen=True)
class Process:
    id: str
    title: str
    description: str
    model: type[BaseModel]
    run: Callable[[Request, Any], dict[str, Any]]


def _store_run(fn: Callable[..., Any]) -> Callable[[Request, Any], dict[str, Any]]:
    def run(request: Request, req: Any) -> dict[str, Any]:
        return fn(request.app.state.store, request.app.state.settings, req)
    return run


def _net_run(fn: Callable[..., Any]) -> Callable[[Request, Any], dict[str, Any]]:
    def run(request: Request, req: Any) -> dict[str, Any]:
        return fn(N.network_service(request), request.app.state.settings, req)
    return run


def _section(request: Request, req: Any) -> dict[str, Any]:
    sec = A.run_cross_section(request.app.state.store, request.app.state.settings, req)
    return {"length_m": round(sec.length_m, 3), "crossings": [c.as_dict() for c in sec.crossings],
            "profile": {"offset_m": [round(float(v), 3) for v in sec.profile_offsets_m],
                        "ground_m": [None if v != v else round(float(v), 3) for v in sec.profile_ground_m]}}


class StatisticsInputs(BaseModel):
    bbox: list[float] | None = Field(default=None, description="[minlon, minlat, maxlon, maxlat] (default: all)")
    utility: str | None = Field(default=None, description="Only this utility")
    as_of_year: int | None = Field(default=None, ge=1900, le=2200, description="Year ages are counted to")


def _statistics(request: Request, req: StatisticsInputs) -> dict[str, Any]:
    import datetime as dt

    from twin.analysis.network import pipe_statistics
    from twin.analysis.source import features_in_bbox
    from twin.params import check_lonlat_bbox, parse_bbox

    box = (-180.0, -90.0, 180.0, 90.0)
    if req.bbox is not None:
        box = parse_bbox(",".join(str(v) for v in req.bbox))
        check_lonlat_bbox(box)
    settings = request.app.state.settings
    fs = features_in_bbox(request.app.state.store, "pipelines", box, cap=settings.analysis_max_features * 4,
                          filters={"utility": req.utility} if req.utility else None)
    return pipe_statistics(fs, req.as_of_year or dt.date.today().year)


PROCESSES: dict[str, Process] = {p.id: p for p in (
    Process("buffer", "Buffer", "Features within a distance (metres) of a geometry or feature.",
            A.BufferRequest, _store_run(A.run_buffer)),
    Process("cross-section", "Pipeline cross-section", "Pipes crossed by a cut line, at their depth, and the "
            "ground profile.", A.CrossSectionRequest, _section),
    Process("clearance", "Pipeline clearance check", "Pipe pairs closer than GB 50289 allows.",
            A.ClearanceRequest, _store_run(A.run_clearance)),
    Process("overlap", "Planning overlap", "Overlap of a polygon with zones, control lines and farmland, with a "
            "red-line / permanent-farmland verdict.", A.OverlapRequest, _store_run(A.run_overlap)),
    Process("trace", "Network trace", "Upstream / downstream trace through a pipe network.",
            N.TraceRequest, _net_run(N.run_trace)),
    Process("valve-isolation", "Burst valve isolation", "Valves to close for a burst and what is cut off.",
            N.IsolationRequest, _net_run(N.run_isolation)),
    Process("pipe-statistics", "Pipeline statistics", "Count and length by utility, material, diameter, depth "
            "and age band.", StatisticsInputs, _statistics),
)}


def _description(p: Process, base: str, full: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": p.id, "title": p.title, "description": p.description, "version": "1.0.0",
        "jobControlOptions": ["sync-execute"], "outputTransmission": ["value"],
        "links": [{"href": f"{base}/processes/{p.id}", "rel": "self", "type": "application/json"},
                  {"href": f"{base}/processes/{p.id}/execution",
                   "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute", "type": "application/json"}],
    }
    if full:
        schema = p.model.model_json_schema()
        required = set(schema.get("required", []))
        defs = schema.get("$defs", {})
        doc["inputs"] = {
            name: {"title": prop.get("title", name), "description": prop.get("description", ""),
                   "minOccurs": 1 if name in required else 0, "maxOccurs": 1,
                   "schema": {**prop, **({"$defs": defs} if defs else {})}}
            for name, prop in schema.get("properties", {}).items()
        }
        doc["outputs"] = {"result": {"title": "Result", "schema": {"type": "object",
                                                                    "contentMediaType": "application/json"}}}
    return doc


@router.get("/processes", summary="The analyses offered as OGC API processes")
async def processes(base: BaseUrlDep) -> Response:
    return A.json_response({
        "processes": [_description(p, base, False) for p in PROCESSES.values()],
        "links": [{"href": f"{base}/processes", "rel": "self", "type": "application/json"}],
    })


@router.get("/processes/{process_id}", summary="One process: its inputs and outputs")
async def process(process_id: str, base: BaseUrlDep) -> Response:
    p = PROCESSES.get(process_id)
    if p is None:
        raise NoSuchProcess(f"no process {process_id!r}", detail={"processes": sorted(PROCESSES)})
    return A.json_response(_description(p, base, True))


class Execute(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="Input values by input id")
    outputs: dict[str, Any] | None = Field(default=None, description="Ignored: the one output is `result`")
    response: str | None = Field(default=None, description="`raw` (default) or `document`")


@router.post("/processes/{process_id}/execution", summary="Execute a process synchronously")
async def execute(process_id: str, body: Execute, request: Request) -> Response:
    """The inputs are those of the matching `/analysis/…` request body; the result is its response."""
    p = PROCESSES.get(process_id)
    if p is None:
        raise NoSuchProcess(f"no process {process_id!r}", detail={"processes": sorted(PROCESSES)})
    try:
        req = p.model.model_validate(body.inputs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "inputs"
        raise InvalidParameter(f"inputs.{where}: {first.get('msg')}",
                               detail=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
                               ) from None
    A.check_analyse(request, process_id, req)
    result = await run_in_threadpool(p.run, request, req)
    if body.response == "document":
        return A.json_response({"outputs": {"result": {"value": result}}})
    return A.json_response(result)


def register(app: FastAPI) -> None:
    app.include_router(router)
