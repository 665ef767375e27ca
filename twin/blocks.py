"""Built-up blocks: buildings merged into the town's shape for the first view from afar (z12–z13).

At z12 a display pixel is ~38 m and almost every building is sub-pixel, so tiles
that draw buildings one by one show nothing where the town is densest. Blocks fill
that gap: per zoom, the footprints of a cell are grown by half the merge distance,
dissolved, shrunk back a little less (so narrow alleys close and the block keeps its
outline), simplified to half a pixel and stripped of specks below one pixel
(buffer–dissolve, as cartographic building generalisation does). Each block carries
the dominant ``use``, the mean ``height_m`` and the number of buildings, so the same
style (colour by use, extrusion by height) draws it.

Blocks are computed per Web Mercator cell of :data:`CELL_ZOOM` (about 2 km, a few
thousand buildings at most: a fraction of a second with shapely) and stored in
``building_blocks``. :class:`BlockMaintainer` keeps them in step with ``buildings``
through the change log: an edit recomputes the cells it touches, a bulk load every
cell. The table is itself logged, so tile keys follow the refreshed blocks.

An edit of attributes only (``change_log.shape = 0``: a height, a use — the commonest edit in a
living town) cannot move an outline: it only recounts the use, mean height and count of the
blocks it touches (:func:`recount_blocks`), a few milliseconds, mostly in the database, instead of
merging its whole cell again (0.1–0.5 s of CPU in the serving process).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from twin.changes import row_box
from twin.geometry import coerce_array
from twin.priority import BACKGROUND_NICE, lower_thread_priority
from twin.schema import Building, BuildingBlock
from twin.versioning import bulk_change

log = logging.getLogger("twin.blocks")

#: Zooms drawn with blocks instead of single buildings.
BLOCK_ZOOMS = (12, 13)
#: Cells blocks are computed in (Web Mercator tiles of this zoom).
CELL_ZOOM = 14
_WORLD = 2 * 20037508.342789244
#: PostgreSQL advisory lock held while one worker recomputes blocks (others wait their turn).
_LOCK_KEY = 0x7477696E626C6B
_R = 6378137.0


#: Block heights are kept to whole metres. At z12–z13 a pixel is 19–38 m, so a tenth of a metre of
#: mean height is never seen, and a finer value changed the block (and re-rendered its heavy z12
#: tile) on most height edits of any of its buildings.
BLOCK_HEIGHT_STEP_M = 1.0


def block_height(mean_m: float) -> float:
    """A block's mean building height as stored: to :data:`BLOCK_HEIGHT_STEP_M`."""
    return float(round(mean_m / BLOCK_HEIGHT_STEP_M) * BLOCK_HEIGHT_STEP_M)


def pixel_m(z: int) -> float:
    """One 256-px display pixel at zoom ``z`` in EPSG:3857 metres."""
    return _WORLD / (256 * (1 << z))


def _to_3857(geoms: np.ndarray) -> np.ndarray:
    def fn(c: np.ndarray) -> np.ndarray:
        lat = np.clip(c[:, 1], -85.0511287798066, 85.0511287798066)
        return np.column_stack((np.radians(c[:, 0]) * _R, np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * _R))
    return shapely.transform(geoms, fn)


def _to_lonlat(geoms: np.ndarray) -> np.ndarray:
    def fn(c: np.ndarray) -> np.ndarray:
        return np.column_stack((np.degrees(c[:, 0] / _R), np.degrees(2 * np.arctan(np.exp(c[:, 1] / _R)) - np.pi / 2)))
    return shapely.transform(geoms, fn)


def cell_of(lon: float, lat: float) -> tuple[int, int]:
    n = 1 << CELL_ZOOM
    lat = max(-85.0511287798066, min(85.0511287798066, lat))
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def cell_bounds(x: int, y: int) -> tuple[float, float, float, float]:
    """Lon/lat (west, south, east, north) of a cell."""
    n = 1 << CELL_ZOOM

    def lat(yy: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


@dataclass(frozen=True)
class Block:
    """One generalised block: lon/lat multipolygon with what the style draws."""

    geom: shapely.MultiPolygon
    use: str
    height_m: float
    building_count: int


def merge_buildings(footprints: np.ndarray, uses: list[str], heights: list[float], zoom: int) -> list[Block]:
    """Blocks of ``footprints`` (lon/lat polygons) for ``zoom``; buildings closer than ~1 px merge.

    Pure function (no database), deterministic for the same input order.
    """
    if len(footprints) == 0:
        return []
    merc = _to_3857(np.asarray(footprints, dtype=object))
    return blocks_of_parts(block_parts(merc, zoom), merc, uses, heights)


def block_parts(merc: np.ndarray, zoom: int) -> list[shapely.Geometry]:
    """The block outlines (EPSG:3857) of footprints ``merc`` (EPSG:3857) at ``zoom``: the costly half of
    :func:`merge_buildings` (buffer, dissolve, shrink, simplify), which depends on the shapes only."""
    if len(merc) == 0:
        return []
    px = pixel_m(zoom)
    grow = 0.5 * px  # gaps under one pixel close
    merged = shapely.union_all(shapely.buffer(merc, grow, quad_segs=2, join_style="mitre"))
    shrunk = shapely.buffer(merged, -0.8 * grow, quad_segs=2, join_style="mitre")
    simple = shapely.simplify(shrunk, 0.5 * px, preserve_topology=True)
    parts = [g for g in shapely.get_parts(np.array([simple], dtype=object)) if not g.is_empty]
    return [g for g in parts if g.area >= px * px]


def blocks_of_parts(parts: list[shapely.Geometry], merc: np.ndarray, uses: list[str], heights: list[float]) -> list[Block]:
    """Blocks from their outlines (:func:`block_parts`) and the footprints (EPSG:3857) with their
    ``use`` and ``height_m``: the dominant use, the mean height and the count of the buildings each
    outline meets (cheap: an edit of attributes only needs this half)."""
    if not parts:
        return []
    tree = shapely.STRtree(merc)
    blocks = []
    for part in parts:
        idx = tree.query(part, predicate="intersects")
        if len(idx) == 0:
            continue
        use = Counter(uses[i] for i in idx).most_common(1)[0][0]
        height = float(np.mean([heights[i] for i in idx]))
        geom = coerce_array(_to_lonlat(np.array([part], dtype=object)), "MultiPolygon")[0]
        blocks.append(Block(geom, use, block_height(height), len(idx)))
    return blocks


#: Per cell, what the last recompute in this process saw: a fingerprint of the cell's footprints
#: (ids and shapes) and the block outlines per zoom (:class:`BlockMaintainer`'s memory).
CellMemo = dict[tuple[int, int], tuple[bytes, dict[int, list[shapely.Geometry]]]]


def _fingerprint(ids: list[int], wkbs: list[bytes]) -> bytes:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(ids, dtype=np.int64).tobytes())
    for w in wkbs:
        h.update(w)
    return h.digest()


def recompute_cells(conn: Connection, cells: Iterable[tuple[int, int]] | None, built_from: int,
                    memo: CellMemo | None = None) -> int:
    """Replace the blocks of ``cells`` (``None`` = every cell) from the current buildings; blocks written.

    ``memo`` (kept by the caller between calls): a cell whose footprints are the same as at its last
    recompute — an edit of a height or a use, the commonest in a living town — reuses its block
    outlines and only recounts their attributes, about a tenth of the work of merging it again."""
    b: Table = Building.__table__  # type: ignore[assignment]
    bb: Table = BuildingBlock.__table__  # type: ignore[assignment]
    if cells is None:
        conn.execute(delete(bb))
        rows = conn.execute(select(b.c.use, b.c.height_m, func.ST_AsBinary(b.c.geom), b.c.id).order_by(b.c.id)).all()
        wanted = None
    else:
        wanted = set(cells)
        if not wanted:
            return 0
        west = min(cell_bounds(x, y)[0] for x, y in wanted)
        south = min(cell_bounds(x, y)[1] for x, y in wanted)
        east = max(cell_bounds(x, y)[2] for x, y in wanted)
        north = max(cell_bounds(x, y)[3] for x, y in wanted)
        from twin.dialect import dialect_for

        clause = dialect_for(conn).bbox_clause(b, (west, south, east, north))
        rows = conn.execute(select(b.c.use, b.c.height_m, func.ST_AsBinary(b.c.geom), b.c.id).where(clause)
                            .order_by(b.c.id)).all()
    if not rows:
        if wanted is not None:
            for x, y in wanted:
                conn.execute(delete(bb).where(bb.c.cell_x == x, bb.c.cell_y == y))
        return 0
    geoms = shapely.from_wkb([bytes(r[2]) for r in rows])
    pts = shapely.point_on_surface(geoms)
    by_cell: dict[tuple[int, int], list[int]] = {}
    for i, (lon, lat) in enumerate(zip(shapely.get_x(pts), shapely.get_y(pts), strict=True)):
        c = cell_of(float(lon), float(lat))
        if wanted is None or c in wanted:
            by_cell.setdefault(c, []).append(i)
    out = []
    for (cx, cy), idx in sorted(by_cell.items()):
        merc = _to_3857(np.asarray(geoms[idx], dtype=object))
        uses, heights = [rows[i][0] for i in idx], [rows[i][1] for i in idx]
        seen = memo.get((cx, cy)) if memo is not None else None
        fp = _fingerprint([rows[i][3] for i in idx], [bytes(rows[i][2]) for i in idx]) if memo is not None else b""
        outlines = seen[1] if seen is not None and seen[0] == fp else {z: block_parts(merc, z) for z in BLOCK_ZOOMS}
        if memo is not None:
            if len(memo) > 100_000:
                memo.clear()
            memo[(cx, cy)] = (fp, outlines)
        for z in BLOCK_ZOOMS:
            for blk in blocks_of_parts(outlines[z], merc, uses, heights):
                out.append({"zoom": z, "cell_x": cx, "cell_y": cy, "use": blk.use, "height_m": blk.height_m,
                            "building_count": blk.building_count, "built_from": built_from,
                            "geom": shapely.to_wkb(blk.geom)})
    if wanted is not None:
        out = _keep_unchanged(conn, wanted, out)
    if out:
        _insert(conn, out)
    return len(out)


def _keep_unchanged(conn: Connection, cells: set[tuple[int, int]], new: list[dict]) -> list[dict]:
    """Delete the blocks of ``cells`` that ``new`` does not repeat exactly and return the new blocks
    still to insert. An edit usually changes one block of its cell: rewriting all of them logged
    hundreds of change-log rows per building edit (and compactions every minute in a busy town),
    and changed the tile keys of blocks that had not changed."""
    bb: Table = BuildingBlock.__table__  # type: ignore[assignment]
    sig = ("zoom", "cell_x", "cell_y", "use", "height_m", "building_count")
    todo: dict[tuple, list[dict]] = {}
    for row in new:
        todo.setdefault((*(row[k] for k in sig), bytes(row["geom"])), []).append(row)
    stale_ids = []
    for x, y in cells:
        for r in conn.execute(select(bb.c.id, *(bb.c[k] for k in sig), func.ST_AsBinary(bb.c.geom))
                              .where(bb.c.cell_x == x, bb.c.cell_y == y)).all():
            same = todo.get((*r[1:7], bytes(r[7])))
            if same:
                same.pop()
            else:
                stale_ids.append(r[0])
    for i in range(0, len(stale_ids), 500):
        conn.execute(delete(bb).where(bb.c.id.in_(stale_ids[i:i + 500])))
    return [row for rows in todo.values() for row in rows]


def _insert(conn: Connection, rows: list[dict]) -> None:
    fn = "ST_GeomFromWKB" if conn.dialect.name == "postgresql" else "GeomFromWKB"
    conn.execute(
        text("INSERT INTO building_blocks (zoom, cell_x, cell_y, use, height_m, building_count, built_from, geom) "
             f"VALUES (:zoom, :cell_x, :cell_y, :use, :height_m, :building_count, :built_from, {fn}(:geom, 4326))"),
        rows,
    )


def recount_blocks(conn: Connection, boxes: Iterable[tuple[float, float, float, float]], built_from: int) -> int:
    """Attribute edits inside lon/lat ``boxes``: recount the dominant use, mean height and count of the
    blocks (every zoom) that meet a box, from the buildings of the block's cell that meet its outline
    — what :func:`blocks_of_parts` counts — and update the blocks whose numbers changed; the number
    updated. The outlines stay: they depend on the footprints only, which an attribute edit keeps.

    Members are found by the database (``ST_Intersects`` with the stored lon/lat outline, where the
    full recompute tests its EPSG:3857 outline: the same up to rounding far below a millimetre) and
    assigned to cells by their point on surface in Python, exactly as the full recompute does."""
    from twin.dialect import dialect_for

    b: Table = Building.__table__  # type: ignore[assignment]
    bb: Table = BuildingBlock.__table__  # type: ignore[assignment]
    d = dialect_for(conn)
    seen: set[int] = set()
    updated = 0
    for box in boxes:
        cells = cells_touching(box)
        hits = conn.execute(select(bb.c.id, bb.c.cell_x, bb.c.cell_y, bb.c.use, bb.c.height_m, bb.c.building_count,
                                   func.ST_AsBinary(bb.c.geom)).where(d.bbox_clause(bb, box))).all()
        for bid, cx, cy, use, height, count, wkb in hits:
            if bid in seen or (cx, cy) not in cells:
                continue
            seen.add(bid)
            outline = select(bb.c.geom).where(bb.c.id == bid).scalar_subquery()
            meets: ColumnElement[bool] = func.ST_Intersects(b.c.geom, outline)
            if conn.dialect.name != "postgresql":
                meets = func.ST_Intersects(b.c.geom, outline) == 1  # SpatiaLite: 1, 0 or -1 (error)
            members = conn.execute(
                select(b.c.use, b.c.height_m, func.ST_AsBinary(b.c.geom))
                .where(d.bbox_clause(b, shapely.from_wkb(bytes(wkb)).bounds), meets)
                .order_by(b.c.id)).all()
            if not members:
                continue  # the block lost every building: only a shape change does that, and merges the cell
            pts = shapely.point_on_surface(shapely.from_wkb([bytes(m[2]) for m in members]))
            mine = [m for m, x, y in zip(members, shapely.get_x(pts), shapely.get_y(pts), strict=True)
                    if cell_of(float(x), float(y)) == (cx, cy)]
            if not mine:
                continue
            new_use = Counter(m[0] for m in mine).most_common(1)[0][0]
            new_height = block_height(float(np.mean([m[1] for m in mine])))
            if (new_use, new_height, len(mine)) != (use, height, count):
                conn.execute(bb.update().where(bb.c.id == bid).values(
                    use=new_use, height_m=new_height, building_count=len(mine), built_from=built_from))
                updated += 1
    return updated


def cells_touching(box: tuple[float, float, float, float]) -> set[tuple[int, int]]:
    """Cells whose blocks a change inside lon/lat ``box`` can alter: a building belongs to the cell of
    its point on surface, which lies inside its extent, so the cells the extent meets."""
    x0, y1 = cell_of(box[0], box[1])
    x1, y0 = cell_of(box[2], box[3])
    return {(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}


class BlockMaintainer:
    """Keeps ``building_blocks`` in step with ``buildings`` from a :class:`twin.changes.ChangeFeed`."""

    def __init__(self, store, feed, *, poll_s: float = 1.0):  # noqa: ANN001 - SpatialStore, ChangeFeed
        self.store = store
        self.feed = feed
        self.poll_s = poll_s
        self._cells: set[tuple[int, int]] = set()
        #: extents of attribute-only edits (their blocks are recounted, not merged again)
        self._boxes: list[tuple[float, float, float, float]] = []
        self._all = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed_cells = 0
        self.recounted_blocks = 0
        #: the cells' footprints and block outlines as last recomputed (an attribute edit reuses them)
        self.memo: CellMemo = {}
        feed.edit_listeners.append(self._on_change)

    def _on_change(self, layer: str | None, box: tuple[float, float, float, float] | None, shape: bool = True) -> None:
        if layer not in ("buildings", None):
            return
        with self._lock:
            if box is None:
                self._all = True
            elif shape:
                self._cells |= cells_touching(box)
            else:
                self._boxes.append(box)

    def catch_up(self) -> None:
        """At start: recompute everything if the blocks are missing or older than the last bulk change,
        else the cells edited since they were built."""
        with self.store.engine.connect() as conn:
            built = conn.execute(select(func.max(BuildingBlock.built_from))).scalar()
            rows = conn.execute(text("SELECT minx, miny, maxx, maxy, mbr, shape FROM change_log "
                                     "WHERE layer = 'buildings' AND version > :v"), {"v": built or 0}).all()
            count = conn.execute(select(func.count()).select_from(Building.__table__)).scalar_one()
        with self._lock:
            if built is None:
                self._all = count > 0
            for r in rows:
                box = row_box(*r[:5])
                if box is None:
                    self._all = True
                elif r[5] == 0:
                    self._boxes.append(box)
                else:
                    self._cells |= cells_touching(box)

    def run_once(self) -> int:
        """Recompute what is queued; the number of cells merged again plus attribute edits recounted
        (-1: every cell)."""
        with self._lock:
            everything, cells, boxes = self._all, self._cells, self._boxes
            self._all, self._cells, self._boxes = False, set(), []
        # an attribute edit inside a cell merged again anyway needs nothing more
        boxes = [bx for bx in boxes if not cells_touching(bx) <= cells]
        if not everything and not cells and not boxes:
            return 0
        recounted = 0
        try:
            with self.store.engine.begin() as conn:
                if conn.dialect.name == "postgresql" and not conn.execute(
                        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}).scalar():
                    # another worker is recomputing (it saw the same changes); try again next round
                    self._requeue(everything, cells, boxes)
                    return 0
                version = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'buildings'")).scalar()
                if everything:  # one whole-layer change for the tiles, not one per block
                    with bulk_change(conn, "building_blocks"):
                        n = recompute_cells(conn, None, int(version or 0))
                else:
                    n = recompute_cells(conn, cells, int(version or 0), self.memo) if cells else 0
                    recounted = recount_blocks(conn, boxes, int(version or 0)) if boxes else 0
        except Exception:
            self._requeue(everything, cells, boxes)
            raise
        if everything:
            self.refreshed_cells += 1
            log.info("building blocks: all cells recomputed, %d blocks", n)
            return -1
        self.refreshed_cells += len(cells)
        self.recounted_blocks += recounted
        if cells:
            log.info("building blocks: %d cells recomputed, %d blocks", len(cells), n)
        else:
            log.debug("building blocks: %d attribute edits, %d blocks recounted", len(boxes), recounted)
        return len(cells) + len(boxes)

    def _requeue(self, everything: bool, cells: set[tuple[int, int]],
                 boxes: Iterable[tuple[float, float, float, float]] = ()) -> None:
        with self._lock:
            self._all = self._all or everything
            self._cells |= cells
            self._boxes.extend(boxes)

    def _run(self) -> None:
        lower_thread_priority(BACKGROUND_NICE)  # derived data: viewers first
        backoff = self.poll_s
        first = True
        while not self._stop.is_set():
            try:  # derived data: a failure is logged and retried, never takes the server down
                if first:
                    self.catch_up()
                    first = False
                self.feed.refresh()
                self.run_once()
                backoff = self.poll_s
            except Exception:
                log.exception("building blocks: refresh failed; retrying in %.0f s", backoff)
                backoff = min(backoff * 2, 60.0)
            self._stop.wait(backoff)

    def start(self) -> BlockMaintainer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="twin-blocks", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._on_change in self.feed.edit_listeners:
            self.feed.edit_listeners.remove(self._on_change)

    close = stop


def ensure_blocks(store) -> int:  # noqa: ANN001 - a SpatialStore
    """Bring ``building_blocks`` up to date now (for offline seeding and exports, where no server
    keeps them); the number of cells recomputed (-1: all)."""
    from twin.changes import ChangeFeed

    maint = BlockMaintainer(store, ChangeFeed(store.engine))
    maint.catch_up()
    return maint.run_once()


__all__ = ["BLOCK_ZOOMS", "Block", "BlockMaintainer", "CELL_ZOOM", "ensure_blocks", "merge_buildings",
           "recompute_cells", "recount_blocks"]
