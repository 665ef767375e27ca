"""Compiling a parsed filter and ``sortby`` against one layer's table into SQLAlchemy.

Only queryable columns, with matching types; every value a bound parameter. Backend
differences are handled here (and in :mod:`twin.cql.spatial_sql`) only:

* SpatiaLite's spatial predicates answer 1/0/-1, its ``LIKE`` ignores ASCII case (``GLOB``
  is used instead), and CASEI folds through the ``twin_casei`` function (:mod:`twin.casei`).
* Numbers never overflow into a database error. An integer literal outside the range of
  the integer column it is compared with (PostGIS ``integer``: 32 bits; SQLite: 64) is
  replaced by a float beyond that range that compares the same way
  (:mod:`twin.int_range`): ``floors = 3000000000`` matches nothing, ``floors < 3000000000``
  everything. Arithmetic runs in ``numeric`` on PostGIS (its ``integer`` and ``double``
  arithmetic raise on overflow) and in SQLite's own types there (which turn overflow into
  floats and infinities); either way there is no error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import shapely
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    and_,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from twin.casei import casei as fold_case
from twin.cql import spatial_sql, temporal_sql
from twin.cql.tree import (
    ARITHMETIC,
    COMPARISONS,
    SPATIAL,
    TEMPORAL,
    CqlFilter,
    Op,
    Prop,
    SortKey,
    _instant,
    _is_number,
    describe,
)
from twin.errors import InvalidParameter
from twin.int_range import INT64, integer_range, outside_sentinel

# kinds of scalar values
NUMBER, STRING, BOOLEAN, TIMESTAMP, DATE, GEOMETRY = "number", "string", "boolean", "timestamp", "date", "geometry"
_FLIP = {"=": "=", "<>": "<>", "<": ">", ">": "<", "<=": ">=", ">=": "<="}


@dataclass
class _Typed:
    sql: Any
    kind: str
    column: Any = None  # set when the value is a plain column (its type binds the literal)
    numeric: bool = False  # an arithmetic result: NUMERIC on PostGIS


def to_sql(flt: CqlFilter, tbl: Any, queryable: dict[str, str], dialect: Any, layer: str) -> ColumnElement[bool]:
    """The filter as a boolean SQL expression on ``tbl``.

    ``queryable`` names the properties a filter may use; ``dialect`` is the store's
    :class:`twin.dialect.SpatialDialect` (for the index-backed bbox pre-filter, the
    backend's spatial-predicate convention and CASEI).
    """
    return _Compiler(tbl, queryable, dialect, layer).condition(flt.tree)


def order_by(keys: tuple[SortKey, ...], tbl: Any, queryable: dict[str, str], layer: str) -> list[Any]:
    """ORDER BY terms for ``keys`` (NULLs last on both backends), then ``id`` as the tie-break."""
    out = []
    for k in keys:
        if k.name not in queryable:
            raise InvalidParameter(f"sortby: unknown property {k.name!r} for layer {layer!r}",
                                   detail={"sortables": sorted(queryable)})
        col = tbl.c[k.name]
        out.append((col.desc() if k.descending else col.asc()).nulls_last())
    out.append(tbl.c.id.asc())
    return out


class _Compiler:
    def __init__(self, tbl: Any, queryable: dict[str, str], dialect: Any, layer: str):
        self.tbl = tbl
        self.queryable = queryable
        self.dialect = dialect
        self.layer = layer
        self.sqlite = getattr(dialect, "name", "") == "spatialite"
        self.backend = "sqlite" if self.sqlite else "postgresql"

    def fail(self, message: str) -> InvalidParameter:
        return InvalidParameter(f"filter: {message}", detail={"queryables": sorted(self.queryable)})

    def predicate(self, expr: Any) -> Any:
        """SpatiaLite's ST_ predicates answer 1/0/-1; PostGIS's are boolean."""
        return expr == 1 if self.sqlite else expr

    # boolean conditions
    def condition(self, n: Any) -> Any:  # noqa: C901 - one dispatch over operators
        if isinstance(n, bool):
            return true() if n else false()
        if not isinstance(n, Op):
            raise self.fail(f"{describe(n)} is not a condition")
        op, a = n.op, n.args
        if op == "and":
            return and_(*(self.condition(x) for x in a))
        if op == "or":
            return or_(*(self.condition(x) for x in a))
        if op == "not":
            return not_(self.condition(a[0]))
        if op in COMPARISONS:
            return self.compare(op, a[0], a[1])
        if op == "like":
            return self.like(a[0], a[1])
        if op == "between":
            lhs, _ = self.pair(a[0], a[1], "BETWEEN")
            if lhs.kind not in (NUMBER, STRING, TIMESTAMP, DATE):
                raise self.fail(f"BETWEEN does not apply to a {lhs.kind}")
            return and_(self.compare(">=", a[0], a[1]), self.compare("<=", a[0], a[2]))
        if op == "in":
            return self.in_list(a[0], a[1])
        if op == "isnull":
            v = self.scalar(a[0])
            return v.sql.is_(None)
        if op in SPATIAL or op == "s_dwithin":
            return spatial_sql.spatial(self, op, a)
        if op in TEMPORAL:
            return temporal_sql.temporal(self, op, a[0], a[1])
        raise self.fail(f"{op.upper()} is not a condition")

    def compare(self, op: str, a: Any, b: Any) -> Any:
        """``a op b``, the literal (if any) on the right; a DATE against a timestamp is its whole day."""
        if not isinstance(a, (Prop, Op)) and isinstance(b, (Prop, Op)):
            a, b, op = b, a, _FLIP[op]
        lhs, rhs = self.pair(a, b, op)
        if lhs.kind == GEOMETRY:
            raise self.fail(f"{op} does not compare geometries; use S_EQUALS")
        if lhs.kind == TIMESTAMP and not isinstance(b, (Prop, Op)):
            return temporal_sql.compare_instant(op, lhs.sql, temporal_sql.span(self, lhs, b, op))
        lhs, rhs = self.unify(lhs, rhs)
        return {"=": lhs.sql.__eq__, "<>": lhs.sql.__ne__, "<": lhs.sql.__lt__, "<=": lhs.sql.__le__,
                ">": lhs.sql.__gt__, ">=": lhs.sql.__ge__}[op](rhs.sql)

    def in_list(self, a: Any, items: tuple[Any, ...]) -> Any:
        if not items:
            raise self.fail("IN needs at least one value")
        lhs = self.scalar(a)
        if lhs.kind == TIMESTAMP:  # dates among the values are whole days
            return or_(*(self.compare("=", a, v) for v in items))
        vals = [self.coerce(v, lhs, "IN") for v in items]
        if not self.sqlite and lhs.kind == NUMBER and (lhs.numeric or any(v.numeric for v in vals)):
            lhs = self.as_numeric(lhs)
            vals = [self.as_numeric(v) for v in vals]
        return lhs.sql.in_([v.sql for v in vals])

    # scalar values
    def prop(self, p: Prop) -> _Typed:
        name = p.name
        if name in ("geom", "geometry"):
            return _Typed(self.tbl.c.geom, GEOMETRY, self.tbl.c.geom)
        if name not in self.queryable:
            col = self.tbl.c.get(name)
            why = "is not queryable (a list or object)" if col is not None and name != "id" else "is unknown"
            raise self.fail(f"property {name!r} {why} for layer {self.layer!r}")
        col = self.tbl.c[name]
        t = col.type
        if isinstance(t, Boolean):
            kind = BOOLEAN
        elif isinstance(t, (Integer, Float)):
            kind = NUMBER
        elif isinstance(t, DateTime):
            kind = TIMESTAMP
        elif isinstance(t, Date):
            kind = DATE
        else:
            kind = STRING
        return _Typed(col, kind, col)

    def scalar(self, v: Any) -> _Typed:
        if isinstance(v, Prop):
            return self.prop(v)
        if isinstance(v, Op):
            if v.op in ARITHMETIC:
                return self.arithmetic(v)
            if v.op == "casei":
                arg = v.args[0]
                while isinstance(arg, Op) and arg.op == "casei":  # folding twice is folding once
                    arg = arg.args[0]
                inner = self.scalar(arg)
                if inner.kind != STRING:
                    raise self.fail(f"CASEI needs a string, not {describe(arg)}")
                return _Typed(self.dialect.casei(inner.sql), STRING)
            raise self.fail(f"{v.op.upper()} is a condition, not a value")
        if isinstance(v, bool):
            return _Typed(literal(v, Boolean), BOOLEAN)
        if _is_number(v):
            return self.number(v, None)
        if isinstance(v, str):
            return _Typed(literal(v), STRING)
        if isinstance(v, dt.datetime):
            return _Typed(literal(v.astimezone(dt.UTC), DateTime(timezone=True)), TIMESTAMP)
        if isinstance(v, dt.date):
            return _Typed(literal(v, Date), DATE)
        if isinstance(v, shapely.Geometry):
            return _Typed(spatial_sql.geometry(v), GEOMETRY)
        raise self.fail(f"{describe(v)} cannot be used here")

    def arithmetic(self, v: Op) -> _Typed:
        """``+ - * /``: real division, NULL (no match) when dividing by zero, no overflow errors."""
        operands = []
        for x in v.args:
            if self.sqlite or not _is_number(x):
                t = self.scalar(x)
                if t.kind != NUMBER:
                    raise self.fail(f"arithmetic {v.op!r} needs numbers, not {describe(x)}")
                operands.append(t)
            else:
                operands.append(self.number(x, _Typed(None, NUMBER, numeric=True)))
        lhs, rhs = operands
        if not self.sqlite:
            lhs, rhs = self.as_numeric(lhs), self.as_numeric(rhs)
            if v.op == "/":
                return _Typed(lhs.sql / func.nullif(rhs.sql, 0), NUMBER, numeric=True)
            return _Typed({"+": lhs.sql.__add__, "-": lhs.sql.__sub__, "*": lhs.sql.__mul__}[v.op](rhs.sql),
                          NUMBER, numeric=True)
        if v.op == "/":
            return _Typed(cast(lhs.sql, Float) / func.nullif(cast(rhs.sql, Float), 0), NUMBER)
        return _Typed({"+": lhs.sql.__add__, "-": lhs.sql.__sub__, "*": lhs.sql.__mul__}[v.op](rhs.sql), NUMBER)

    def number(self, v: int | float, other: _Typed | None) -> _Typed:
        """A number literal bound so that no backend sees a value out of its range."""
        if other is not None and other.numeric and not self.sqlite:
            return _Typed(literal(Decimal(v) if isinstance(v, int) else Decimal(repr(v)), Numeric), NUMBER,
                          numeric=True)
        col = other.column if other is not None else None
        if col is not None and isinstance(col.type, Integer):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, int):
                bounds = integer_range(col.type, self.backend)
                if bounds[0] <= v <= bounds[1]:
                    return _Typed(literal(v, col.type), NUMBER)
                return _Typed(literal(outside_sentinel(v, bounds), Float), NUMBER)
        if isinstance(v, int) and INT64[0] <= v <= INT64[1]:
            return _Typed(literal(v, BigInteger), NUMBER)
        return _Typed(literal(float(v), Float), NUMBER)

    def as_numeric(self, t: _Typed) -> _Typed:
        """``t`` as PostgreSQL ``numeric`` (exact, and it does not overflow at these sizes)."""
        return t if t.numeric else replace(t, sql=cast(t.sql, Numeric), numeric=True)

    def unify(self, lhs: _Typed, rhs: _Typed) -> tuple[_Typed, _Typed]:
        """Both sides ``numeric`` on PostGIS when either is (a double beside a numeric could overflow)."""
        if self.sqlite or lhs.kind != NUMBER or not (lhs.numeric or rhs.numeric):
            return lhs, rhs
        return self.as_numeric(lhs), self.as_numeric(rhs)

    def coerce(self, v: Any, other: _Typed, where: str) -> _Typed:
        """Literal ``v`` as a value comparable with ``other`` (typed by its column), or a 400."""
        k = other.kind
        col = other.column
        target = f"{k} property {col.name!r}" if col is not None else f"a {k} expression"
        bad = self.fail(f"{describe(v)} cannot be compared with {target} (in {where})")
        if isinstance(v, (Prop, Op)):
            t = self.scalar(v)
            if t.kind != k and {t.kind, k} != {TIMESTAMP, DATE}:
                raise self.fail(f"{describe(v)} ({t.kind}) cannot be compared with a {k} (in {where})")
            return t
        if k == NUMBER:
            if not _is_number(v):
                raise bad
            return self.number(v, other)
        if k == STRING:
            if not isinstance(v, str):
                raise bad
            return _Typed(literal(v, col.type if col is not None else None), STRING)
        if k == BOOLEAN:
            if not isinstance(v, bool):
                raise bad
            return _Typed(literal(v, Boolean), BOOLEAN)
        if k in (TIMESTAMP, DATE):
            if isinstance(v, str):
                try:
                    v = _instant(v)
                except ValueError as exc:
                    raise self.fail(f"{where}: {exc}") from None
            if k == TIMESTAMP and isinstance(v, dt.date) and not isinstance(v, dt.datetime):
                v = dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
            if k == DATE and isinstance(v, dt.datetime):
                v = v.astimezone(dt.UTC).date()
            if not isinstance(v, dt.date):
                raise bad
            if isinstance(v, dt.datetime):
                return _Typed(literal(v.astimezone(dt.UTC), col.type if col is not None else DateTime(True)), k)
            return _Typed(literal(v, Date), k)
        if k == GEOMETRY:
            if not isinstance(v, shapely.Geometry):
                raise bad
            return _Typed(spatial_sql.geometry(v), GEOMETRY)
        raise bad

    def pair(self, a: Any, b: Any, where: str) -> tuple[_Typed, _Typed]:
        """Both operands typed; a literal takes the type of the other side."""
        a_lit = not isinstance(a, (Prop, Op))
        b_lit = not isinstance(b, (Prop, Op))
        if a_lit and b_lit:
            raise self.fail(f"{where} between two literals ({describe(a)}, {describe(b)}); name a property")
        if a_lit:
            rb = self.scalar(b)
            return self.coerce(a, rb, where), rb
        ra = self.scalar(a)
        return ra, self.coerce(b, ra, where)

    # LIKE: CQL2 wildcards % and _, backslash escapes; case-sensitive on both backends
    def like(self, lhs: Any, pattern: Any) -> Any:
        value = self.scalar(lhs)
        if value.kind != STRING:
            raise self.fail(f"LIKE needs a string property, not {describe(lhs)}")
        casei = isinstance(pattern, Op) and pattern.op == "casei"
        pat = pattern.args[0] if casei else pattern
        if not isinstance(pat, str):
            raise self.fail(f"LIKE pattern must be a quoted string, not {describe(pat)}")
        if _ends_in_escape(pat):
            raise self.fail(f"LIKE pattern {pat!r} ends with the escape character '\\'; "
                            "write '\\\\' for a literal backslash")
        if casei:
            pat = fold_case(pat) or ""
        if not self.sqlite:
            return value.sql.like(literal(pat), escape="\\")
        # SQLite's LIKE ignores ASCII case; GLOB does not. Translate % _ \x to * ? [x].
        out = []
        it = iter(pat)
        for ch in it:
            if ch == "\\":
                nxt = next(it)
                out.append(f"[{nxt}]" if nxt in "*?[" else nxt)
            elif ch == "%":
                out.append("*")
            elif ch == "_":
                out.append("?")
            elif ch in "*?[":
                out.append(f"[{ch}]")
            else:
                out.append(ch)
        return value.sql.op("GLOB")(literal("".join(out)))


def _ends_in_escape(pattern: str) -> bool:
    """Whether ``pattern`` ends in an unpaired backslash (PostgreSQL refuses it, SQLite guessed)."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1
