"""A layer's rows held in memory and kept current through the database's change log.

Caches built from a whole layer (the pipe networks) must follow its edits. Reading the
whole layer again after every edit costs more than any request may wait, so a
:class:`LayerMirror` asks the change log (:mod:`twin.changes`, filled by the triggers of
every write, whoever makes it) *where* the layer changed since the version it holds,
and re-reads only those places:

* every row of the mirror whose geometry meets a changed extent is dropped, and every
  stored row meeting that extent, grown a little, is read back. An edit
  logs the extents of the old and the new geometry, so a moved, deleted or inserted
  row is always among them; unchanged rows read back replace themselves;
* rows read back identical to the ones dropped (same id, properties and geometry) are
  then left out of the reported change, so callers rebuild only what really changed.

A whole-layer change (bulk load, replace, TRUNCATE), more than :data:`MAX_DELTA_EXTENTS`
extents, or no mirror yet means one full read, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import select

from twin.analysis.source import FeatureSet, _reader, features_in_bbox
from twin.changes import row_box
from twin.dialect import BBox
from twin.schema import ChangeLogEntry
from twin.store import SpatialStore

WORLD: BBox = (-180.0, -90.0, 180.0, 90.0)
#: Beyond this many changed extents one full read is cheaper than many small ones.
MAX_DELTA_EXTENTS = 64
#: Extents are grown by this much (degrees, ≈ 1 cm) before matching the mirror's rows, so
#: float rounding of a logged extent can never leave a changed row out.
GROW_DEG = 1e-7


@dataclass
class Delta:
    """What one refresh changed: rows gone (old values) and rows new (new values).

    An edited row is in both. ``full`` means everything was re-read (no delta known).
    """

    gone: FeatureSet
    new: FeatureSet
    full: bool = False
    #: where the rows read back now stand in :attr:`LayerMirror.rows` when every other row kept its
    #: place (edits and inserts: rows replaced in place, new ones appended); ``None`` when rows moved
    #: (a delete, a full read)
    positions: list[int] | None = None


def concat(layer: str, parts: list[FeatureSet]) -> FeatureSet:
    parts = [p for p in parts if len(p)]
    if not parts:
        return FeatureSet(layer)
    return FeatureSet(layer, [i for p in parts for i in p.ids], [d for p in parts for d in p.properties],
                      np.concatenate([np.asarray(p.geometries, dtype=object) for p in parts]))


def changed_extents(store: SpatialStore, layer: str, since: int) -> list[BBox] | None:
    """Extents of ``layer``'s changes with a version above ``since``; ``None`` when one of them is
    a whole-layer change or there are too many to re-read place by place."""
    t = ChangeLogEntry.__table__
    stmt = (select(t.c.minx, t.c.miny, t.c.maxx, t.c.maxy, t.c.mbr)
            .where(t.c.layer == layer, t.c.version > since).limit(MAX_DELTA_EXTENTS + 1))
    with _reader(store).connect() as conn:
        rows = conn.execute(stmt).all()
    if len(rows) > MAX_DELTA_EXTENTS:
        return None
    boxes = []
    for r in rows:
        box = row_box(r[0], r[1], r[2], r[3], r[4])
        if box is None:
            return None
        boxes.append(box)
    return boxes


class LayerMirror:
    """All rows of one layer (at most ``cap``), refreshed from the change log (see module docstring)."""

    def __init__(self, store: SpatialStore, layer: str, cap: int):
        self.store = store
        self.layer = layer
        self.cap = cap
        self.version: int | None = None
        self.rows = FeatureSet(layer)
        self._index: dict[int, int] = {}  # row id → position in rows
        self._bounds = np.zeros((0, 4))  # each row's lon/lat bounds

    def refresh(self, version: int) -> Delta | None:
        """Bring the mirror to ``version`` (the layer's current data version); ``None`` if it already was."""
        if self.version == version:
            return None
        boxes = None  # a first read, or versions going back (a rebuilt database): read everything
        if self.version is not None and version > self.version:
            boxes = changed_extents(self.store, self.layer, self.version)
        if boxes is None:
            old, self.rows = self.rows, features_in_bbox(self.store, self.layer, WORLD, cap=self.cap)
            self._reindex()
            self.version = version
            return Delta(old, self.rows, full=True)
        old = self.rows
        bounds = self._bounds
        hit = np.zeros(len(old), dtype=bool)
        back: dict[int, int] = {}
        parts: list[FeatureSet] = []
        geoms = np.asarray(old.geometries, dtype=object)
        for b in boxes:
            g = _grow(b, GROW_DEG)
            if len(old):  # rows meeting the extent (bounds first, then the exact test the store makes)
                cand = np.flatnonzero(~hit & (bounds[:, 0] <= g[2]) & (bounds[:, 2] >= g[0])
                                      & (bounds[:, 1] <= g[3]) & (bounds[:, 3] >= g[1]))
                if len(cand):
                    hit[cand[shapely.intersects(geoms[cand], shapely.box(*g))]] = True
            # read back a little wider: every row dropped is among those read (more are harmless)
            fs = features_in_bbox(self.store, self.layer, _grow(b, 2 * GROW_DEG), cap=self.cap)
            keep = [k for k, i in enumerate(fs.ids) if i not in back]
            for k in keep:
                back[fs.ids[k]] = 1
            parts.append(fs.take(keep) if len(keep) != len(fs) else fs)
        read = concat(self.layer, parts)
        where = [self._index.get(i) for i in read.ids]
        for at in where:
            if at is not None:
                hit[at] = True
        gone_idx = np.flatnonzero(hit)
        gone = old.take(gone_idx)
        back_at = {k for k in where if k is not None}
        positions: list[int] | None = None
        if all(int(k) in back_at for k in gone_idx):  # nothing deleted: replace in place, append the new rows
            ids, props = list(old.ids), list(old.properties)
            geo = geoms.copy()
            new_bounds = shapely.bounds(np.asarray(read.geometries, dtype=object)) if len(read) else np.zeros((0, 4))
            bounds = bounds.copy()
            add: list[int] = []
            positions = []
            for j, at in enumerate(where):
                if at is None:
                    add.append(j)
                    positions.append(len(ids) + len(add) - 1)
                else:
                    ids[at], props[at], geo[at] = read.ids[j], read.properties[j], read.geometries[j]
                    bounds[at] = new_bounds[j]
                    positions.append(at)
            extra = read.take(add)
            rows = FeatureSet(self.layer, ids + extra.ids, props + extra.properties,
                              np.concatenate([geo, np.asarray(extra.geometries, dtype=object)]) if add else geo)
            if len(rows) > self.cap:
                from twin.errors import LimitExceeded

                raise LimitExceeded(f"more than {self.cap} {self.layer} features", detail={"max_features": self.cap})
            self.rows = rows
            self._bounds = np.concatenate([bounds, new_bounds[add]]) if add else bounds
            if add:
                self._index = dict(self._index)
                for n, j in enumerate(add):
                    self._index[read.ids[j]] = len(old) + n
        else:
            kept = old.take(np.flatnonzero(~hit))
            self.rows = concat(self.layer, [kept, read])
            if len(self.rows) > self.cap:
                from twin.errors import LimitExceeded

                raise LimitExceeded(f"more than {self.cap} {self.layer} features", detail={"max_features": self.cap})
            self._reindex()
        self.version = version
        delta = _net_change(self.layer, gone, read)
        delta.positions = positions
        return delta

    def _reindex(self) -> None:
        rows = self.rows
        self._index = {i: k for k, i in enumerate(rows.ids)}
        self._bounds = shapely.bounds(np.asarray(rows.geometries, dtype=object)) if len(rows) else np.zeros((0, 4))


def _grow(b: BBox, d: float) -> BBox:
    return (b[0] - d, b[1] - d, b[2] + d, b[3] + d)


def _net_change(layer: str, gone: FeatureSet, read: FeatureSet) -> Delta:
    """Leave out rows read back unchanged (same id, properties and geometry)."""
    before = {i: k for k, i in enumerate(gone.ids)}
    same_old, same_new = set(), set()
    gw = shapely.to_wkb(np.asarray(gone.geometries, dtype=object)) if len(gone) else []
    rw = shapely.to_wkb(np.asarray(read.geometries, dtype=object)) if len(read) else []
    for k, i in enumerate(read.ids):
        j = before.get(i)
        if j is not None and gone.properties[j] == read.properties[k] and gw[j] == rw[k]:
            same_old.add(j)
            same_new.add(k)
    return Delta(gone.take([j for j in range(len(gone)) if j not in same_old]),
                 read.take([k for k in range(len(read)) if k not in same_new]))


__all__ = ["Delta", "LayerMirror", "changed_extents", "concat"]
