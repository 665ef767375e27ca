"""Events: report one, take closed-loop steps, read an event's history. Thin over :mod:`layers.events_loop`.

Writes need ``Authorization: Bearer <TWIN_ADMIN_TOKEN>`` (as uploads do) until roles exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import StoreDep
from gis_api.security import layer_permission
from layers import events_loop
from twin import geojson

router = APIRouter(tags=["Events"])

Status = Literal["reported", "verified", "dispatched", "handled", "closed"]
EventId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Event feature id")]


class TransitionRequest(BaseModel):
    """One step of the loop: the status to move to, who takes the step and why."""

    to: Status = Field(description="Target status; legal steps: reported→verified, verified→dispatched, "
                       "dispatched→handled, handled→closed, and with a note reported→closed (no case) or "
                       "handled→dispatched (rework)")
    by: str = Field(min_length=1, max_length=events_loop.MAX_BY, description="Who takes the step (badge, role)")
    note: str | None = Field(default=None, max_length=events_loop.MAX_NOTE)

    model_config = {"json_schema_extra": {"examples": [{"to": "verified", "by": "grid-worker-07",
                                                        "note": "on site, confirmed"}]}}


class ReportRequest(BaseModel):
    """A new event at a location (field staff, hotline); it is attributed to its unit grid."""

    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    category: str = Field(min_length=1, max_length=64, examples=["garbage"])
    title: str = Field(min_length=1, max_length=256)
    source: Literal["hotline_12345", "city_management", "grid", "iot_alarm", "public_opinion"] = "grid"
    description: str | None = Field(default=None, max_length=4000)
    by: str = Field(min_length=1, max_length=events_loop.MAX_BY)


def _json(obj: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(geojson.dumps(obj), status_code=status, media_type=media_type)


@router.post("/events", summary="Report an event at a location", status_code=201,
             dependencies=[Depends(layer_permission("events", "write"))],
             responses={201: {"content": {"application/geo+json": {}}, "description": "The new event"}})
async def report_event(store: StoreDep, body: ReportRequest) -> Response:
    def run() -> dict[str, Any]:
        with store.engine.begin() as conn:
            eid = events_loop.open_event(conn, store, lon=body.lon, lat=body.lat, source=body.source,
                                         category=body.category, title=body.title, by=body.by,
                                         description=body.description)
        return events_loop.event_feature(store, eid)

    return _json(await run_in_threadpool(run), 201, "application/geo+json")


@router.post(
    "/events/{event_id}/transitions",
    summary="Take one step of an event's closed loop",
    description="Moves the event to `to` if that is a legal step from its current status and records who "
    "took it. 409 `illegal_transition` for a step the loop does not allow (the body lists the allowed ones), "
    "422 `note_required` for a turn-back or early close without a note.",
    dependencies=[Depends(layer_permission("events", "write"))],
    status_code=201,
)
async def take_step(store: StoreDep, event_id: EventId, body: TransitionRequest) -> Response:
    step = await run_in_threadpool(events_loop.transition, store, event_id, body.to, body.by, body.note)
    return _json(step, 201)


@router.get("/events/{event_id}/history", dependencies=[Depends(layer_permission("events", "read"))],
            summary="An event's closed-loop steps in order, its status and the steps allowed next")
async def event_history(store: StoreDep, event_id: EventId) -> Response:
    return _json(await run_in_threadpool(events_loop.history, store, event_id))


def register(app: FastAPI) -> None:
    app.include_router(router)
