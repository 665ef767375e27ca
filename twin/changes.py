"""Content versions by place: which edits touch a tile, from the database's change log.

The triggers of migration 0006 (:mod:`twin.versioning`) write one ``change_log`` row
per changed feature (its lon/lat extent; an update that moves a feature gives its
old and its new place) or one whole-layer row for bulk loads, replaces and
TRUNCATE, each with the layer version the change produced. This module reads the
log and answers the one question caches ask:

    key(layers, bounds, zoom) -> str

"what is the newest change of each of these layers that touches these bounds". A
cached product (vector tile, heat raster tile, 3D tile content) keyed on it stays
valid until an edit lands inside its bounds, whoever made the edit.

How the answer stays cheap (a few dictionary look-ups per layer):

* Each change is indexed on the Web Mercator tile pyramid. For every zoom up to its
  *native zoom* (the deepest zoom ≤ :data:`EXACT_MAX_ZOOM` at which its extent, grown
  by the tile buffer, still spans at most 3 tiles a side) the tiles it touches get
  ``max(version)`` (``exact``). Deeper tiles are answered through their ancestor at the
  change's native zoom (``deep``), which is conservative: a tile inside that ancestor
  may be invalidated by a change just outside it, never the other way round.
* Tiles are grown by :data:`BUFFER_FRACTION` of their width (the MVT buffer), so an
  edit just outside a tile that still reaches into its buffer changes the tile.
* Whole-layer changes set the layer's *floor*: every tile of the layer keys at least
  on it.

Keys only ever grow for a given place: compaction (:func:`compact`) merges old rows
into fewer, larger ones carrying the newest version of the group, so a compacted log
invalidates a little more, never less. Every worker reading the same log computes
the same keys (shared Redis tier, ETags behind a load balancer).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from twin.schema import ChangeLogEntry, ChangeLogState

log = logging.getLogger("twin.changes")

BBox = tuple[float, float, float, float]
#: Tiles are grown by this share of their width when matched against changes (MVT
#: buffer 64 of extent 4096). Products with a wider margin must pass coarser bounds.
BUFFER_FRACTION = 64 / 4096
#: Deepest zoom indexed exactly; deeper tiles are answered through their ancestors.
EXACT_MAX_ZOOM = 20
#: Most tiles a side a change may span at its native zoom.
_NATIVE_SPAN = 3
#: How long the change feed remembers when it learned of each version (s); stale-while-revalidate
#: bounds shorter than this are exact.
LEARNED_KEEP_S = 120.0
#: Largest number of tiles :meth:`ChangeIndex.versions` looks at for arbitrary bounds.
_MAX_COVER = 16
_MAX_LAT = 85.0511287798066
_GENERATIONS = itertools.count(1)


def _u(lon: float) -> float:
    return min(max((lon + 180.0) / 360.0, 0.0), 1.0)


def _v(lat: float) -> float:
    lat = max(-_MAX_LAT, min(_MAX_LAT, lat))
    return (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0


def _span(lo: float, hi: float, z: int, grow: float) -> tuple[int, int]:
    """Tile indices at zoom ``z`` whose cells, grown by ``grow`` of their width, meet [lo, hi] (0..1)."""
    n = 1 << z
    b = grow / n
    first = math.ceil((lo - b) * n - 1e-9) - 1
    last = math.floor((hi + b) * n + 1e-9)
    return max(first, 0), min(last, n - 1)


def row_box(minx: float | None, miny: float | None, maxx: float | None, maxy: float | None,
            mbr: bytes | None) -> BBox | None:
    """The lon/lat extent of a ``change_log`` row: its four numbers (PostgreSQL, compacted rows) or
    its ``mbr`` bytes (SQLite: the endianness byte of the SpatiaLite blob, then four doubles);
    ``None`` for a whole-layer row."""
    if minx is not None:
        return (minx, miny, maxx, maxy)  # type: ignore[return-value]
    if mbr is not None and len(mbr) == 33:
        return struct.unpack("<4d" if mbr[0] == 1 else ">4d", bytes(mbr[1:]))
    return None


def _pack(z: int, x: int, y: int) -> int:
    return (z << 50) | (x << 25) | y


@dataclass
class _LayerIndex:
    floor: int = 0
    exact: dict[int, int] = field(default_factory=dict)
    deep: dict[int, int] = field(default_factory=dict)
    deep_zooms: list[int] = field(default_factory=list)
    rows: int = 0

    def add(self, version: int, box: BBox | None) -> None:
        self.rows += 1
        if box is None:
            self.floor = max(self.floor, version)
            return
        u0, u1 = _u(box[0]), _u(box[2])
        v0, v1 = _v(box[3]), _v(box[1])
        exact = self.exact
        native = 0
        for z in range(EXACT_MAX_ZOOM + 1):
            x0, x1 = _span(u0, u1, z, BUFFER_FRACTION)
            y0, y1 = _span(v0, v1, z, BUFFER_FRACTION)
            if z > 0 and (x1 - x0 >= _NATIVE_SPAN or y1 - y0 >= _NATIVE_SPAN):
                break
            native = z
            for x in range(x0, x1 + 1):
                for y in range(y0, y1 + 1):
                    k = _pack(z, x, y)
                    if exact.get(k, 0) < version:
                        exact[k] = version
        x0, x1 = _span(u0, u1, native, BUFFER_FRACTION)
        y0, y1 = _span(v0, v1, native, BUFFER_FRACTION)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                k = _pack(native, x, y)
                if self.deep.get(k, 0) < version:
                    self.deep[k] = version
        if native not in self.deep_zooms:
            self.deep_zooms = sorted({*self.deep_zooms, native})

    def version(self, z: int, x: int, y: int) -> int:
        best = self.floor
        if z <= EXACT_MAX_ZOOM:
            v = self.exact.get(_pack(z, x, y), 0)
            if v > best:
                best = v
        for zd in self.deep_zooms:
            if zd >= z:
                break
            shift = z - zd
            v = self.deep.get(_pack(zd, x >> shift, y >> shift), 0)
            if v > best:
                best = v
        return best


class ChangeIndex:
    """The change log indexed on the tile pyramid; answers "newest change touching here"."""

    def __init__(self) -> None:
        self._layers: dict[str, _LayerIndex] = {}
        #: moves whenever a change is added (unique across indexes), so callers can memoise keys
        self.generation = next(_GENERATIONS)

    @property
    def rows(self) -> int:
        """Log rows indexed (what compaction bounds)."""
        return sum(li.rows for li in self._layers.values())

    def add(self, layer: str, version: int, box: BBox | None) -> None:
        """Index one change: ``box`` lon/lat (west, south, east, north), ``None`` = the whole layer."""
        li = self._layers.get(layer)
        if li is None:
            li = self._layers[layer] = _LayerIndex()
        li.add(int(version), box)
        self.generation = next(_GENERATIONS)

    def tile_version(self, layer: str, z: int, x: int, y: int) -> int:
        """Newest change of ``layer`` touching XYZ tile ``z/x/y`` (grown by the tile buffer); 0 if none."""
        li = self._layers.get(layer)
        return 0 if li is None else li.version(z, x, y)

    def tile_versions(self, layers: Iterable[str], z: int, x: int, y: int) -> dict[str, int]:
        return {name: self.tile_version(name, z, x, y) for name in layers}

    def versions(self, layers: Iterable[str], bounds: BBox, zoom: int) -> dict[str, int]:
        """Newest change per layer touching lon/lat ``bounds``, looked up on the tiles of ``zoom``
        that cover them (a coarser zoom when that would be more than 16 tiles)."""
        u0, u1 = _u(bounds[0]), _u(bounds[2])
        v0, v1 = _v(bounds[3]), _v(bounds[1])
        z = max(0, min(int(zoom), 30))
        while True:
            x0, x1 = _span(u0, u1, z, 0.0)
            y0, y1 = _span(v0, v1, z, 0.0)
            if z == 0 or (x1 - x0 + 1) * (y1 - y0 + 1) <= _MAX_COVER:
                break
            z -= 1
        cover = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        return {name: max(self.tile_version(name, *t) for t in cover) for name in layers}

    def key(self, layers: Iterable[str], bounds: BBox, zoom: int) -> str:
        """Content version of ``layers`` inside lon/lat ``bounds`` at detail ``zoom``, as a short
        string for cache keys and ETags; it changes when, and only when, an edit touches the bounds
        (or the whole layer). Callers add their own address and encoding to it."""
        return ",".join(f"{n}.{v}" for n, v in self.versions(layers, bounds, zoom).items())


def key(index: ChangeIndex, layers: Iterable[str], bounds: BBox, zoom: int) -> str:
    """Module-level spelling of :meth:`ChangeIndex.key`."""
    return index.key(layers, bounds, zoom)


class ChangeFeed:
    """Keeps a :class:`ChangeIndex` up to date from the database, incrementally.

    :meth:`refresh` reads ``layer_versions`` and, for each layer whose version moved,
    only the log rows above the version seen last. That is complete: the triggers
    bump the version and write the rows in one transaction, and concurrent writers
    of one layer serialise on its ``layer_versions`` row, so versions commit in order.
    A compaction (new ``generation``) makes the next refresh reload the whole log.
    """

    def __init__(self, engine: Engine, *, max_rows: int = 20_000):
        self.engine = engine
        self.max_rows = max_rows
        self.index = ChangeIndex()
        self._seen: dict[str, int] = {}
        self._generation: int | None = None
        self._lock = threading.Lock()
        self._compacted_at = 0.0
        # per layer: versions seen (ascending) and when this process learned of each (monotonic s);
        # what a stale-while-revalidate cache needs to bound the age of what it serves
        self._learned: dict[str, tuple[list[int], list[float]]] = {}
        self._forgot: dict[str, int] = {}
        self._read_started: float | None = None
        self.learning_since = 0.0
        #: called with ``(layer, box)`` for each new change (box ``None`` = whole layer), and with
        #: ``(None, None)`` after a reload, when any place may have a new key
        self.listeners: list[Callable[[str | None, BBox | None], None]] = []
        #: as :attr:`listeners`, with a third argument: ``False`` when the change is an update of
        #: attributes only (``change_log.shape = 0``: the geometry is the same), else ``True``
        self.edit_listeners: list[Callable[[str | None, BBox | None, bool], None]] = []

    def refresh(self) -> dict[str, int]:
        """Bring the index up to date; the current data version of every layer."""
        with self._lock, self.engine.connect() as conn:
            started = time.monotonic()
            # a change first seen now committed after the previous read began: date it from then
            # (the earliest it can have been visible), so ages computed from it are never too small
            now = self._read_started if self._read_started is not None else started
            #: while listeners are called: the earliest moment the changes they hear of can have committed
            self.learning_since = now
            versions = {k: int(v) for k, v in conn.execute(text("SELECT layer, version FROM layer_versions")).all()}
            generation = conn.execute(select(ChangeLogState.generation).where(ChangeLogState.id == 1)).scalar()
            if generation is None:  # database older than migration 0006: no log, layer versions only
                index = ChangeIndex()
                for name, v in versions.items():
                    index.add(name, v, None)
                self.index = index
                return versions
            if generation != self._generation:
                first = self._generation is None
                self.index = self._load_all(conn)
                self._generation = generation
                for name, v in versions.items():
                    if v > self._seen.get(name, 0):
                        self._learn(name, v, now)
                self._seen = dict(versions)
                if not first:
                    self._notify(None, None, True)
            else:
                for name, v in versions.items():
                    if v > self._seen.get(name, 0):
                        self._read_layer(conn, name, self._seen.get(name, 0))
                        self._seen[name] = v
                        self._learn(name, v, now)
            self._read_started = started
        if self.index.rows > self.max_rows and time.monotonic() - self._compacted_at > 60:
            self._compacted_at = time.monotonic()
            try:
                compact(self.engine, keep=self.max_rows // 2)
            except Exception:  # a failed compaction only leaves the log longer
                log.exception("change log compaction failed")
        return versions

    def _learn(self, layer: str, version: int, at: float) -> None:
        """Note that versions up to ``version`` of ``layer`` were learned at ``at``; forget notes
        older than :data:`LEARNED_KEEP_S`."""
        vs, ts = self._learned.setdefault(layer, ([], []))
        vs.append(version)
        ts.append(at)
        cut = bisect.bisect_left(ts, at - LEARNED_KEEP_S)
        if cut:
            self._forgot[layer] = vs[cut - 1]
            del vs[:cut], ts[:cut]

    def learned_after(self, layer: str, version: int) -> float | None:
        """The earliest moment (monotonic s) the first version of ``layer`` newer than ``version``
        can have committed — the start of the read of the log before the one that saw it: from
        then on, content keyed on ``version`` may be stale. ``None`` when no newer version is
        known; ``-inf`` when it was longer ago than :data:`LEARNED_KEEP_S`."""
        if version < self._forgot.get(layer, 0):
            return -math.inf
        learned = self._learned.get(layer)
        if learned is None:
            return None
        i = bisect.bisect_right(learned[0], version)
        return learned[1][i] if i < len(learned[1]) else None

    @staticmethod
    def _rows_into(index: ChangeIndex, rows: Sequence) -> list[tuple[str, BBox | None, bool]]:  # noqa: ANN001
        out = []
        for layer, version, minx, miny, maxx, maxy, mbr, shape in rows:
            box = row_box(minx, miny, maxx, maxy, mbr)
            index.add(layer, version, box)
            out.append((layer, box, shape != 0))
        return out

    def _load_all(self, conn: Connection) -> ChangeIndex:
        t = ChangeLogEntry.__table__
        index = ChangeIndex()
        self._rows_into(index, conn.execute(
            select(t.c.layer, t.c.version, t.c.minx, t.c.miny, t.c.maxx, t.c.maxy, t.c.mbr, t.c.shape)
            .order_by(t.c.id)).all())
        return index

    def _read_layer(self, conn: Connection, layer: str, above: int) -> None:
        t = ChangeLogEntry.__table__
        rows = conn.execute(
            select(t.c.layer, t.c.version, t.c.minx, t.c.miny, t.c.maxx, t.c.maxy, t.c.mbr, t.c.shape)
            .where(t.c.layer == layer, t.c.version > above)
        ).all()
        for name, box, shape in self._rows_into(self.index, rows):
            self._notify(name, box, shape)

    def _notify(self, layer: str | None, box: BBox | None, shape: bool) -> None:
        for fn in list(self.listeners):
            try:
                fn(layer, box)
            except Exception:  # a listener's failure must not stop the feed
                log.exception("change listener failed")
        for efn in list(self.edit_listeners):
            try:
                efn(layer, box, shape)
            except Exception:
                log.exception("change listener failed")


def compact(engine: Engine, *, keep: int = 10_000, cell_zoom: int = 14) -> int:
    """Shrink the change log, keeping every key's meaning (keys can only grow).

    The newest ``keep`` rows stay as they are. Of the older ones, whole-layer rows
    collapse to the newest per layer (and make older rows of that layer redundant);
    extent rows merge per layer and per Web Mercator cell of ``cell_zoom`` (about
    2 km at z14) into one row with the union extent and the newest version. Bumps
    the generation so every reader reloads. Returns the number of rows removed.
    """
    t: Table = ChangeLogEntry.__table__  # type: ignore[assignment]
    with engine.begin() as conn:
        state = select(ChangeLogState.generation).where(ChangeLogState.id == 1)
        if conn.dialect.name == "postgresql":
            state = state.with_for_update()  # one compactor at a time
        conn.execute(state)
        boundary = conn.execute(select(t.c.id).order_by(t.c.id.desc()).offset(keep).limit(1)).scalar()
        if boundary is None:
            return 0
        raw = conn.execute(
            select(t.c.id, t.c.layer, t.c.version, t.c.minx, t.c.miny, t.c.maxx, t.c.maxy, t.c.mbr)
            .where(t.c.id <= boundary)
        ).all()
        old = [(r[0], r[1], r[2], row_box(*r[3:])) for r in raw]
        floors: dict[str, int] = {}
        for _, layer, version, box in old:
            if box is None:
                floors[layer] = max(floors.get(layer, 0), version)
        merged: dict[tuple[str, int, int], list[float]] = {}
        n = 1 << cell_zoom
        for _, layer, version, box in old:
            if box is None or version <= floors.get(layer, 0):
                continue
            minx, miny, maxx, maxy = box
            cx = int(_u((minx + maxx) / 2) * n)
            cy = int(_v((miny + maxy) / 2) * n)
            m = merged.get((layer, cx, cy))
            if m is None:
                merged[(layer, cx, cy)] = [version, minx, miny, maxx, maxy]
            else:
                m[0] = max(m[0], version)
                m[1], m[2] = min(m[1], minx), min(m[2], miny)
                m[3], m[4] = max(m[3], maxx), max(m[4], maxy)
        conn.execute(delete(t).where(t.c.id <= boundary))
        rows: list[dict[str, object]] = [{"layer": layer, "version": v, "minx": None, "miny": None, "maxx": None, "maxy": None}
                for layer, v in floors.items()]
        rows += [{"layer": layer, "version": int(m[0]), "minx": m[1], "miny": m[2], "maxx": m[3], "maxy": m[4]}
                 for (layer, _, _), m in merged.items()]
        if rows:
            conn.execute(insert(t), rows)
        conn.execute(update(ChangeLogState).where(ChangeLogState.id == 1)
                     .values(generation=ChangeLogState.generation + 1))
        removed = len(old) - len(rows)
    log.info("change log compacted: %d old rows into %d", len(old), len(rows))
    return removed


__all__ = ["BUFFER_FRACTION", "EXACT_MAX_ZOOM", "ChangeFeed", "ChangeIndex", "compact", "key"]
