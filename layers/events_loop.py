"""The closed loop of an event (000 App. B; 001 App. B): reported → verified → dispatched → handled → closed.

The legal steps are data (:data:`STEPS`); :func:`transition` accepts one step at a time, in one
transaction that both moves ``events.status`` and appends the step to ``event_transitions``. The
status update is conditional on the status it was read as, so of two concurrent requests for the
same event only one succeeds and the other gets :class:`IllegalTransition` — the history is
exactly the accepted steps, in order.

Besides the main path two steps are allowed because case handling needs them, each only with a
note saying why: ``reported → closed`` (verification finds no case: 不予立案) and
``handled → dispatched`` (the check finds the work not done: 返工).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import shapely
from geoalchemy2.shape import from_shape
from shapely.geometry import Point, mapping
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from layers.unit_grids import unit_grid_at
from twin.errors import Conflict, FeatureNotFound, InvalidParameter, Unprocessable
from twin.schema import SRID, Event, EventTransition
from twin.store import SpatialStore

STATUSES = ("reported", "verified", "dispatched", "handled", "closed")


@dataclass(frozen=True)
class Step:
    """A legal step; ``note_required`` when the step turns back or ends a case early."""

    note_required: bool = False


STEPS: dict[str, dict[str, Step]] = {
    "reported": {"verified": Step(), "closed": Step(note_required=True)},
    "verified": {"dispatched": Step()},
    "dispatched": {"handled": Step()},
    "handled": {"closed": Step(), "dispatched": Step(note_required=True)},
    "closed": {},
}
MAX_BY = 64
MAX_NOTE = 2000


class IllegalTransition(Conflict):
    """The requested step is not allowed from the event's current status."""

    code = "illegal_transition"


class NoteRequired(Unprocessable):
    code = "note_required"


def allowed_next(status: str) -> list[str]:
    return list(STEPS.get(status, {}))


def check_step(current: str, to: str, note: str | None) -> None:
    """Raise unless ``current → to`` is a legal step (with its note when one is required)."""
    if to not in STATUSES:
        raise InvalidParameter(f"unknown status {to!r}", detail={"statuses": list(STATUSES)})
    step = STEPS.get(current, {}).get(to)
    if step is None:
        raise IllegalTransition(
            f"an event that is {current!r} cannot become {to!r}",
            detail={"from": current, "to": to, "allowed": allowed_next(current)},
        )
    if step.note_required and not (note and note.strip()):
        raise NoteRequired(f"the step {current} → {to} needs a note saying why",
                           detail={"from": current, "to": to})


def _check_actor(by: str, note: str | None) -> None:
    if not by or not by.strip() or len(by) > MAX_BY:
        raise InvalidParameter(f"'by' must name who takes the step (1–{MAX_BY} characters)")
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidParameter(f"note is longer than {MAX_NOTE} characters")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def transition(store: SpatialStore, event_id: int, to: str, by: str, note: str | None = None,
               at: dt.datetime | None = None) -> dict[str, Any]:
    """Take one step of the loop; returns the recorded step. One transaction, nothing half-written."""
    _check_actor(by, note)
    at = at or now()
    ev = Event.__table__
    with store.engine.begin() as conn:
        current = conn.execute(select(ev.c.status).where(ev.c.id == event_id)).scalar()
        if current is None:
            raise FeatureNotFound(f"no event {event_id}")
        check_step(current, to, note)
        values: dict[str, Any] = {"status": to, "updated_at": at}
        if to == "closed":
            values["closed_at"] = at
        moved = conn.execute(update(ev).where(ev.c.id == event_id, ev.c.status == current).values(**values))
        if moved.rowcount != 1:  # another request moved it first
            raise IllegalTransition(f"event {event_id} changed while this step was being taken; reload it",
                                    detail={"from": current, "to": to})
        step = _record(conn, event_id, current, to, by, note, at)
    return step


def _record(conn: Connection, event_id: int, frm: str | None, to: str, by: str, note: str | None,
            at: dt.datetime) -> dict[str, Any]:
    tr = EventTransition.__table__
    res = conn.execute(insert(tr).values(event_id=event_id, from_status=frm, to_status=to, by=by.strip(),
                                         note=note, at=at))
    return {"id": res.inserted_primary_key[0], "event_id": event_id, "from": frm, "to": to, "by": by.strip(),
            "note": note, "at": at.astimezone(dt.UTC).isoformat()}


def history(store: SpatialStore, event_id: int) -> dict[str, Any]:
    """The event's status, its steps in the order they were taken, and the steps allowed next."""
    ev, tr = Event.__table__, EventTransition.__table__
    with store.engine.connect() as conn:
        status = conn.execute(select(ev.c.status).where(ev.c.id == event_id)).scalar()
        if status is None:
            raise FeatureNotFound(f"no event {event_id}")
        rows = conn.execute(select(tr).where(tr.c.event_id == event_id).order_by(tr.c.id)).mappings().all()
    steps = [{"id": r["id"], "from": r["from_status"], "to": r["to_status"], "by": r["by"], "note": r["note"],
              "at": _utc(r["at"]).isoformat()} for r in rows]
    return {"event_id": event_id, "status": status, "allowed_next": allowed_next(status), "history": steps}


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def open_event(conn: Connection, store: SpatialStore, *, lon: float, lat: float, source: str, category: str,
               title: str, by: str, description: str | None = None, device_code: str | None = None,
               severity: str | None = None, at: dt.datetime | None = None) -> int:
    """Insert a ``reported`` event at ``(lon, lat)`` in its unit grid, with the report as its first step.

    Runs inside the caller's transaction (``conn``), so an alarm that fails half-way leaves nothing.
    """
    at = at or now()
    code = f"SJ{at.astimezone(dt.UTC):%Y%m%d%H%M%S}{secrets.token_hex(3).upper()}"
    grid = unit_grid_at(conn, store.dialect, lon, lat)
    res = conn.execute(insert(Event.__table__).values(
        code=code, source=source, category=category, title=title, description=description, status="reported",
        grid_code=grid, device_code=device_code, reported_at=at, severity=severity, updated_at=at,
        geom=from_shape(Point(lon, lat), srid=SRID),
    ))
    event_id = int(res.inserted_primary_key[0])
    _record(conn, event_id, None, "reported", by, None, at)
    return event_id


def event_feature(store: SpatialStore, event_id: int, conn: Connection | None = None) -> dict[str, Any]:
    """The event as a plain-JSON GeoJSON Feature (ISO dates), as streams and change messages carry it."""
    if conn is not None:
        page = _get(conn, store, event_id)
    else:
        with store.engine.connect() as own:
            page = _get(own, store, event_id)
    fid, props, geom = page
    return {"type": "Feature", "id": fid, "geometry": mapping(geom),
            "properties": {k: (_utc(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in props.items()}}


def _get(conn: Connection, store: SpatialStore, event_id: int) -> tuple[int, dict[str, Any], Any]:
    tbl = Event.__table__
    cols = [c for c in tbl.columns if c.name not in ("id", "geom")]
    row = conn.execute(select(tbl.c.id, *cols, store.dialect.geometry_wkb(tbl))  # type: ignore[arg-type]
                       .where(tbl.c.id == event_id)).first()
    if row is None:
        raise FeatureNotFound(f"no event {event_id}")
    props = {c.name: v for c, v in zip(cols, row[1:-1], strict=True)}
    geom = shapely.from_wkb(bytes(row[-1]))
    return int(row[0]), props, geom


__all__ = ["STATUSES", "STEPS", "IllegalTransition", "NoteRequired", "allowed_next", "check_step",
           "event_feature", "history", "open_event", "transition"]
