"""The parsed form of a CQL2 filter: operators, properties, literals (no SQLAlchemy)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import shapely

from twin.errors import InvalidParameter

LANGS = ("cql2-text", "cql2-json")
MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 60
MAX_OPERATORS = 500


@dataclass(frozen=True)
class CqlLimits:
    """Caps on one filter, so that no filter can exhaust the parser, the compiler or the database.

    ``max_depth`` bounds nesting (parentheses, ``NOT``, signs, function calls, and operator
    chains such as ``a + b + c`` that nest in SQL); it keeps every recursive step — the
    parsers, the SQL compiler, SQLAlchemy and the database's own expression parser — far
    from its stack limit. ``max_operators`` bounds the number of operators and functions
    (``a = 1 OR a = 2 OR …`` counts one per comparison): SQLite refuses expressions deeper
    than 1,000 and a flat ``OR`` chain is that deep there. Items of an ``IN`` list and
    coordinates do not count.
    """

    max_chars: int = MAX_FILTER_CHARS
    max_depth: int = MAX_DEPTH
    max_operators: int = MAX_OPERATORS

# --- the tree ----------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    name: str


@dataclass(frozen=True)
class Interval:
    start: dt.datetime | dt.date | None
    end: dt.datetime | dt.date | None


@dataclass(frozen=True, eq=False)
class Op:
    """An operator or function applied to ``args`` (names as in cql2-json, lower case)."""

    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class CqlFilter:
    """A parsed filter: the tree plus the text it came from (for error messages)."""

    tree: Any
    text: str
    lang: str


@dataclass(frozen=True)
class SortKey:
    name: str
    descending: bool = False


COMPARISONS = {"=", "<>", "<", "<=", ">", ">="}
ARITHMETIC = {"+", "-", "*", "/"}
SPATIAL = {"s_intersects", "s_within", "s_contains", "s_disjoint", "s_touches", "s_crosses",
           "s_overlaps", "s_equals"}
TEMPORAL = {"t_before", "t_after", "t_equals", "t_during", "t_intersects", "t_disjoint"}
UNITS_M = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
           "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0, "kilometre": 1000.0,
           "kilometres": 1000.0}



class _Syntax(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos



def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v: int | float, where: str) -> int | float:
    """``v`` if it is a finite number a double can hold, else a :class:`_Syntax` error.

    Integers of any size are kept exact (the SQL compiler decides how to compare them with
    a column's range); a number beyond the double range, ``inf`` or ``nan`` is refused, in
    cql2-text and cql2-json alike.
    """
    try:
        ok = math.isfinite(float(v))
    except OverflowError:
        ok = False
    if not ok:
        raise _Syntax(f"number {where} is out of range (at most ±1.8e308, finite)", 0)
    return v


def check_shape(tree: Any, limits: CqlLimits) -> None:
    """Refuse a parsed tree nested deeper than ``limits.max_depth``, with too many operators,
    or with a string no database can hold (NUL).

    Iterative (no recursion of its own), and run on the tree from either parser, so every
    later recursive walk is bounded.
    """
    stack: list[tuple[Any, int]] = [(tree, 1)]
    operators = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Op):
            operators += 1
            if depth > limits.max_depth:
                raise InvalidParameter(
                    f"filter: expression nested deeper than {limits.max_depth} levels "
                    "(parentheses, NOT, signs, functions and chains of + - * / each add one)",
                    detail={"max_depth": limits.max_depth})
            if operators > limits.max_operators:
                raise InvalidParameter(
                    f"filter: more than {limits.max_operators} operators and functions; "
                    "use IN (…) for long lists of values",
                    detail={"max_operators": limits.max_operators})
            stack.extend((a, depth + 1) for a in node.args)
        elif isinstance(node, tuple):
            stack.extend((a, depth) for a in node)
        elif isinstance(node, str) and "\x00" in node:  # PostgreSQL text cannot hold NUL
            raise InvalidParameter("filter: a string contains the NUL character (U+0000)")


def _bbox(args: list[Any]) -> Any:
    if len(args) == 6:
        args = [args[0], args[1], args[3], args[4]]
    x0, y0, x1, y1 = (float(a) for a in args)
    if x0 > x1 or y0 > y1:
        raise _Syntax("BBOX corners must be minx, miny, maxx, maxy (minx <= maxx, miny <= maxy)", 0)
    return shapely.box(x0, y0, x1, y1)


def _timestamp(s: str) -> dt.datetime:
    try:
        v = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{s!r} is not an RFC 3339 timestamp") from None
    if "T" not in s.upper() and " " not in s:
        raise ValueError(f"{s!r} is not an RFC 3339 timestamp (use DATE for dates)")
    try:  # held in UTC from here on; a zone offset can push year 1 or 9999 out of range
        return v.astimezone(dt.UTC) if v.tzinfo else v.replace(tzinfo=dt.UTC)
    except OverflowError:
        raise ValueError(f"{s!r} is out of the range of timestamps (years 1 to 9999 in UTC)") from None


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{s!r} is not a date (YYYY-MM-DD)") from None


def _instant(v: Any) -> dt.datetime | dt.date | None:
    if v is None or v == "..":
        return None
    if isinstance(v, (dt.datetime, dt.date)):
        return v
    if isinstance(v, str):
        return _timestamp(v) if ("T" in v.upper() or " " in v) else _date(v)
    raise TypeError(f"{v!r} is not an instant")



def describe(v: Any) -> str:
    """A literal or node as a user would name it in an error message."""
    if isinstance(v, Prop):
        return f"property {v.name!r}"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        r = repr(v)
        return f"number {r if len(r) <= 40 else r[:37] + '...'}"
    if isinstance(v, str):
        return f"string {v!r}"
    if isinstance(v, dt.datetime):
        return f"timestamp {v.isoformat()}"
    if isinstance(v, dt.date):
        return f"date {v.isoformat()}"
    if isinstance(v, shapely.Geometry):
        return f"{v.geom_type} geometry"
    if isinstance(v, Interval):
        return "interval"
    if isinstance(v, Op):
        return f"{v.op.upper()}(...)"
    return repr(v)
