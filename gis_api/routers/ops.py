"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from gis_api.deps import StoreDep
from gis_api.responses import JSONResponse
from twin.errors import StoreUnavailable

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers (and the MQTT broker, where this worker ingests)")
async def readyz(store: StoreDep, request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(store.ping)
        checks["database"] = "ok"
    except StoreUnavailable as exc:
        checks["database"] = f"unavailable: {exc.message}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    mqtt = getattr(getattr(request.app.state, "live", None), "mqtt", None)
    if mqtt is not None:  # this worker consumes MQTT (live layers): it is ready when connected
        checks["mqtt"] = "ok" if mqtt.connected.is_set() else "disconnected"
        if checks["mqtt"] != "ok":
            return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks, "backend": store.dialect.name})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
