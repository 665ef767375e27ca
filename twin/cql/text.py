"""cql2-text: a small recursive-descent parser into the tree of :mod:`twin.cql.tree`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import shapely

from twin.cql.tree import (
    COMPARISONS,
    SPATIAL,
    TEMPORAL,
    CqlLimits,
    Interval,
    Op,
    Prop,
    _bbox,
    _date,
    _instant,
    _is_number,
    _number,
    _Syntax,
    _timestamp,
)
from twin.errors import InvalidParameter

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
    """Recursive descent over the CQL2 text grammar (the subset listed in the module doc).

    Every production that recurses (a group, ``NOT``, a sign, a function call) passes
    through :meth:`_deeper`, so no input can reach Python's recursion limit; ``AND`` and
    ``OR`` chains are read in a loop into one n-ary node, however long.
    """

    def __init__(self, text: str, limits: CqlLimits | None = None):
        self.text = text
        self.limits = limits or CqlLimits()
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
        """One level down; the caller undoes it with ``self.depth -= 1`` in a ``finally``."""
        self.depth += 1
        if self.depth > self.limits.max_depth:  # not a _Syntax: no backtracking out of this
            raise InvalidParameter(
                f"filter: expression nested deeper than {self.limits.max_depth} levels "
                f"(at position {self.tok.pos + 1})",
                detail={"filter": self.text, "position": self.tok.pos + 1, "max_depth": self.limits.max_depth})

    # boolean level
    def _or(self) -> Any:
        self._deeper()
        try:
            items = [self._and()]
            while self._word() == "OR":
                self.i += 1
                items.append(self._and())
        finally:
            self.depth -= 1
        return items[0] if len(items) == 1 else Op("or", tuple(items))

    def _and(self) -> Any:
        items = [self._not()]
        while self._word() == "AND":
            self.i += 1
            items.append(self._not())
        return items[0] if len(items) == 1 else Op("and", tuple(items))

    def _not(self) -> Any:
        if self._word() == "NOT":
            self.i += 1
            self._deeper()
            try:
                return Op("not", (self._not(),))
            finally:
                self.depth -= 1
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
        if self._is_op("-") or self._is_op("+"):
            sign = self.tok.value
            self.i += 1
            self._deeper()
            try:
                v = self._unary()
            finally:
                self.depth -= 1
            if sign == "+":
                return v
            if _is_number(v):
                return -v
            return Op("-", (0, v))
        return self._atom()

    def _atom(self) -> Any:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            try:
                v: int | float = float(t.value) if any(c in t.value for c in ".eE") else int(t.value)
            except ValueError:  # more digits than Python converts (4,300)
                v = math.inf
            try:
                return _number(v, t.value if len(t.value) <= 40 else t.value[:37] + "...")
            except _Syntax as exc:
                raise _Syntax(exc.message, t.pos) from None
        if t.kind == "str":
            self.i += 1
            return t.value[1:-1].replace("''", "'")
        if t.kind == "qid":
            self.i += 1
            return Prop(t.value[1:-1])
        if self._is_op("("):
            self.i += 1
            self._deeper()
            try:
                node = self._expr()
            finally:
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
        self._deeper()
        try:
            if not self._is_op(")"):
                args.append(self._expr())
                while self._is_op(","):
                    self.i += 1
                    args.append(self._expr())
        finally:
            self.depth -= 1
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
                if level > self.limits.max_depth:
                    raise self._error(f"geometry literal nested deeper than {self.limits.max_depth} levels")
            elif t.kind == "op" and t.value == ")":
                level -= 1
            self.i += 1
            if level == 0:
                break
        wkt = self.text[start : self.toks[self.i - 1].pos + 1]
        try:
            return shapely.from_wkt(wkt)
        except (shapely.errors.ShapelyError, ValueError) as exc:
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
            try:
                return _bbox(args)
            except _Syntax as exc:
                raise _Syntax(exc.message, pos) from None
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

