"""CQL2 filters and ``sortby`` for feature queries (OGC API – Features Part 3).

Two halves, so the HTTP layer can reject a bad expression before any database work:

* :func:`parse` reads ``cql2-text`` or ``cql2-json`` into a small tree of :class:`Op`,
  :class:`Prop` and Python literals (no SQLAlchemy). Geometry literals become shapely
  geometries in CRS84, transformed from ``filter-crs`` if one is given.
* :func:`to_sql` checks that tree against one layer (only its queryables, with matching
  types) and turns it into a SQLAlchemy boolean expression whose values are all bound
  parameters. Backend differences (SpatiaLite's integer spatial predicates, its
  case-insensitive ``LIKE``) are handled in :class:`_Compiler` only.

Supported: ``=  <>  <  <=  >  >=``, ``AND OR NOT``, ``LIKE``, ``IN``, ``BETWEEN``,
``IS [NOT] NULL``, ``+ - * /``, ``CASEI``, ``TIMESTAMP``/``DATE``/``INTERVAL`` literals,
``T_BEFORE T_AFTER T_EQUALS T_DURING T_INTERSECTS T_DISJOINT`` on the datetime column,
``S_INTERSECTS S_WITHIN S_CONTAINS S_DISJOINT S_TOUCHES S_CROSSES S_OVERLAPS S_EQUALS
S_DWITHIN`` with WKT / GeoJSON / ``BBOX(...)`` literals.

pygeofilter was considered: its cql2-text grammar (0.4) cannot parse ``NOT (a OR b)``, has no
``S_DWITHIN``, parses timestamps with dateparser's guessing and prints to stdout, so the
grammar here is a small recursive-descent parser instead.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import shapely
from pyproj import CRS, Transformer
from shapely.geometry import shape
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

from twin.crs import check_supported, crs_uri, is_crs84, parse_crs
from twin.errors import InvalidParameter
from twin.schema import SRID

LANGS = ("cql2-text", "cql2-json")
MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 60

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


# --- parsing -----------------------------------------------------------------


def parse(text: str, lang: str | None = None, crs: str | None = None) -> CqlFilter:
    """Parse ``text`` as ``lang`` (default cql2-text); geometry literals in ``crs`` (default CRS84)."""
    lang = (lang or "cql2-text").strip().lower()
    if lang not in LANGS:
        raise InvalidParameter(f"filter-lang {lang!r} is not supported", detail={"supported": list(LANGS)})
    if not text.strip():
        raise InvalidParameter("filter is empty")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidParameter(f"filter is longer than {MAX_FILTER_CHARS} characters")
    tree = _TextParser(text).parse() if lang == "cql2-text" else _parse_json(text)
    src = parse_crs(crs) if crs else None
    if src is not None:
        check_supported(src)
    tree = _map_geometries(tree, src)
    return CqlFilter(tree=tree, text=text, lang=lang)


def parse_sortby(text: str | None) -> tuple[SortKey, ...]:
    """``+floors,-height_m`` → keys (``+`` or no prefix ascending, ``-`` descending)."""
    if text is None:
        return ()
    keys: list[SortKey] = []
    # a literal '+' in a query string arrives as a space: strip it as "ascending"
    for part in text.split(","):
        p = part.strip()
        desc = p.startswith("-")
        if p[:1] in "+-" and p:
            p = p[1:].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            raise InvalidParameter(f"sortby: {part.strip()!r} is not a property name with an optional +/- prefix")
        keys.append(SortKey(p, desc))
    if not keys:
        raise InvalidParameter("sortby is empty")
    return tuple(keys)


class _Syntax(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<qid>"[^"]+")
      | (?P<id>[A-Za-z_][A-Za-z0-9_.:]*)
      | (?P<op><>|<=|>=|!=|[=<>(),+\-*/\[\]])
    )""",
    re.VERBOSE,
)

_GEOM_WORDS = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
               "GEOMETRYCOLLECTION"}
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE"}


@dataclass
class _Tok:
    kind: str  # str num id qid op end
    value: str
    pos: int


class _TextParser:
    """Recursive descent over the CQL2 text grammar (the subset listed in the module doc)."""

    def __init__(self, text: str):
        self.text = text
        self.toks = self._lex(text)
        self.i = 0
        self.depth = 0

    @staticmethod
    def _lex(text: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise InvalidParameter(
                    f"filter: unexpected character {text[pos]!r} at position {pos + 1}",
                    detail={"filter": text, "position": pos + 1},
                )
            kind = m.lastgroup or "op"
            toks.append(_Tok(kind, m.group(kind), m.start(kind)))
            pos = m.end()
        toks.append(_Tok("end", "", len(text)))
        return toks

    # helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def _word(self, k: int = 0) -> str:
        t = self.toks[min(self.i + k, len(self.toks) - 1)]
        return t.value.upper() if t.kind == "id" else ""

    def _is_op(self, value: str, k: int = 0) -> bool:
        t = self.toks[min(self.i + k, len(self.toks) - 1)]
        return t.kind == "op" and t.value == value

    def _expect_op(self, value: str) -> None:
        if not self._is_op(value):
            raise self._error(f"expected {value!r}")
        self.i += 1

    def _error(self, what: str) -> _Syntax:
        t = self.tok
        found = "the end of the filter" if t.kind == "end" else repr(t.value)
        return _Syntax(f"{what} but found {found}", t.pos)

    def parse(self) -> Any:
        try:
            node = self._or()
            if self.tok.kind != "end":
                raise self._error("expected AND, OR or the end of the filter")
            return node
        except _Syntax as exc:
            raise InvalidParameter(
                f"filter: syntax error at position {exc.pos + 1}: {exc.message}",
                detail={"filter": self.text, "position": exc.pos + 1},
            ) from None

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:  # not a _Syntax: no backtracking out of this
            raise InvalidParameter(f"filter: expression nested deeper than {MAX_DEPTH} levels")

    # boolean level
    def _or(self) -> Any:
        self._deeper()
        node = self._and()
        while self._word() == "OR":
            self.i += 1
            node = Op("or", (node, self._and()))
        self.depth -= 1
        return node

    def _and(self) -> Any:
        node = self._not()
        while self._word() == "AND":
            self.i += 1
            node = Op("and", (node, self._not()))
        return node

    def _not(self) -> Any:
        if self._word() == "NOT":
            self.i += 1
            return Op("not", (self._not(),))
        return self._primary()

    def _primary(self) -> Any:
        if self._is_op("("):
            # either a parenthesised condition or a predicate starting with a parenthesised
            # scalar expression, e.g. (height_m / floors) > 3: try the predicate first
            start, depth = self.i, self.depth
            try:
                return self._predicate()
            except _Syntax as first:
                self.i, self.depth = start, depth
                self.i += 1
                try:
                    node = self._or()
                    self._expect_op(")")
                    return node
                except _Syntax as second:
                    raise (second if second.pos >= first.pos else first) from None
        return self._predicate()

    # predicates
    def _predicate(self) -> Any:
        lhs = self._expr()
        w = self._word()
        negate = False
        if w == "NOT" and self._word(1) in ("LIKE", "BETWEEN", "IN"):
            negate = True
            self.i += 1
            w = self._word()
        t = self.tok
        if t.kind == "op" and t.value in COMPARISONS | {"!="}:
            self.i += 1
            node: Any = Op("<>" if t.value == "!=" else t.value, (lhs, self._expr()))
        elif w == "LIKE":
            self.i += 1
            node = Op("like", (lhs, self._expr()))
        elif w == "BETWEEN":
            self.i += 1
            lo = self._expr()
            if self._word() != "AND":
                raise self._error("expected AND in BETWEEN")
            self.i += 1
            node = Op("between", (lhs, lo, self._expr()))
        elif w == "IN":
            self.i += 1
            self._expect_op("(")
            items = [self._expr()]
            while self._is_op(","):
                self.i += 1
                items.append(self._expr())
            self._expect_op(")")
            node = Op("in", (lhs, tuple(items)))
        elif w == "IS":
            self.i += 1
            if self._word() == "NOT":
                self.i += 1
                negate = True
            if self._word() != "NULL":
                raise self._error("expected NULL or NOT NULL after IS")
            self.i += 1
            node = Op("isnull", (lhs,))
        elif isinstance(lhs, bool) or (isinstance(lhs, Op) and (lhs.op in SPATIAL | TEMPORAL | {"s_dwithin"})):
            return lhs
        else:
            raise self._error("expected a comparison (=, <>, <, <=, >, >=, LIKE, BETWEEN, IN, IS NULL)")
        return Op("not", (node,)) if negate else node

    # scalar expressions
    def _expr(self) -> Any:
        node = self._term()
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            op = self.tok.value
            self.i += 1
            node = Op(op, (node, self._term()))
        return node

    def _term(self) -> Any:
        node = self._unary()
        while self.tok.kind == "op" and self.tok.value in ("*", "/"):
            op = self.tok.value
            self.i += 1
            node = Op(op, (node, self._unary()))
        return node

    def _unary(self) -> Any:
        if self._is_op("-"):
            self.i += 1
            v = self._unary()
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            return Op("-", (0, v))
        if self._is_op("+"):
            self.i += 1
            return self._unary()
        return self._atom()

    def _atom(self) -> Any:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            return float(t.value) if any(c in t.value for c in ".eE") else int(t.value)
        if t.kind == "str":
            self.i += 1
            return t.value[1:-1].replace("''", "'")
        if t.kind == "qid":
            self.i += 1
            return Prop(t.value[1:-1])
        if self._is_op("("):
            self.i += 1
            self._deeper()
            node = self._expr()
            self.depth -= 1
            self._expect_op(")")
            return node
        if t.kind != "id":
            raise self._error("expected a property, a literal or a function")
        w = t.value.upper()
        if w in ("TRUE", "FALSE"):
            self.i += 1
            return w == "TRUE"
        if w in _KEYWORDS:
            raise self._error("expected a property, a literal or a function")
        if w in _GEOM_WORDS:
            return self._wkt()
        if not self._is_op("(", 1):
            self.i += 1
            return Prop(t.value)
        # function call
        self.i += 2
        args: list[Any] = []
        if not self._is_op(")"):
            args.append(self._expr())
            while self._is_op(","):
                self.i += 1
                args.append(self._expr())
        self._expect_op(")")
        return self._function(w.lower(), args, t.pos)

    def _wkt(self) -> Any:
        start = self.tok.pos
        self.i += 1
        if self._word() in ("Z", "M", "ZM", "EMPTY"):
            self.i += 1
        if not self._is_op("("):
            raise self._error("expected '(' after the geometry type")
        level = 0
        while True:
            t = self.tok
            if t.kind == "end":
                raise self._error("unbalanced parentheses in the geometry literal")
            if t.kind == "op" and t.value == "(":
                level += 1
            elif t.kind == "op" and t.value == ")":
                level -= 1
            self.i += 1
            if level == 0:
                break
        wkt = self.text[start : self.toks[self.i - 1].pos + 1]
        try:
            return shapely.from_wkt(wkt)
        except shapely.errors.ShapelyError as exc:
            raise _Syntax(f"invalid WKT geometry: {exc}", start) from None

    def _function(self, name: str, args: list[Any], pos: int) -> Any:
        def want(n: int) -> None:
            if len(args) != n:
                raise _Syntax(f"{name.upper()} takes {n} arguments, not {len(args)}", pos)

        if name in ("timestamp", "date"):
            want(1)
            if not isinstance(args[0], str):
                raise _Syntax(f"{name.upper()} needs a quoted string", pos)
            try:
                return _timestamp(args[0]) if name == "timestamp" else _date(args[0])
            except ValueError as exc:
                raise _Syntax(str(exc), pos) from None
        if name == "interval":
            want(2)
            try:
                return Interval(*(_instant(a) for a in args))
            except (ValueError, TypeError) as exc:
                raise _Syntax(f"INTERVAL: {exc}", pos) from None
        if name == "bbox":
            if len(args) not in (4, 6) or not all(_is_number(a) for a in args):
                raise _Syntax("BBOX takes 4 (or 6) numbers", pos)
            return _bbox(args)
        if name == "s_dwithin":
            if len(args) == 4 and isinstance(args[3], Prop):  # units given as a bare word
                args[3] = args[3].name
            if len(args) not in (3, 4):
                raise _Syntax("S_DWITHIN takes (geometry, geometry, distance[, units])", pos)
            return Op(name, tuple(args))
        if name in SPATIAL or name in TEMPORAL:
            want(2)
            return Op(name, tuple(args))
        if name == "casei":
            want(1)
            return Op("casei", tuple(args))
        raise _Syntax(f"function {name.upper()} is not supported", pos)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bbox(args: list[Any]) -> Any:
    if len(args) == 6:
        args = [args[0], args[1], args[3], args[4]]
    x0, y0, x1, y1 = (float(a) for a in args)
    if x0 > x1 or y0 > y1:
        raise ValueError("BBOX corners must be minx, miny, maxx, maxy")
    return shapely.box(x0, y0, x1, y1)


def _timestamp(s: str) -> dt.datetime:
    try:
        v = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{s!r} is not an RFC 3339 timestamp") from None
    if "T" not in s.upper() and " " not in s:
        raise ValueError(f"{s!r} is not an RFC 3339 timestamp (use DATE for dates)")
    return v if v.tzinfo else v.replace(tzinfo=dt.UTC)


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


# --- cql2-json ---------------------------------------------------------------

_JSON_OPS = COMPARISONS | ARITHMETIC | SPATIAL | TEMPORAL | {
    "and", "or", "not", "like", "between", "in", "isnull", "casei", "s_dwithin"}


def _parse_json(text: str) -> Any:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidParameter(f"filter: not valid JSON: {exc}", detail={"filter": text}) from None
    try:
        return _walk_json(doc, "$", 0)
    except _Syntax as exc:
        raise InvalidParameter(f"filter: {exc.message}", detail={"filter": text}) from None


def _walk_json(node: Any, path: str, depth: int) -> Any:  # noqa: C901 - a flat dispatch
    if depth > MAX_DEPTH:
        raise _Syntax(f"expression nested deeper than {MAX_DEPTH} levels", 0)
    if node is None:
        raise _Syntax(f"null is not a value at {path} (use isNull)", 0)
    if isinstance(node, (bool, int, float, str)):
        if isinstance(node, float) and not math.isfinite(node):
            raise _Syntax(f"number at {path} is not finite", 0)
        return node
    if isinstance(node, list):
        return tuple(_walk_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
    if not isinstance(node, dict):
        raise _Syntax(f"unexpected value at {path}", 0)
    if "property" in node:
        if not isinstance(node["property"], str):
            raise _Syntax(f"property name at {path} must be a string", 0)
        return Prop(node["property"])
    if "timestamp" in node:
        try:
            return _timestamp(str(node["timestamp"]))
        except ValueError as exc:
            raise _Syntax(f"{exc} at {path}", 0) from None
    if "date" in node:
        try:
            return _date(str(node["date"]))
        except ValueError as exc:
            raise _Syntax(f"{exc} at {path}", 0) from None
    if "interval" in node:
        iv = node["interval"]
        if not isinstance(iv, list) or len(iv) != 2:
            raise _Syntax(f"interval at {path} must be a list of two instants", 0)
        try:
            return Interval(*(_instant(v["timestamp"] if isinstance(v, dict) and "timestamp" in v
                                       else v["date"] if isinstance(v, dict) and "date" in v else v)
                              for v in iv))
        except (ValueError, TypeError) as exc:
            raise _Syntax(f"{exc} at {path}", 0) from None
    if "bbox" in node:
        b = node["bbox"]
        if not isinstance(b, list) or len(b) not in (4, 6) or not all(_is_number(v) for v in b):
            raise _Syntax(f"bbox at {path} must be 4 (or 6) numbers", 0)
        try:
            return _bbox(list(b))
        except ValueError as exc:
            raise _Syntax(f"{exc} at {path}", 0) from None
    if "type" in node and ("coordinates" in node or "geometries" in node):
        try:
            return shape(node)
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            raise _Syntax(f"invalid GeoJSON geometry at {path}: {exc}", 0) from None
    if "op" in node:
        op = str(node["op"]).lower()
        if op == "!=":
            op = "<>"
        if op not in _JSON_OPS:
            raise _Syntax(f"operator {node['op']!r} at {path} is not supported", 0)
        args = node.get("args", [])
        if not isinstance(args, list):
            args = [args]
        vals = [_walk_json(a, f"{path}.args[{i}]", depth + 1) for i, a in enumerate(args)]
        if op in ("and", "or"):
            if len(vals) < 2:
                raise _Syntax(f"{op} at {path} needs at least two arguments", 0)
            out = vals[0]
            for v in vals[1:]:
                out = Op(op, (out, v))
            return out
        if op == "between" and len(vals) == 2 and isinstance(vals[1], tuple) and len(vals[1]) == 2:
            vals = [vals[0], *vals[1]]
        if op == "in" and (len(vals) != 2 or not isinstance(vals[1], tuple)):
            raise _Syntax(f"in at {path} takes a value and a list", 0)
        if op == "s_dwithin" and len(vals) == 4 and isinstance(vals[3], Prop):
            vals[3] = vals[3].name
        arity = {"not": 1, "isnull": 1, "casei": 1, "between": 3, "s_dwithin": (3, 4)}.get(op, 2)
        if len(vals) not in (arity if isinstance(arity, tuple) else (arity,)):
            raise _Syntax(f"{op} at {path} takes {arity} arguments, not {len(vals)}", 0)
        return Op(op, tuple(vals))
    raise _Syntax(f"unrecognised object at {path}: keys {sorted(node)}", 0)


# --- geometry literals: filter-crs and distances ------------------------------


@lru_cache(maxsize=64)
def _to_crs84(src: str) -> Transformer:
    return Transformer.from_crs(src, "OGC:CRS84", always_xy=False)


def _map_geometries(node: Any, src: CRS | None) -> Any:
    if isinstance(node, shapely.Geometry):
        g = node
        if src is not None and not is_crs84(src):
            t = _to_crs84(src.srs)
            g = shapely.transform(g, lambda xy: _stack(t.transform(xy[:, 0], xy[:, 1])))
            if not all(map(math.isfinite, g.bounds)):
                raise InvalidParameter(f"a geometry in the filter lies outside the area of use of {crs_uri(src)}")
        return g
    if isinstance(node, Op):
        return Op(node.op, tuple(_map_geometries(a, src) for a in node.args))
    if isinstance(node, tuple):
        return tuple(_map_geometries(a, src) for a in node)
    return node


def _stack(xy: tuple[Any, Any]) -> Any:
    import numpy as np

    return np.column_stack(xy)


def _buffer_m(g: Any, metres: float) -> Any:
    """``g`` (CRS84) grown by ``metres`` in an equidistant projection centred on it."""
    c = g.centroid if not g.is_empty else g
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
    fwd = Transformer.from_crs("OGC:CRS84", aeqd, always_xy=True)
    back = Transformer.from_crs(aeqd, "OGC:CRS84", always_xy=True)
    local = shapely.transform(g, lambda xy: _stack(fwd.transform(xy[:, 0], xy[:, 1])))
    grown = shapely.buffer(local, metres, quad_segs=32)
    return shapely.transform(grown, lambda xy: _stack(back.transform(xy[:, 0], xy[:, 1])))


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


__all__ = ["CqlFilter", "SortKey", "Op", "Prop", "Interval", "LANGS", "parse", "parse_sortby", "to_sql",
           "order_by"]
