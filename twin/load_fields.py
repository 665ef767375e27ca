"""Attribute mapping and type conversion on import, a whole column at a time.

Source fields are matched to layer columns by an explicit ``mapping``
(``{"src_field": "dst_column"}``) and otherwise by case-insensitive name. Each
matched column is converted to its column type (integer, float, boolean, text,
date, datetime, JSON); values that do not convert become per-row errors.
Datetimes without an offset are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Float, Integer, String

from twin.catalog import LayerSpec
from twin.errors import InvalidParameter

TRUE = {"true", "t", "yes", "y", "1", "on", "是", "真"}
FALSE = {"false", "f", "no", "n", "0", "off", "否", "假"}
INT32 = 2**31 - 1


@dataclass
class FieldPlan:
    """How source fields become layer columns."""

    matches: dict[str, str]  # source field → column
    skipped: list[str]  # source fields not loaded
    missing_required: list[str]  # NOT NULL columns no source field feeds (and without a default)
    defaults: dict[str, Any] = field(default_factory=dict)  # column → value filled in for every row


def plan_fields(source_fields: list[str], spec: LayerSpec, mapping: dict[str, str] | None) -> FieldPlan:
    columns = {c.name: c for c in spec.table.columns if c.name != "geom"}
    by_lower_src = {f.lower(): f for f in source_fields}
    matches: dict[str, str] = {}
    for src, dst in (mapping or {}).items():
        real = src if src in source_fields else by_lower_src.get(src.lower())
        if real is None:
            raise InvalidParameter(f"mapping names source field {src!r}, which the file does not have",
                                   detail={"source_fields": source_fields})
        if dst not in columns:
            raise InvalidParameter(f"mapping target {dst!r} is not a column of layer {spec.id!r}",
                                   detail={"columns": sorted(columns)})
        if dst in matches.values():
            raise InvalidParameter(f"two source fields are mapped to column {dst!r}")
        matches[real] = dst
    taken = set(matches.values())
    lower_cols = {name.lower(): name for name in columns if name != "id"}
    skipped: list[str] = []
    for f in source_fields:
        if f in matches:
            continue
        col = lower_cols.get(f.lower())
        if col is not None and col not in taken:
            matches[f] = col
            taken.add(col)
        else:
            skipped.append(f)
    defaults: dict[str, Any] = {}
    missing: list[str] = []
    for name, column in columns.items():
        if name == "id" or name in taken or column.nullable:
            continue
        default = getattr(column.default, "arg", None) if column.default is not None else None
        if default is not None and not callable(default):
            defaults[name] = default
        else:
            missing.append(name)
    return FieldPlan(matches=matches, skipped=skipped, missing_required=missing, defaults=defaults)


def convert_column(values: np.ndarray, col: Column) -> tuple[list[Any], dict[int, str]]:
    """Convert one source column to ``col``'s type: (python values with None for null, row errors)."""
    t = col.type
    if isinstance(t, Boolean):
        out, errors = _to_bool(values)
    elif isinstance(t, Integer):
        out, errors = _to_number(values, integer=True)
    elif isinstance(t, Float):
        out, errors = _to_number(values, integer=False)
    elif isinstance(t, DateTime):
        out, errors = _per_value(values, _parse_datetime)
    elif isinstance(t, Date):
        out, errors = _per_value(values, _parse_date)
    elif isinstance(t, JSON):
        out, errors = _per_value(values, _parse_json)
    else:
        out, errors = _to_text(values, getattr(t, "length", None) if isinstance(t, String) else None)
    return out, {i: f"{col.name}: {msg}" for i, msg in errors.items()}


def _nulls(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "M":
        return np.isnat(values)
    if values.dtype.kind == "O":
        return np.fromiter((v is None or (isinstance(v, str) and not v.strip()) or
                            (isinstance(v, float) and math.isnan(v)) for v in values), bool, len(values))
    return np.zeros(len(values), dtype=bool)


def _with_nulls(out: list[Any], null: np.ndarray) -> list[Any]:
    for i in np.flatnonzero(null):
        out[i] = None
    return out


def _to_number(values: np.ndarray, *, integer: bool) -> tuple[list[Any], dict[int, str]]:
    kind = values.dtype.kind
    if kind in "iub":
        arr = values.astype(np.int64)
        errors: dict[int, str] = {}
        if integer:
            for i in np.flatnonzero(np.abs(arr) > INT32):
                errors[int(i)] = f"{arr[i]} is out of range for an integer"
            return arr.tolist(), errors
        return arr.astype(np.float64).tolist(), errors
    if kind == "f":
        null = np.isnan(values)
        bad = ~null & ~np.isfinite(values)
        errors = {int(i): f"{values[i]} is not a finite number" for i in np.flatnonzero(bad)}
        if integer:
            filled = np.where(null | bad, 0.0, values)
            frac = filled != np.floor(filled)
            errors.update({int(i): f"{values[i]!r} is not a whole number" for i in np.flatnonzero(frac)})
            big = np.abs(filled) > INT32
            errors.update({int(i): f"{values[i]!r} is out of range for an integer" for i in np.flatnonzero(big)})
            return _with_nulls(filled.astype(np.int64).tolist(), null), errors
        return _with_nulls(values.tolist(), null), errors
    return _per_value(values, _parse_int if integer else _parse_float)


def _parse_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, np.integer)):
        n = int(v)
    else:
        s = str(v).strip().replace(",", "")
        try:
            n = int(s)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise ValueError(f"{v!r} is not an integer") from None
            if not math.isfinite(f) or f != math.floor(f):
                raise ValueError(f"{v!r} is not a whole number") from None
            n = int(f)
    if abs(n) > INT32:
        raise ValueError(f"{v!r} is out of range for an integer")
    return n


def _parse_float(v: Any) -> float:
    try:
        f = float(str(v).strip().replace(",", "")) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{v!r} is not a number") from None
    if not math.isfinite(f):
        raise ValueError(f"{v!r} is not a finite number")
    return f


def _to_bool(values: np.ndarray) -> tuple[list[Any], dict[int, str]]:
    if values.dtype.kind == "b":
        return values.tolist(), {}
    return _per_value(values, _parse_bool)


def _parse_bool(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1):
        return bool(v)
    s = str(v).strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    raise ValueError(f"{v!r} is not a boolean (true/false, yes/no, 1/0, 是/否)")


def _to_text(values: np.ndarray, length: int | None) -> tuple[list[Any], dict[int, str]]:
    out, errors = _per_value(values, _text)
    if length:
        for i, v in enumerate(out):
            if v is not None and len(v) > length:
                errors[i] = f"{v[:20]!r}… is longer than {length} characters"
    return out, errors


def _text(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (list, dict, np.ndarray)):
        return json.dumps(v.tolist() if isinstance(v, np.ndarray) else v, ensure_ascii=False)
    return str(v).strip()


def _parse_datetime(v: Any) -> dt.datetime:
    if isinstance(v, np.datetime64):
        v = str(v)
    if isinstance(v, dt.datetime):
        parsed = v
    else:
        s = str(v).strip().replace("/", "-")
        try:
            parsed = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{v!r} is not a date-time (ISO 8601, e.g. 2024-05-01T08:30:00+08:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_date(v: Any) -> dt.date:
    if isinstance(v, np.datetime64):
        v = str(v)[:10]
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    s = str(v).strip().replace("/", "-")
    try:
        return dt.date.fromisoformat(s[:10]) if len(s) >= 10 else dt.date.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None


def _parse_json(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, dict)):
        return v
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            raise ValueError(f"{v[:40]!r} is not valid JSON (e.g. [\"a\", \"b\"] or {{\"k\": 1}})") from None
    raise ValueError(f"{v!r} is not a JSON list or object")


def _per_value(values: np.ndarray, parse: Any) -> tuple[list[Any], dict[int, str]]:
    null = _nulls(values)
    out: list[Any] = [None] * len(values)
    errors: dict[int, str] = {}
    for i in np.flatnonzero(~null):
        try:
            out[i] = parse(values[i])
        except ValueError as exc:
            errors[int(i)] = str(exc)
    return out, errors


def null_mask(values: list[Any]) -> np.ndarray:
    return np.fromiter((v is None for v in values), bool, len(values))
