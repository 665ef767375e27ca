"""Live layers over HTTP: state, history, authenticated ingest, WebSocket and SSE streams.

Thin: the work is in :mod:`layers` (``LiveService``); this module parses, authorises
and serialises. Protocol and examples: ``docs/live.md``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import SettingsDep
from gis_api.responses import JSONResponse
from gis_api.security import authorize, stream_layers
from layers.history import aggregate, history
from layers.hub import BBox, Subscription
from layers.push import Pusher
from layers.readings import ReadingRejected
from layers.registry import LIVE_LAYERS
from layers.service import REJECTED, LiveService
from twin.errors import FeatureNotFound, InvalidParameter, LayerNotFound, TwinError
from twin.params import check_lonlat_bbox, parse_bbox, parse_datetime_interval

router = APIRouter(tags=["Live layers"])

#: layers a client can subscribe to: those taking readings and those other live modules publish
STREAM_LAYERS = (*LIVE_LAYERS, "events")


class LiveReading(BaseModel):
    """One reading (documentation of the request body; validation is in ``layers.readings``)."""

    id: str = Field(description="The device's code (as in the devices layer)")
    ts: str | None = Field(None, description="RFC 3339 time with offset; default: arrival time")
    values: dict[str, float | bool] = Field(default_factory=dict, description="metric → number; {} = heartbeat")
    lon: float | None = Field(None, description="CRS84 longitude, only for things that move")
    lat: float | None = None


def get_live(request: Request) -> LiveService:
    live: LiveService = request.app.state.live
    live.ensure_started()
    return live


LiveDep = Annotated[LiveService, Depends(get_live)]


def parse_layers(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in STREAM_LAYERS]
    if bad:
        raise LayerNotFound(f"no live layer {bad[0]!r}; live layers: {list(STREAM_LAYERS)}")
    return names


def parse_live_bbox(value: Any) -> BBox | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        if len(value) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise InvalidParameter("bbox is [minLon, minLat, maxLon, maxLat]")
        box = (float(value[0]), float(value[1]), float(value[2]), float(value[3]))
    elif isinstance(value, str):
        box = parse_bbox(value)
    else:
        raise InvalidParameter("bbox is minLon,minLat,maxLon,maxLat")
    check_lonlat_bbox(box)
    return box


INTERVAL = re.compile(r"^(?:(\d+(?:\.\d+)?)(s|m|h|d)?|P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?)$")


def parse_interval(value: str) -> float:
    """``900``, ``15m``, ``1h``, ``1d`` or an ISO 8601 duration (``PT15M``) → seconds (≥ 1)."""
    m = INTERVAL.match(value.strip())
    if not m or value.strip() in ("P", "PT"):
        raise InvalidParameter(f"interval {value[:40]!r}: use seconds, 15m, 1h, 1d or PT15M")
    if m.group(1) is not None:
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]
    else:
        d, h, mi, s = (int(g) if g else 0 for g in m.groups()[2:])
        seconds = d * 86400 + h * 3600 + mi * 60 + s
    if seconds < 1:
        raise InvalidParameter("interval must be at least 1 second")
    return seconds


def frame(sub: Subscription, batch: list[dict[str, Any]]) -> bytes:
    """A ``changes`` message, each change serialised once for all the loop's subscribers."""
    if sub.pacer is not None:
        return sub.pacer.frame(batch)
    return orjson.dumps({"type": "changes", "changes": batch})


def _collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features),
            "timeStamp": dt.datetime.now(dt.UTC).isoformat()}


@router.get("/live/sse", summary="Server-Sent Events stream of live feature changes",
            description="Events: `hello` (the stream id), `snapshot` (every current feature in the filter, as "
            "`add` changes; replaces what the client holds), `changes` (a batch of add/update/remove). Move the "
            "filter without reconnecting with `POST /live/sse/{stream}/subscribe`.",
            response_class=StreamingResponse)
async def live_sse(
    request: Request, live: LiveDep,
    layers: Annotated[str | None, Query(description="comma-separated live layers (default all)")] = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84)")] = None,
) -> StreamingResponse:
    names, box = stream_layers(request, parse_layers(layers), STREAM_LAYERS), parse_live_bbox(bbox)
    sub = live.hub.subscribe(names, box, asyncio.get_running_loop())
    stream_id = uuid.uuid4().hex
    streams: dict[str, tuple[Subscription, asyncio.Event]] = request.app.state.live_sse_streams
    resnap = asyncio.Event()
    streams[stream_id] = (sub, resnap)

    def event(name: str, data: Any) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    async def body():  # noqa: ANN202
        try:
            yield event("hello", {"stream": stream_id})
            yield event("snapshot", {"layers": names, "bbox": box, "changes": live.snapshot(names, box)})
            while not sub.closed:
                if resnap.is_set():
                    resnap.clear()
                    yield event("snapshot", {"layers": sub.layers and sorted(sub.layers), "bbox": sub.bbox,
                                             "changes": live.snapshot(sub.layers, sub.bbox)})
                batch = await sub.next_batch(timeout=15)  # paced: one frame per tick (layers.hub.Pacer)
                if batch:
                    yield b"event: changes\ndata: " + frame(sub, batch) + b"\n\n"
                elif not resnap.is_set():
                    yield b": keep-alive\n\n"
        finally:
            live.hub.unsubscribe(sub)
            streams.pop(stream_id, None)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class SubscribeBody(BaseModel):
    layers: list[str] | None = Field(None, description="live layers (default all)")
    bbox: list[float] | None = Field(None, description="[minLon, minLat, maxLon, maxLat]")


@router.post("/live/sse/{stream}/subscribe", summary="Move an SSE stream to other layers or another bbox",
             description="A new `snapshot` event follows on the stream.")
async def sse_subscribe(request: Request, stream: str, body: SubscribeBody) -> JSONResponse:
    found = request.app.state.live_sse_streams.get(stream)
    if found is None:
        raise FeatureNotFound(f"no open stream {stream[:40]!r} in this worker")
    sub, resnap = found
    names = stream_layers(request, parse_layers(",".join(body.layers)) if body.layers else None, STREAM_LAYERS)
    sub.reset(names, parse_live_bbox(body.bbox))
    resnap.set()
    sub.wake()
    return JSONResponse({"stream": stream, "layers": names, "bbox": body.bbox})


@router.post(
    "/live/{layer}/features",
    summary="Ingest one reading or a list of readings (authenticated)",
    description="Body: one reading object with `id` (the device code) or a list of them, as the MQTT payload. "
    "Needs a bearer token whose roles may write the layer (or TWIN_ADMIN_TOKEN). All or nothing: if any reading is refused, none is "
    "stored and the answer lists every refused one in `detail`.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [LiveReading.model_json_schema(), {"type": "array", "items": LiveReading.model_json_schema()}]
    }}}}},
)
async def ingest(request: Request, layer: str, live: LiveDep, settings: SettingsDep) -> JSONResponse:
    live.check_layer(layer)
    authorize(request, layer, "write")
    raw = await request.body()
    if len(raw) > settings.live_max_batch * 2048:
        raise ReadingRejected(f"body of {len(raw)} bytes is too large for {settings.live_max_batch} readings",
                              code="limit_exceeded")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        REJECTED.labels("malformed_json", "http").inc()
        raise ReadingRejected(f"body is not JSON: {exc}", code="malformed_json") from None
    changes = await run_in_threadpool(live.ingest_http, layer, body)
    accepted = [c for c in changes if c["layer"] == layer]
    return JSONResponse({"accepted": len(accepted), "features": [c["feature"] for c in accepted],
                         "events": [c for c in changes if c["layer"] != layer]}, status_code=202)


@router.get("/live/{layer}", summary="Latest state of a live layer as a GeoJSON FeatureCollection",
            description="Every device (or camera, event) with its last reading, `status` (online/offline from "
            "heartbeats), `last_seen` and the metrics over their thresholds (`breaches`).",
            responses={200: {"content": {"application/geo+json": {}}}})
async def live_state(
    request: Request, layer: str, live: LiveDep,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84)")] = None,
) -> JSONResponse:
    names = parse_layers(layer) or []
    for name in names:
        authorize(request, name, "read")
    feats = [c["feature"] for c in live.snapshot(names, parse_live_bbox(bbox))]
    return JSONResponse(_collection(feats), media_type="application/geo+json")


@router.get("/live/{layer}/{fid}/history", summary="A device's readings over an interval, or aggregates",
            description="`datetime` is an RFC 3339 instant or interval (`a/b`, `../b`, `a/..`). With `interval` "
            "(e.g. `15m`, `1h`, `PT1H`) the answer holds count/min/max/mean per metric and bucket instead of rows.")
async def live_history(
    request: Request, layer: str, fid: str, live: LiveDep, settings: SettingsDep,
    datetime: Annotated[str | None, Query(description="RFC 3339 interval a/b")] = None,
    interval: Annotated[str | None, Query(description="aggregate per interval: 900, 15m, 1h, 1d, PT15M")] = None,
) -> JSONResponse:
    live.check_layer(layer)
    authorize(request, layer, "read")
    if live.registry.get(layer, fid) is None:
        raise FeatureNotFound(f"no {layer} thing with code {fid[:80]!r}")
    start, end = parse_datetime_interval(datetime) if datetime else (None, None)
    step = parse_interval(interval) if interval else None
    rows = await run_in_threadpool(history, live.store, layer, fid, start, end, settings.live_max_history_rows)
    out: dict[str, Any] = {"layer": layer, "id": fid, "datetime": datetime}
    if step is not None:
        out["interval_s"] = step
        out["aggregates"] = aggregate(rows, step, start)
    else:
        out["numberReturned"] = len(rows)
        out["readings"] = [{"ts": r.ts.isoformat(), "values": r.values, "lon": r.lon, "lat": r.lat} for r in rows]
    return JSONResponse(out)


@router.websocket("/live/ws")
async def live_ws(ws: WebSocket, layers: str | None = None, bbox: str | None = None) -> None:
    """WebSocket stream: ``snapshot`` first, then ``changes``; the client moves its filter with
    ``{"type": "subscribe", "layers": [...], "bbox": [...]}`` (answered by a new snapshot)."""
    live: LiveService = ws.app.state.live
    await ws.accept()
    try:
        names, box = stream_layers(ws, parse_layers(layers), STREAM_LAYERS), parse_live_bbox(bbox)  # type: ignore[arg-type]
    except TwinError as exc:
        await ws.send_text(orjson.dumps({"type": "error", "code": exc.code, "message": exc.message}).decode())
        await ws.close(code=1008)
        return
    await run_in_threadpool(live.ensure_started)
    sub = live.hub.subscribe(names, box, asyncio.get_running_loop())
    # frames go out from the pacer's tick (layers.push: no task per client and tick); snapshots and errors
    # through pusher.send, in order with them
    pusher = Pusher(sub, ws.send_text, partial(frame, sub))

    def text(msg: dict[str, Any]) -> str:
        return orjson.dumps(msg).decode()

    async def listen() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            try:
                msg = orjson.loads(message.get("text") or message.get("bytes") or b"")
                if not isinstance(msg, dict) or msg.get("type") != "subscribe":
                    raise InvalidParameter('send {"type": "subscribe", "layers": [...], "bbox": [...]}')
                lay = msg.get("layers")
                if lay is not None and not (isinstance(lay, list) and all(isinstance(x, str) for x in lay)):
                    raise InvalidParameter("layers is a list of layer ids")
                new_names = stream_layers(ws, parse_layers(",".join(lay)) if lay else None,  # type: ignore[arg-type]
                                          STREAM_LAYERS)
                new_box = parse_live_bbox(msg.get("bbox"))
            except (orjson.JSONDecodeError, TwinError) as exc:
                code = getattr(exc, "code", "invalid_parameter")
                err = {"type": "error", "code": code if isinstance(code, str) else "invalid_parameter",
                       "message": getattr(exc, "message", "message is not JSON")}
                await pusher.send(lambda err=err: text(err))
                continue

            def moved(new_names: list[str] | None = new_names, new_box: BBox | None = new_box) -> str:
                sub.reset(new_names, new_box)  # no frame goes out between this and the snapshot
                return text({"type": "snapshot", "layers": new_names, "bbox": new_box,
                             "changes": live.snapshot(new_names, new_box)})

            await pusher.send(moved)

    async def ended() -> None:
        raise await pusher.failed  # a frame's send failed: the client is gone

    try:
        await pusher.send(lambda: text({"type": "snapshot", "layers": names, "bbox": box,
                                        "changes": live.snapshot(names, box)}))
        tasks = [asyncio.create_task(listen()), asyncio.create_task(ended())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            exc = t.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect):
                raise exc
    except WebSocketDisconnect:
        pass
    finally:
        pusher.close()
        live.hub.unsubscribe(sub)


def register(app: FastAPI) -> None:
    live = LiveService(app.state.store, app.state.settings)
    app.state.live = live
    app.state.live_sse_streams = {}
    app.state.startup = [*getattr(app.state, "startup", []), live.ensure_started]
    app.include_router(router)
