"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from gis_api.deps import StoreDep
from gis_api.metrics import REPLICAS
from gis_api.replicas import ReplicaRouting
from gis_api.responses import JSONResponse
from twin.errors import StoreUnavailable

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers (and the MQTT broker, where this worker ingests); read replicas' health and lag")
async def readyz(store: StoreDep, request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(store.ping)
        checks["database"] = "ok"
    except StoreUnavailable as exc:
        checks["database"] = f"unavailable: {exc.message}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    router = store.read_router
    if router is not None:  # read replicas: reported, never "not ready" (reads fall back to the primary)
        await run_in_threadpool(router.check)
        for r in router.replicas:
            checks[f"replica {r.name}"] = (f"ok (lag {r.lag_s:.3f} s, {r.lag_bytes} bytes)" if r.healthy
                                          else f"unavailable: {r.error}")
    mqtt = getattr(getattr(request.app.state, "live", None), "mqtt", None)
    if mqtt is not None:  # this worker consumes MQTT (live layers): it is ready when connected
        checks["mqtt"] = "ok" if mqtt.connected.is_set() else "disconnected"
        if checks["mqtt"] != "ok":
            return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    warm = getattr(request.app.state, "first_view_warm", None)
    if warm is not None:  # reported, never "not ready": until it is done, tiles render on request
        checks["first view tiles"] = warm.status()
    return JSONResponse({"status": "ok", "checks": checks, "backend": store.dialect.name})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(store: StoreDep) -> Response:
    if store.read_router is not None:  # fresh replica lag (a check at most every TWIN_REPLICA_CHECK_S)
        await run_in_threadpool(store.read_router.check)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def register(app: FastAPI) -> None:
    """With read replicas: route each request's reads (gis_api/replicas.py) and export their lag."""
    read_router = app.state.store.read_router
    if read_router is not None:
        app.add_middleware(ReplicaRouting, router=read_router)
        REPLICAS.routers.add(read_router)
