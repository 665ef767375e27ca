"""Compiling a parsed filter and ``sortby`` against one layer's table into SQLAlchemy.

Only queryable columns, with matching types; every value a bound parameter. Backend
differences (SpatiaLite's integer spatial predicates, its case-insensitive ``LIKE``) are
handled here only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import shapely
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
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

from twin.cql.geometry import _buffer_m
from twin.cql.tree import (
    ARITHMETIC,
    COMPARISONS,
    SPATIAL,
    TEMPORAL,
    UNITS_M,
    CqlFilter,
    Interval,
    Op,
    Prop,
    SortKey,
    _instant,
    _is_number,
)
from twin.errors import InvalidParameter
from twin.schema import SRID

# --- compiling to SQL --------------------------------------------------------

# kinds of scalar values
NUMBER, STRING, BOOLEAN, TIMESTAMP, DATE, GEOMETRY = "number", "string", "boolean", "timestamp", "date", "geometry"


@dataclass
class _Typed:
    sql: Any
    kind: str
    column: Any = None  # set when the value is a plain column (its type binds the literal)


def to_sql(flt: CqlFilter, tbl: Any, queryable: dict[str, str], dialect: Any, layer: str) -> ColumnElement[bool]:
    """The filter as a boolean SQL expression on ``tbl``.

    ``queryable`` names the properties a filter may use; ``dialect`` is the store's
    :class:`twin.dialect.SpatialDialect` (for the index-backed bbox pre-filter and the
    backend's spatial-predicate convention).
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


def _describe(v: Any) -> str:
    if isinstance(v, Prop):
        return f"property {v.name!r}"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
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


class _Compiler:
    def __init__(self, tbl: Any, queryable: dict[str, str], dialect: Any, layer: str):
        self.tbl = tbl
        self.queryable = queryable
        self.dialect = dialect
        self.layer = layer
        self.sqlite = getattr(dialect, "name", "") == "spatialite"

    def fail(self, message: str) -> InvalidParameter:
        return InvalidParameter(f"filter: {message}", detail={"queryables": sorted(self.queryable)})

    # boolean conditions
    def condition(self, n: Any) -> Any:  # noqa: C901 - one dispatch over operators
        if isinstance(n, bool):
            return true() if n else false()
        if not isinstance(n, Op):
            raise self.fail(f"{_describe(n)} is not a condition")
        op, a = n.op, n.args
        if op == "and":
            return and_(*(self.condition(x) for x in a))
        if op == "or":
            return or_(*(self.condition(x) for x in a))
        if op == "not":
            return not_(self.condition(a[0]))
        if op in COMPARISONS:
            lhs, rhs = self.pair(a[0], a[1], op)
            if lhs.kind == GEOMETRY:
                raise self.fail(f"{op} does not compare geometries; use S_EQUALS")
            return {"=": lhs.sql.__eq__, "<>": lhs.sql.__ne__, "<": lhs.sql.__lt__, "<=": lhs.sql.__le__,
                    ">": lhs.sql.__gt__, ">=": lhs.sql.__ge__}[op](rhs.sql)
        if op == "like":
            return self.like(a[0], a[1])
        if op == "between":
            lhs, lo = self.pair(a[0], a[1], "BETWEEN")
            _, hi = self.pair(a[0], a[2], "BETWEEN")
            if lhs.kind not in (NUMBER, STRING, TIMESTAMP, DATE):
                raise self.fail(f"BETWEEN does not apply to a {lhs.kind}")
            return lhs.sql.between(lo.sql, hi.sql)
        if op == "in":
            if not a[1]:
                raise self.fail("IN needs at least one value")
            lhs = self.scalar(a[0])
            vals = [self.coerce(v, lhs, "IN").sql for v in a[1]]
            return lhs.sql.in_(vals)
        if op == "isnull":
            v = self.scalar(a[0])
            return v.sql.is_(None)
        if op in SPATIAL or op == "s_dwithin":
            return self.spatial(op, a)
        if op in TEMPORAL:
            return self.temporal(op, a[0], a[1])
        raise self.fail(f"{op.upper()} is not a condition")

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
                lhs, rhs = self.scalar_num(v.args[0], v.op), self.scalar_num(v.args[1], v.op)
                if v.op == "/":
                    # real division on both backends, NULL (not an error) when dividing by zero
                    return _Typed(cast(lhs.sql, Float) / func.nullif(cast(rhs.sql, Float), 0), NUMBER)
                return _Typed({"+": lhs.sql.__add__, "-": lhs.sql.__sub__, "*": lhs.sql.__mul__}[v.op](rhs.sql),
                              NUMBER)
            if v.op == "casei":
                inner = self.scalar(v.args[0])
                if inner.kind != STRING:
                    raise self.fail(f"CASEI needs a string, not {_describe(v.args[0])}")
                return _Typed(func.lower(inner.sql), STRING)
            raise self.fail(f"{v.op.upper()} is a condition, not a value")
        if isinstance(v, bool):
            return _Typed(literal(v, Boolean), BOOLEAN)
        if isinstance(v, int):
            return _Typed(literal(v, Integer), NUMBER)
        if isinstance(v, float):
            return _Typed(literal(v, Float), NUMBER)
        if isinstance(v, str):
            return _Typed(literal(v), STRING)
        if isinstance(v, dt.datetime):
            return _Typed(literal(v.astimezone(dt.UTC), DateTime(timezone=True)), TIMESTAMP)
        if isinstance(v, dt.date):
            return _Typed(literal(v, Date), DATE)
        if isinstance(v, shapely.Geometry):
            return _Typed(self.geometry(v), GEOMETRY)
        raise self.fail(f"{_describe(v)} cannot be used here")

    def scalar_num(self, v: Any, op: str) -> _Typed:
        t = self.scalar(v)
        if t.kind != NUMBER:
            raise self.fail(f"arithmetic {op!r} needs numbers, not {_describe(v)}")
        return t

    def coerce(self, v: Any, other: _Typed, where: str) -> _Typed:
        """Literal ``v`` as a value comparable with ``other`` (typed by its column), or a 400."""
        k = other.kind
        col = other.column
        target = f"{k} property {col.name!r}" if col is not None else f"a {k} expression"
        bad = self.fail(f"{_describe(v)} cannot be compared with {target} (in {where})")
        if isinstance(v, (Prop, Op)):
            t = self.scalar(v)
            if t.kind != k and {t.kind, k} != {TIMESTAMP, DATE}:
                raise self.fail(f"{_describe(v)} ({t.kind}) cannot be compared with a {k} (in {where})")
            return t
        if k == NUMBER:
            if not _is_number(v):
                raise bad
            if col is not None and isinstance(col.type, Integer) and isinstance(v, float) and v.is_integer():
                v = int(v)
            return _Typed(literal(v, Float if isinstance(v, float) else Integer), NUMBER)
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
            return _Typed(self.geometry(v), GEOMETRY)
        raise bad

    def pair(self, a: Any, b: Any, where: str) -> tuple[_Typed, _Typed]:
        """Both operands typed; a literal takes the type of the other side."""
        a_lit = not isinstance(a, (Prop, Op))
        b_lit = not isinstance(b, (Prop, Op))
        if a_lit and b_lit:
            raise self.fail(f"{where} between two literals ({_describe(a)}, {_describe(b)}); name a property")
        if a_lit:
            rb = self.scalar(b)
            return self.coerce(a, rb, where), rb
        ra = self.scalar(a)
        return ra, self.coerce(b, ra, where)

    # LIKE: CQL2 wildcards % and _, backslash escapes; case-sensitive on both backends
    def like(self, lhs: Any, pattern: Any) -> Any:
        value = self.scalar(lhs)
        if value.kind != STRING:
            raise self.fail(f"LIKE needs a string property, not {_describe(lhs)}")
        casei = isinstance(pattern, Op) and pattern.op == "casei"
        pat = pattern.args[0] if casei else pattern
        if not isinstance(pat, str):
            raise self.fail(f"LIKE pattern must be a quoted string, not {_describe(pat)}")
        if casei:
            pat = pat.lower()
        if not self.sqlite:
            return value.sql.like(literal(pat), escape="\\")
        # SQLite's LIKE ignores ASCII case; GLOB does not. Translate % _ \x to * ? [x].
        out = []
        it = iter(pat)
        for ch in it:
            if ch == "\\":
                nxt = next(it, "\\")
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

    # spatial predicates
    def geometry(self, g: Any) -> Any:
        return func.ST_GeomFromText(literal(shapely.to_wkt(g, rounding_precision=-1)), SRID)

    def _pred(self, expr: Any) -> Any:
        """SpatiaLite's ST_ predicates answer 1/0/-1; PostGIS's are boolean."""
        return expr == 1 if self.sqlite else expr

    def spatial(self, op: str, a: tuple[Any, ...]) -> Any:
        geoms = []
        for v in a[:2]:
            if isinstance(v, Prop):
                t = self.prop(v)
                if t.kind != GEOMETRY:
                    raise self.fail(f"{op.upper()} needs the geometry property 'geom', not {_describe(v)}")
                geoms.append(("prop", t.sql))
            elif isinstance(v, shapely.Geometry):
                geoms.append(("lit", v))
            else:
                raise self.fail(f"{op.upper()} needs geometries, not {_describe(v)}")
        kinds = [k for k, _ in geoms]
        if kinds.count("prop") != 1:
            raise self.fail(f"{op.upper()} needs the geometry property and one geometry literal")
        lit = next(g for k, g in geoms if k == "lit")
        if lit.is_empty:
            raise self.fail(f"{op.upper()} with an empty geometry")
        if op == "s_dwithin":
            dist = a[2]
            units = (a[3] if len(a) > 3 else "meters")
            if not _is_number(dist) or dist < 0:
                raise self.fail(f"S_DWITHIN distance must be a non-negative number, not {_describe(dist)}")
            scale = UNITS_M.get(str(units).lower())
            if scale is None:
                raise self.fail(f"S_DWITHIN units {units!r} not supported; use meters or kilometers")
            lit = _buffer_m(lit, float(dist) * scale)
            op = "s_intersects"
            geoms = [("prop", self.tbl.c.geom), ("lit", lit)]
        fn = {"s_intersects": func.ST_Intersects, "s_within": func.ST_Within, "s_contains": func.ST_Contains,
              "s_disjoint": func.ST_Disjoint, "s_touches": func.ST_Touches, "s_crosses": func.ST_Crosses,
              "s_overlaps": func.ST_Overlaps, "s_equals": func.ST_Equals}[op]
        args = [g if k == "prop" else self.geometry(g) for k, g in geoms]
        pred = self._pred(fn(*args))
        if op == "s_disjoint":
            return pred
        # every other predicate implies that the feature meets the literal's envelope: add the
        # dialect's index-backed bbox test so the spatial index narrows the scan first
        x0, y0, x1, y1 = lit.bounds
        eps = 1e-9
        return and_(self.dialect.bbox_clause(self.tbl, (x0 - eps, y0 - eps, x1 + eps, y1 + eps)), pred)

    # temporal predicates on instants (the layer's datetime or date columns)
    def temporal(self, op: str, a: Any, b: Any) -> Any:
        if isinstance(b, Prop) and not isinstance(a, Prop):
            a, b = b, a
            op = {"t_before": "t_after", "t_after": "t_before"}.get(op, op)
        col = self.scalar(a)
        if col.kind not in (TIMESTAMP, DATE):
            raise self.fail(f"{op.upper()} needs a date or timestamp property, not {_describe(a)}")
        if isinstance(b, Interval):
            lo = self.coerce(b.start, col, op.upper()).sql if b.start is not None else None
            hi = self.coerce(b.end, col, op.upper()).sql if b.end is not None else None
            x = col.sql
            if op == "t_during":
                conds = [c for c in ((x > lo) if lo is not None else None, (x < hi) if hi is not None else None)
                         if c is not None]
            elif op in ("t_intersects", "t_disjoint"):
                conds = [c for c in ((x >= lo) if lo is not None else None, (x <= hi) if hi is not None else None)
                         if c is not None]
            elif op == "t_before" and lo is not None:
                conds = [x < lo]
            elif op == "t_after" and hi is not None:
                conds = [x > hi]
            else:
                raise self.fail(f"{op.upper()} of an instant and this interval is not supported")
            cond = and_(*conds) if conds else x.is_not(None)
            return not_(cond) if op == "t_disjoint" else cond
        if op == "t_during":
            raise self.fail("T_DURING needs an INTERVAL")
        v = self.coerce(b, col, op.upper()).sql
        return {"t_before": col.sql < v, "t_after": col.sql > v, "t_equals": col.sql == v,
                "t_intersects": col.sql == v, "t_disjoint": col.sql != v}[op]
