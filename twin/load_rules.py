"""Defaults, generated codes and derived columns on load (issue 12).

Real data rarely has every column a layer needs: OpenStreetMap buildings carry
``building:levels`` or ``height`` (as text, "12 m") or nothing; survey pipes
have no length. This module fills the gaps in a documented order, counting every
value it made so the load report can say so:

1. **parse** — lenient per-column parsers named in the layer rules (``length``:
   "12 m", "12.5", "40 ft", "12米"; ``levels``: "5", "5;6", "三层", "12F"). Text
   they rewrite is counted in ``converted``; text they cannot read is left for
   the type conversion to reject, as any bad value;
2. **derive** — per-layer rules (``twin/presets/_rules.json``): floors from
   height ÷ storey height, height from floors × storey height
   (``TWIN_STOREY_HEIGHT_M``), a pipe's length and a parcel's area from the
   geometry. Only empty cells are filled;
3. **defaults** — ``--set col=value`` fills what is still empty, then the
   derivations run once more (height from a defaulted floor count);
4. **codes** — ``--code-from FIELD`` or ``--code-pattern 'B-{id:06d}'`` fill empty codes.

Rules and parsers are data: :data:`RULES` maps a layer to ``{"parse": {col:
parser}, "derive": [{"column", "rule"}]}``; the rule names map to the functions
in :data:`DERIVATIONS`.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Geod

from twin.errors import InvalidParameter

_RULES_FILE = Path(__file__).parent / "presets" / "_rules.json"
RULES: dict[str, dict[str, Any]] = json.loads(_RULES_FILE.read_text(encoding="utf-8"))

_GEOD = Geod(ellps="WGS84")

# --- lenient parsers ---------------------------------------------------------------

_UNITS = {"": 1.0, "m": 1.0, "米": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
          "cm": 0.01, "厘米": 0.01, "mm": 0.001, "毫米": 0.001, "km": 1000.0,
          "ft": 0.3048, "feet": 0.3048, "foot": 0.3048, "'": 0.3048}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_LENGTH_RE = re.compile(rf"^\s*({_NUMBER})\s*([a-zA-Z'米厘毫]*)\s*$")
_FEET_INCHES_RE = re.compile(r"^\s*(\d+)\s*'\s*(\d+(?:\.\d+)?)\s*\"\s*$")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_LEVELS_RE = re.compile(rf"^\s*({_NUMBER})\s*(?:层|樓|楼|f|fl|floors?|levels?|storeys?|stories)?\s*$", re.I)


def parse_length(value: Any) -> float | None:
    """A length in metres from ``12``, ``"12.5"``, ``"12 m"``, ``"12米"``, ``"40 ft"``, ``"4'6\\""``; None if unreadable."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        f = float(value)
        return f if math.isfinite(f) else None
    s = str(value).strip().replace(",", ".")
    m = _FEET_INCHES_RE.match(s)
    if m:
        return round(int(m.group(1)) * 0.3048 + float(m.group(2)) * 0.0254, 3)
    m = _LENGTH_RE.match(s)
    if not m:
        return None
    unit = _UNITS.get(m.group(2).lower())
    if unit is None:
        return None
    f = float(m.group(1)) * unit
    return f if math.isfinite(f) else None


def chinese_number(text: str) -> int | None:
    """0–999 written in Chinese numerals (``三``, ``十二``, ``二十``, ``一百零五``); None otherwise."""
    if not text or any(ch not in _CN_DIGITS and ch not in "十百" for ch in text):
        return None
    total, current = 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        else:  # 百
            total += (current or 1) * 100
            current = 0
    return total + current


def parse_levels(value: Any) -> int | None:
    """A storey count from ``5``, ``"5"``, ``"5.0"``, ``"5;6"`` (OSM: the larger), ``"三层"``, ``"12F"``; None if unreadable.

    Fractions round up (a 2.5-storey house has three levels to draw); negative
    or zero counts are unreadable.
    """
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        f = float(value)
        return int(math.ceil(f)) if math.isfinite(f) and 0 < f < 1000 else None
    s = str(value).strip()
    if ";" in s:
        parts = [parse_levels(p) for p in s.split(";")]
        good = [p for p in parts if p is not None]
        return max(good) if good else None
    m = _LEVELS_RE.match(s)
    if m:
        f = float(m.group(1))
        return int(math.ceil(f)) if 0 < f < 1000 else None
    n = chinese_number(s.removesuffix("层").removesuffix("楼").removesuffix("樓").strip())
    return n if n and n < 1000 else None


_DIAMETER_RE = re.compile(rf"^\s*(?:DN|De|D|Φ|φ|Ø|ø)?\s*({_NUMBER})\s*(?:mm|毫米)?\s*"
                          rf"(?:[xX×*]\s*({_NUMBER})\s*(?:mm|毫米)?)?\s*$")


def parse_diameter(value: Any) -> float | None:
    """A pipe size in millimetres from ``300``, ``"DN300"``, ``"Φ300"``, ``"300mm"``, ``"300X200"`` (the larger side)."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        f = float(value)
        return f if math.isfinite(f) and f > 0 else None
    m = _DIAMETER_RE.match(str(value))
    if not m:
        return None
    sizes = [float(g) for g in m.groups() if g is not None]
    best = max(sizes)
    return best if math.isfinite(best) and best > 0 else None


PARSERS: dict[str, Callable[[Any], Any]] = {"length": parse_length, "levels": parse_levels,
                                            "diameter": parse_diameter}


def parse_column(values: np.ndarray, parser: str) -> tuple[np.ndarray, list[int]]:
    """Apply a named lenient parser to the text cells of a source column: (new array, rows it rewrote).

    Numbers pass through untouched. Text it reads ("12 m", "三层") becomes a
    number and its row is listed; text it cannot read is left as it was, so the
    type conversion after it rejects the row with its usual message.
    """
    fn = PARSERS[parser]
    if values.dtype != object:
        return values, []
    out = values.copy()
    rewritten: list[int] = []
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            continue
        parsed = fn(v)
        if parsed is None:
            continue
        try:
            plain = float(v.strip())
        except ValueError:
            plain = None
        if plain is None or plain != parsed:
            rewritten.append(i)
        out[i] = parsed
    return out, rewritten


# --- derivations ---------------------------------------------------------------------


@dataclass
class Context:
    """What a derivation may read: the columns so far, the lon/lat geometries, the storey height."""

    columns: dict[str, list[Any]]
    geoms: np.ndarray
    storey_height_m: float
    mapped: frozenset[str] = frozenset()  # columns a source field feeds


def _column(ctx: Context, name: str, rows: np.ndarray) -> list[Any]:
    values = ctx.columns.get(name)
    return [None] * len(rows) if values is None else [values[i] for i in rows.tolist()]


def _floors_from_height(ctx: Context, rows: np.ndarray) -> list[Any]:
    return [None if h is None or h <= 0 else max(1, round(h / ctx.storey_height_m))
            for h in _column(ctx, "height_m", rows)]


def _height_from_floors(ctx: Context, rows: np.ndarray) -> list[Any]:
    return [None if f is None or f <= 0 else round(f * ctx.storey_height_m, 2) for f in _column(ctx, "floors", rows)]


def _geodesic_length(ctx: Context, rows: np.ndarray) -> list[Any]:
    return [None if g is None else round(abs(_GEOD.geometry_length(g)), 2) for g in ctx.geoms[rows]]


def _geodesic_area(ctx: Context, rows: np.ndarray) -> list[Any]:
    return [None if g is None else round(abs(_GEOD.geometry_area_perimeter(g)[0]), 1) for g in ctx.geoms[rows]]


#: rule name → function(context, row indices with an empty cell) → one value (or None) per row
DERIVATIONS: dict[str, Callable[[Context, np.ndarray], list[Any]]] = {
    "floors_from_height": _floors_from_height,
    "height_from_floors": _height_from_floors,
    "geodesic_length": _geodesic_length,
    "geodesic_area": _geodesic_area,
}


@dataclass
class FillCounts:
    """What filling made, per column: derived by a rule, defaulted by ``--set``, text read by a lenient parser."""

    derived: dict[str, int] = field(default_factory=dict)
    defaulted: dict[str, int] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)
    converted_examples: list[dict[str, Any]] = field(default_factory=list)


def derive(layer: str, ctx: Context, n: int, counts: FillCounts) -> None:
    """Run the layer's derivation rules over empty cells, in the order the rules list them."""
    for rule in RULES.get(layer, {}).get("derive", []):
        col, fn = rule["column"], DERIVATIONS[rule["rule"]]
        if rule.get("unless_mapped") and col in ctx.mapped:
            continue
        values = ctx.columns.setdefault(col, [None] * n)
        empty = np.flatnonzero(np.fromiter((v is None for v in values), bool, n))
        made = 0
        if len(empty):
            for i, v in zip(empty.tolist(), fn(ctx, empty), strict=True):
                if v is not None:
                    values[i] = v
                    made += 1
        if made:
            counts.derived[col] = counts.derived.get(col, 0) + made


def apply_defaults(defaults: dict[str, Any], columns: dict[str, list[Any]], n: int, counts: FillCounts) -> None:
    """Fill empty cells of each column in ``defaults`` with its (already typed) value."""
    for col, value in defaults.items():
        values = columns.setdefault(col, [None] * n)
        made = 0
        for i in range(n):
            if values[i] is None:
                values[i] = value
                made += 1
        if made:
            counts.defaulted[col] = counts.defaulted.get(col, 0) + made


class _Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def check_code_pattern(pattern: str, fields: list[str]) -> None:
    """Refuse a pattern naming a field the file does not have (``n`` and ``id`` always exist)."""
    try:
        parts = [(f, spec) for _, f, spec, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise InvalidParameter(f"code pattern {pattern!r} is malformed: {exc}") from None
    if any("{" in (spec or "") for _, spec in parts):
        raise InvalidParameter(f"code pattern {pattern!r}: no fields inside a format spec")
    names = [f for f, _ in parts]
    if not names:
        raise InvalidParameter(f"code pattern {pattern!r} names no field; e.g. 'B-{{n:06d}}' or 'osm-{{osm_id}}'")
    for name in names:
        if "." in name or "[" in name or "!" in name:
            raise InvalidParameter(f"code pattern {pattern!r}: only plain field names, like {{QDDH}} or {{n:06d}}")
        base = name
        if base not in fields and base not in ("n", "id"):
            raise InvalidParameter(f"code pattern {pattern!r} names field {base!r}, which the file does not have",
                                   detail={"source_fields": fields})


def make_codes(pattern: str | None, code_from: str | None, fields: dict[str, np.ndarray], n: int,
               row_offset: int, codes: list[Any], counts: FillCounts) -> dict[int, str]:
    """Fill empty ``codes`` from a source field or a pattern; returns per-row errors (0-based, this batch).

    In a pattern, ``{n}`` is the 1-based row number in the file and ``{id}`` is
    the ``id`` field if the file has one, else ``n``; other names are source fields.
    """
    errors: dict[int, str] = {}
    made = 0
    src = None
    if code_from is not None:
        real = code_from if code_from in fields else {k.lower(): k for k in fields}.get(code_from.lower())
        if real is None:
            raise InvalidParameter(f"--code-from names field {code_from!r}, which the file does not have",
                                   detail={"source_fields": list(fields)})
        src = fields[real]
    used: list[str] = []
    if pattern is not None:
        names = {re.split(r"[.\[]", f, maxsplit=1)[0] for _, f, _, _ in string.Formatter().parse(pattern) if f}
        used = [k for k in fields if k in names]
    for i in range(n):
        if codes[i] is not None:
            continue
        if src is not None:
            v = src[i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            codes[i] = str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)
            made += 1
        elif pattern is not None:
            row = {k: _plain(fields[k][i]) for k in used}
            row["n"] = row_offset + i + 1
            row.setdefault("id", row["n"])
            try:
                codes[i] = pattern.format_map(row)
                made += 1
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                errors[i] = f"code pattern {pattern!r} does not fit this row ({type(exc).__name__}: {exc})"
    if made:
        counts.derived["code"] = counts.derived.get("code", 0) + made
    return errors


def _plain(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        try:  # lets '{osm_id:012d}' format an id that the file stores as text
            return int(v.strip())
        except ValueError:  # digits int() does not take ('²', '0\x1f' whose separator strip() drops)
            return v
    return v


__all__ = ["RULES", "PARSERS", "DERIVATIONS", "FillCounts", "Context", "parse_length", "parse_levels",
           "chinese_number", "parse_diameter", "parse_column", "derive", "apply_defaults", "make_codes", "check_code_pattern"]
