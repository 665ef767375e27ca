"""Place search: find houses, buildings, devices, grids, pipes … by name, address or code.

What a Chinese user expects from a search box: partial matches anywhere in the text
(``张家宅`` finds ``张家宅村03组12号``), no pinyin needed, full-width and half-width
characters alike, ``3组`` = ``03组`` = ``三组``, and codes case-insensitively.

Method: every searchable text is *normalised* (NFKC, lower case, no spaces, Chinese
numerals before a unit word turned into digits and leading zeros dropped there)
and joined, one per line, into one string per index. A query is normalised the same
way and found with a C-speed substring scan (``re.finditer``) over that string; the
match offsets map back to features by binary search. That costs a few milliseconds
for a million characters, needs no database extension (pg_trgm, FTS5) and works the
same on both backends. The index is rebuilt when a searched layer's data version
moves.

Ranking: an exact match of the whole field first, then a match at its start, then
anywhere; within a class codes and names before addresses, shorter texts first (the
closer the text is to what was typed), then by layer and id so the order is stable.
"""

from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from sqlalchemy import select

from twin.catalog import get_layer
from twin.errors import InvalidParameter
from twin.store import SpatialStore

#: searchable layers and their text columns, most telling first
SEARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "buildings": ("code", "name", "address"),
    "grids": ("code", "name"),
    "devices": ("code", "name"),
    "cameras": ("code", "name"),
    "pipe_nodes": ("code",),
    "pipelines": ("code",),
    "roads": ("code", "name"),
    "construction_sites": ("code", "name"),
    "evaluation_grids": ("code", "name"),
    "evaluation_points": ("code", "name"),
    "events": ("code", "title"),
    "farmland": ("code", "contract_code"),
    "zones": ("code", "name"),
    "control_lines": ("code", "name"),
}
FIELD_RANK = {"code": 0, "name": 1, "title": 1, "contract_code": 2, "address": 2}

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNIT = "[组號号幢栋楼层室队巷弄单]"  # what a house-number numeral stands before
_CN_NUM = re.compile(rf"([零〇一二两三四五六七八九十百]+)(?={_UNIT})")
_LEADING_ZEROS = re.compile(rf"(?<!\d)0+(?=\d+{_UNIT})")  # 03组 → 3组; codes keep their zeros
_SPACE = re.compile(r"\s+")


def _cn_to_int(s: str) -> int | None:
    """一 → 1, 十二 → 12, 二十 → 20, 三十五 → 35, 一百零八 → 108; ``None`` if not a plain numeral."""
    total, current = 0, 0
    for ch in s:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def normalise(text: str) -> str:
    """The form texts and queries are compared in (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _SPACE.sub("", t)
    t = _CN_NUM.sub(lambda m: str(v) if (v := _cn_to_int(m.group(1))) is not None else m.group(1), t)
    return _LEADING_ZEROS.sub("", t)


@dataclass(frozen=True)
class SearchHit:
    layer: str
    id: int
    field: str
    text: str
    match: str  # exact | prefix | contains
    label: str
    code: str | None
    point: tuple[float, float] | None  # lon/lat of a point on the feature


@dataclass
class SearchIndex:
    """Normalised texts of one set of layers, joined for substring scans (see module docstring)."""

    blob: str
    starts: list[int]
    layer: list[str]
    ids: list[int]
    field: list[str]
    text: list[str]
    norm: list[str]
    label: list[str]
    code: list[str | None]
    points: dict[tuple[str, int], tuple[float, float]]

    @classmethod
    def build(cls, rows: Sequence[tuple[str, int, str, str, str, str | None]],
              points: dict[tuple[str, int], tuple[float, float]]) -> SearchIndex:
        """``rows``: (layer, id, field, text, label, code) per searchable text."""
        layer, ids, field, text, norm, label, code, starts = [], [], [], [], [], [], [], []
        pos = 0
        for lay, fid, fld, txt, lab, cd in rows:
            n = normalise(txt)
            if not n:
                continue
            layer.append(lay)
            ids.append(fid)
            field.append(fld)
            text.append(txt)
            norm.append(n)
            label.append(lab)
            code.append(cd)
            starts.append(pos)
            pos += len(n) + 1
        return cls("\n".join(norm), starts, layer, ids, field, text, norm, label, code, points)

    def search(self, query: str, limit: int = 20, layers: Sequence[str] | None = None,
               scan_cap: int = 50_000) -> list[SearchHit]:
        q = normalise(query)
        if not q:
            raise InvalidParameter("q must contain something to search for")
        wanted = set(layers) if layers else None
        best: dict[tuple[str, int], tuple[tuple[Any, ...], int]] = {}
        for n, m in enumerate(re.finditer(re.escape(q), self.blob)):
            if n >= scan_cap:  # a one-character query in a big town: the best are exact/prefix anyway
                break
            k = bisect.bisect_right(self.starts, m.start()) - 1
            if wanted is not None and self.layer[k] not in wanted:
                continue
            off = m.start() - self.starts[k]
            cls_ = 0 if off == 0 and len(self.norm[k]) == len(q) else (1 if off == 0 else 2)
            key = (cls_, FIELD_RANK.get(self.field[k], 3), len(self.norm[k]), self.layer[k], self.ids[k])
            fk = (self.layer[k], self.ids[k])
            if fk not in best or key < best[fk][0]:
                best[fk] = (key, k)
        ranked = sorted(best.values())[:limit]
        kinds = ("exact", "prefix", "contains")
        return [SearchHit(self.layer[k], self.ids[k], self.field[k], self.text[k], kinds[key[0]], self.label[k],
                          self.code[k], self.points.get((self.layer[k], self.ids[k])))
                for key, k in ranked]


def load_rows(store: SpatialStore, layers: Sequence[str]) -> tuple[list[tuple[str, int, str, str, str, str | None]],
                                                                     dict[tuple[str, int], tuple[float, float]]]:
    """Searchable texts and a point on each feature (``ST_PointOnSurface``, via WKB) from the store."""
    from sqlalchemy import func

    rows: list[tuple[str, int, str, str, str, str | None]] = []
    points: dict[tuple[str, int], tuple[float, float]] = {}
    with store.engine.connect() as conn:
        for name in layers:
            spec = get_layer(name)
            tbl = spec.table
            fields = SEARCH_FIELDS[spec.id]
            label_cols = [c for c in ("name", "title", "address") if c in tbl.c]
            cols = list(dict.fromkeys([*fields, *label_cols]))
            stmt = select(tbl.c.id, *(tbl.c[c] for c in cols), func.ST_AsBinary(func.ST_PointOnSurface(tbl.c.geom)))
            result = conn.execute(stmt).all()
            if not result:
                continue
            pts = shapely.get_coordinates(shapely.from_wkb([bytes(r[-1]) for r in result]))
            for r, (x, y) in zip(result, pts, strict=True):
                values = dict(zip(cols, r[1:-1], strict=True))
                code = values.get("code")
                label = next((values[c] for c in label_cols if values.get(c)), None) or code or str(r[0])
                points[(spec.id, r[0])] = (float(x), float(y))
                for f in fields:
                    if values.get(f):
                        rows.append((spec.id, r[0], f, str(values[f]), str(label), code))
    return rows, points


class SearchService:
    """One index per store, rebuilt when a searched layer's data version changes."""

    def __init__(self, store: SpatialStore, layers: Sequence[str] = tuple(SEARCH_FIELDS)):
        from twin.analysis.source import VersionClock

        self.store = store
        self.clock = VersionClock(store)
        self.layers = tuple(layers)
        self._index: SearchIndex | None = None
        self._versions: dict[str, int] | None = None
        self._lock = threading.Lock()

    def index(self) -> SearchIndex:
        versions = self.clock.get()
        current = {name: versions.get(name, 0) for name in self.layers}
        with self._lock:
            if self._index is None or current != self._versions:
                rows, points = load_rows(self.store, self.layers)
                self._index, self._versions = SearchIndex.build(rows, points), current
            return self._index

    def search(self, query: str, limit: int = 20, layers: Sequence[str] | None = None) -> list[SearchHit]:
        if layers:
            unknown = [name for name in layers if get_layer(name).id not in SEARCH_FIELDS]
            if unknown:
                raise InvalidParameter(f"layers {unknown} are not searchable", detail={"searchable": list(SEARCH_FIELDS)})
        return self.index().search(query, limit=limit, layers=layers)




__all__ = ["SEARCH_FIELDS", "SearchHit", "SearchIndex", "SearchService", "normalise"]
