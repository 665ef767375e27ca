"""Closed-loop histories for the sample events, so ``/events/{id}/history`` shows the steps that led
each event to its status (deterministic: times are fixed fractions of the time it took)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from twin.schema import Event, EventTransition

PATH = ("reported", "verified", "dispatched", "handled", "closed")
#: share of the report-to-close time at which each later step happened
SHARE = {"verified": 0.1, "dispatched": 0.2, "handled": 0.8, "closed": 1.0}
REPORTER = {"hotline_12345": "12345-hotline", "city_management": "city-inspector", "grid": "grid-worker",
            "iot_alarm": "alarm-engine", "public_opinion": "opinion-monitor"}
ACTOR = {"verified": "grid-worker", "dispatched": "command-centre", "handled": "disposal-unit",
         "closed": "command-centre"}
NOTE = {"verified": "现场核实属实", "dispatched": "派遣至责任单位", "handled": "已处置完毕", "closed": "核查通过，结案"}


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def write_event_history(conn: Connection, as_of: dt.datetime, codes: list[str] | None = None) -> int:
    """Insert the steps from ``reported`` up to each event's status (of the events ``codes``, default
    all); returns the rows written."""
    ev = Event.__table__
    q = select(ev.c.id, ev.c.status, ev.c.source, ev.c.grid_code, ev.c.reported_at, ev.c.closed_at)
    if codes is not None:
        q = q.where(ev.c.code.in_(codes))
    rows = conn.execute(q.order_by(ev.c.id)).all()
    steps: list[dict] = []
    for r in rows:
        start = _utc(r.reported_at)
        end = _utc(r.closed_at) if r.closed_at else min(as_of, start + dt.timedelta(hours=48))
        span = max(end - start, dt.timedelta(minutes=5))
        reached = PATH[: PATH.index(r.status) + 1] if r.status in PATH else ("reported",)
        grid = f"-{r.grid_code[-3:]}" if r.grid_code else ""
        prev = None
        for status in reached:
            at = start if status == "reported" else start + span * SHARE[status] * (
                1.0 if r.status == "closed" else 0.9)
            by = REPORTER.get(r.source, "reporter") if status == "reported" else ACTOR[status]
            if by == "grid-worker":
                by += grid
            steps.append({"event_id": r.id, "from_status": prev, "to_status": status, "by": by,
                          "note": NOTE.get(status), "at": at})
            prev = status
    if steps:
        conn.execute(insert(EventTransition.__table__), steps)
    return len(steps)


__all__ = ["write_event_history"]
