"""The audit log: who did what to what, when, from where, and how it ended.

Rows are only ever inserted (database triggers refuse UPDATE and DELETE, migration 0004).
Recorded: every write, login success and failure, denied request, exchange call and admin
action. The CSV export neutralises cells that a spreadsheet would run as a formula
(CWE-1236): a cell starting with ``= + - @`` or a tab/CR gets a leading apostrophe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import cast

from sqlalchemy import Table, func, insert, select

from twin.schema import AuditRecord
from twin.store import SpatialStore

_T = cast(Table, AuditRecord.__table__)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def record(store: SpatialStore, principal: str, action: str, outcome: str, *, target: str | None = None,
           client: str | None = None, detail: dict | None = None) -> None:
    """Append one record (its own transaction: an audit entry survives the request failing)."""
    with store.engine.begin() as conn:
        conn.execute(insert(_T).values(
            at=dt.datetime.now(dt.UTC), principal=principal[:96], action=action[:64],
            target=None if target is None else target[:256], outcome=outcome[:16],
            client=None if client is None else client[:64], detail=detail))


def query(store: SpatialStore, *, principal: str | None = None, action: str | None = None,
          outcome: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
          limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
    """(number matched, records newest first) with optional filters."""
    cond = []
    if principal:
        cond.append(_T.c.principal == principal)
    if action:
        cond.append(_T.c.action == action)
    if outcome:
        cond.append(_T.c.outcome == outcome)
    if since:
        cond.append(_T.c.at >= since)
    if until:
        cond.append(_T.c.at < until)
    with store.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(_T).where(*cond)).scalar_one()
        rows = conn.execute(select(_T).where(*cond).order_by(_T.c.id.desc()).limit(limit).offset(offset)).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        at = d["at"]
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        d["at"] = at.isoformat()
        out.append(d)
    return total, out


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_csv(records: list[dict]) -> Iterator[str]:
    """CSV lines of ``records`` (header first), safe to open in a spreadsheet."""
    cols = ["id", "at", "principal", "action", "target", "outcome", "client", "detail"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    yield buf.getvalue()
    for r in records:
        buf.seek(0)
        buf.truncate()
        writer.writerow([_cell(r.get(c)) for c in cols])
        yield buf.getvalue()


__all__ = ["export_csv", "query", "record"]
