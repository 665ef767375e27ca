"""cql2-json: the JSON encoding of a filter, read into the tree of :mod:`twin.cql.tree`."""

from __future__ import annotations

import json
import math
from typing import Any

from shapely.geometry import shape

from twin.cql.tree import (
    ARITHMETIC,
    COMPARISONS,
    MAX_DEPTH,
    SPATIAL,
    TEMPORAL,
    Interval,
    Op,
    Prop,
    _bbox,
    _date,
    _instant,
    _is_number,
    _Syntax,
    _timestamp,
)
from twin.errors import InvalidParameter

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

