"""Events: report one, take closed-loop steps, read an event's history, attach and read photos. Thin
over :mod:`layers.events_loop` and :mod:`layers.event_photos`.

Writes need ``Authorization: Bearer <TWIN_ADMIN_TOKEN>`` (as uploads do) until roles exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Path, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep, StoreDep
from gis_api.errors import error_response
from gis_api.security import PrincipalDep, layer_permission
from layers import event_photos, events_loop
from twin import geojson

router = APIRouter(tags=["Events"])

Status = Literal["reported", "verified", "dispatched", "handled", "closed"]
EventId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Event feature id")]
PhotoId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Photo id")]


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


class Photo(BaseModel):
    """A photo of an event as stored: a cleaned JPEG (upright, at most 2048 px, no metadata)."""

    id: int
    event_id: int
    url: str = Field(description="Where the JPEG is served")
    content_type: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    created_by: str
    created_at: str


class PhotoList(BaseModel):
    event_id: int
    photos: list[Photo]


async def _read_capped(upload: UploadFile, cap: int) -> bytes | None:
    """The upload's bytes, or None as soon as it exceeds ``cap`` (the rest is not read into memory)."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 16):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/events/{event_id}/photos", status_code=201, response_model=Photo,
    dependencies=[Depends(layer_permission("events", "write"))],
    summary="Attach a photo to an event (multipart field `photo`: JPEG, PNG or WebP, at most 12 MB)",
    description="The picture is decoded whatever it claims to be, turned upright, scaled to at most 2048 px "
    "and stored as a JPEG without metadata (no GPS position leaves with it). 413 over 12 MB, 415 for what is "
    "not a readable JPEG/PNG/WebP, 400 over 50 megapixels or past 10 photos per event, 404 for an unknown event.",
    responses={413: {"description": "Too large"}, 415: {"description": "Not a photo"}},
)
async def add_photo(store: StoreDep, base: BaseUrlDep, who: PrincipalDep, event_id: EventId,
                    photo: Annotated[UploadFile, File(description="The picture (phone camera)")]) -> Response:
    raw = await _read_capped(photo, event_photos.MAX_UPLOAD_BYTES)
    if raw is None:
        return error_response(413, "payload_too_large",
                              f"a photo may have at most {event_photos.MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    by = who.subject.removeprefix("user:")[:128]
    meta = await run_in_threadpool(event_photos.add_photo, store, event_id, raw, by, base)
    return JSONResponse(meta, status_code=201)


@router.get("/events/{event_id}/photos", response_model=PhotoList,
            dependencies=[Depends(layer_permission("events", "read"))], summary="The photos of an event")
async def list_photos(store: StoreDep, base: BaseUrlDep, event_id: EventId) -> Response:
    photos = await run_in_threadpool(event_photos.list_photos, store, event_id, base)
    return JSONResponse({"event_id": event_id, "photos": photos})


@router.get("/events/{event_id}/photos/{photo_id}.jpg", dependencies=[Depends(layer_permission("events", "read"))],
            summary="One photo of an event (JPEG)", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG"}})
async def get_photo(store: StoreDep, event_id: EventId, photo_id: PhotoId) -> Response:
    data, ctype, sha = await run_in_threadpool(event_photos.photo_bytes, store, event_id, photo_id)
    # a photo never changes once stored: cache it for good (private: events may not be public)
    return Response(data, media_type=ctype, headers={"Cache-Control": "private, max-age=31536000, immutable",
                                                     "ETag": f'"{sha}"', "X-Content-Type-Options": "nosniff"})


def register(app: FastAPI) -> None:
    app.include_router(router)
