"""cql2-json: the JSON encoding of a filter, read into the tree of :mod:`twin.cql.tree`."""

from __future__ import annotations

import json
from typing import Any

from shapely.geometry import shape

from twin.cql.tree import (
    ARITHMETIC,
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

# --- cql2-json ---------------------------------------------------------------

_JSON_OPS = COMPARISONS | ARITHMETIC | SPATIAL | TEMPORAL | {
    "and", "or", "not", "like", "between", "in", "isnull", "casei", "s_dwithin"}


def _json_nesting(text: str) -> int:
    """How deeply ``[``/``{`` nest in ``text`` (outside strings), without parsing it.

    ``json.loads`` recurses once per level and fails with a RecursionError (a 500) on a few
    thousand; this scan runs first so a deep document is a plain 400.
    """
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _parse_json(text: str, limits: CqlLimits | None = None) -> Any:
    limits = limits or CqlLimits()
    # an operator is two levels ({"op", "args": [...]}); GeoJSON coordinates add up to four
    max_nesting = 2 * limits.max_depth + 8
    if _json_nesting(text) > max_nesting:
        raise InvalidParameter(f"filter: JSON nested deeper than {max_nesting} levels",
                               detail={"filter": text, "max_depth": limits.max_depth})
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidParameter(f"filter: not valid JSON: {exc}", detail={"filter": text}) from None
    try:
        return _walk_json(doc, "$", 0, limits.max_depth)
    except _Syntax as exc:
        raise InvalidParameter(f"filter: {exc.message}", detail={"filter": text}) from None


def _walk_json(node: Any, path: str, depth: int, max_depth: int) -> Any:  # noqa: C901 - a flat dispatch
    if depth > max_depth:
        raise _Syntax(f"expression nested deeper than {max_depth} levels", 0)
    if node is None:
        raise _Syntax(f"null is not a value at {path} (use isNull)", 0)
    if isinstance(node, bool) or isinstance(node, str):
        return node
    if isinstance(node, (int, float)):
        try:
            return _number(node, f"at {path}")
        except _Syntax as exc:
            raise _Syntax(exc.message, 0) from None
    if isinstance(node, list):
        return tuple(_walk_json(v, f"{path}[{i}]", depth + 1, max_depth) for i, v in enumerate(node))
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
            return _bbox([_number(v, f"in the bbox at {path}") for v in b])
        except _Syntax as exc:
            raise _Syntax(f"{exc.message} at {path}", 0) from None
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
        vals = [_walk_json(a, f"{path}.args[{i}]", depth + 1, max_depth) for i, a in enumerate(args)]
        if op in ("and", "or"):
            if len(vals) < 2:
                raise _Syntax(f"{op} at {path} needs at least two arguments", 0)
            return Op(op, tuple(vals))
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

