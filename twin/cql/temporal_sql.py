"""Time in compiled filters: DATE as a whole (UTC) day, and the T_ functions on instants.

CQL2 instants have a granularity: ``DATE('2025-11-22')`` is the whole day, not its first
microsecond. Against a timestamp property a date is therefore the half-open span
``[00:00, next day 00:00)`` UTC — ``reported_at = DATE(d)`` and ``T_INTERSECTS(reported_at,
DATE(d))`` find everything reported that day, ``reported_at > DATE(d)`` starts the next
day, and an ``INTERVAL`` of dates runs from the start of its first day to the end of its
last. Against a date property a date is just that date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, not_, or_

from twin.cql.tree import Interval, Op, Prop, _instant, describe

if TYPE_CHECKING:
    from twin.cql.sql import _Compiler, _Typed

TIMESTAMP, DATE = "timestamp", "date"
_LAST_INSTANT = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass
class Span:
    """An instant literal against a column: ``[start, end)`` if ``open_end`` else ``[start, end]``."""

    start: Any
    end: Any
    open_end: bool


def span(c: _Compiler, col: _Typed, v: Any, where: str) -> Span:
    """The literal instant ``v`` as SQL bounds comparable with ``col`` (a date or timestamp)."""
    if col.kind == TIMESTAMP and not isinstance(v, (Prop, Op)):
        day = v
        if isinstance(day, str):
            try:
                day = _instant(day)
            except ValueError as exc:
                raise c.fail(f"{where}: {exc}") from None
        if isinstance(day, dt.date) and not isinstance(day, dt.datetime):
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            if day == dt.date.max:
                return Span(c.coerce(start, col, where).sql, c.coerce(_LAST_INSTANT, col, where).sql, False)
            end = start + dt.timedelta(days=1)
            return Span(c.coerce(start, col, where).sql, c.coerce(end, col, where).sql, True)
    v_sql = c.coerce(v, col, where).sql
    return Span(v_sql, v_sql, False)


def compare_instant(op: str, x: Any, s: Span) -> Any:
    """``x op s`` for the comparison operators, where ``s`` may be a whole day."""
    if not s.open_end:
        return {"=": x == s.start, "<>": x != s.start, "<": x < s.start, "<=": x <= s.start,
                ">": x > s.start, ">=": x >= s.start}[op]
    return {"=": and_(x >= s.start, x < s.end), "<>": or_(x < s.start, x >= s.end), "<": x < s.start,
            "<=": x < s.end, ">": x >= s.end, ">=": x >= s.start}[op]


def temporal(c: _Compiler, op: str, a: Any, b: Any) -> Any:
    """``T_BEFORE T_AFTER T_EQUALS T_DURING T_INTERSECTS T_DISJOINT`` of a date/timestamp property."""
    if isinstance(b, Prop) and not isinstance(a, Prop):
        a, b = b, a
        op = {"t_before": "t_after", "t_after": "t_before"}.get(op, op)
    col = c.scalar(a)
    if col.kind not in (TIMESTAMP, DATE):
        raise c.fail(f"{op.upper()} needs a date or timestamp property, not {describe(a)}")
    x = col.sql
    where = op.upper()
    if isinstance(b, Interval):
        lo = span(c, col, b.start, where) if b.start is not None else None
        hi = span(c, col, b.end, where) if b.end is not None else None
        if op == "t_during":
            conds = ([x > lo.start] if lo else []) + ([x < hi.end] if hi else [])
        elif op in ("t_intersects", "t_disjoint"):
            conds = ([x >= lo.start] if lo else []) + ([_up_to(x, hi)] if hi else [])
        elif op == "t_before" and lo is not None:
            conds = [x < lo.start]
        elif op == "t_after" and hi is not None:
            conds = [_past(x, hi)]
        else:
            raise c.fail(f"{op.upper()} of an instant and this interval is not supported")
        cond = and_(*conds) if conds else x.is_not(None)
        return not_(cond) if op == "t_disjoint" else cond
    if op == "t_during":
        raise c.fail("T_DURING needs an INTERVAL")
    if isinstance(b, (Prop, Op)):
        v = c.coerce(b, col, where).sql
        return {"t_before": x < v, "t_after": x > v, "t_equals": x == v,
                "t_intersects": x == v, "t_disjoint": x != v}[op]
    s = span(c, col, b, where)
    same = and_(x >= s.start, _up_to(x, s))
    return {"t_before": x < s.start, "t_after": _past(x, s), "t_equals": same, "t_intersects": same,
            "t_disjoint": not_(same)}[op]


def _up_to(x: Any, s: Span) -> Any:
    return x < s.end if s.open_end else x <= s.end


def _past(x: Any, s: Span) -> Any:
    return x >= s.end if s.open_end else x > s.end


__all__ = ["Span", "compare_instant", "span", "temporal"]
