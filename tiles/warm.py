"""A warm pyramid: render the style's sources in the background and re-render what edits touch.

``twin serve --warm`` (and ``twin demo``) start one :class:`TileWarmer` per process. It

1. walks the composite tiles of the style's vector sources (``tiles.style.source_layers``:
   the slow composite and the live one) from z10 to z16 over the data extent, coarse
   zooms first, and renders every tile not already cached under its current key;
2. listens to the change feed (:class:`twin.changes.ChangeFeed`) and, for each edit,
   queues the tiles of the sources holding that layer that the edit touches (its
   extent grown by the tile buffer), at every warm zoom, and at the zoom above for tiles
   a viewer asked for. Repeated touches of a queued tile coalesce; the queue goes before
   the walk, asked-for tiles first (the fast layers' cheap source first, then the most
   recently asked-for tile), then the others, all without rest (by default every touched
   tile is kept fresh, so a tile seen for the first time since an
   edit is still a hit). With ``demand_window_s`` (``TWIN_TILE_WARM_DEMAND_S``) the slow
   source's touched tiles nobody asked for in that window are dropped and render on
   demand instead — for a machine too small to keep the whole pyramid fresh;
3. stays a background job: while viewers are being served, after each walk render it sleeps
   so that it uses at most ``cpu_share`` of one core (idle, it walks at full speed), and it
   polls the change feed every version TTL even when no request comes in, so a viewer seldom
   waits for a render.

A progress line is logged every 10 s and at the end of each walk; the counters
``twin_tile_warm_renders_total{reason}`` and ``twin_tile_warm_pending`` are exported
with the tile cache's hit/miss counters (:mod:`tiles.service`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence

from prometheus_client import Counter, Gauge

from tiles.mvt import key_layers
from tiles.service import TileService
from tiles.style import FAST_LAYERS
from tiles.tilejson import union_extent
from tiles.tms import BUFFER, EXTENT, Tile, tiles_for_bbox
from twin.blocks import BLOCK_ZOOMS
from twin.catalog import LayerSpec
from twin.dialect import BBox
from twin.priority import BACKGROUND_NICE, lower_thread_priority

log = logging.getLogger("twin.tiles.warm")

WARM_RENDERS = Counter("twin_tile_warm_renders_total", "Tiles rendered by the warmer", ["reason"])
WARM_SECONDS = Counter("twin_tile_warm_seconds_total",
                       "Seconds the warmer spent rendering, by reason (walk, edit), style source and zoom",
                       ["reason", "source", "zoom"])
WARM_PENDING = Gauge("twin_tile_warm_pending", "Tiles queued for re-rendering after edits")
WARM_DROPPED = Counter("twin_tile_warm_dropped_total",
                       "Touched tiles not re-rendered after an edit because no viewer asked for them recently "
                       "(they render on demand)")
WARM_PROGRESS = Gauge("twin_tile_warm_walk_done_ratio", "Share of the warm pyramid walked in the current pass")

#: Seconds without a tile request after which the walk stops resting (no viewer is waiting).
IDLE_AFTER_S = 2.0
#: A demand window that suits a busy machine (``TWIN_TILE_WARM_DEMAND_S``; the default is none: every
#: touched warm tile is re-rendered).
DEMAND_WINDOW_S = 300.0
#: With no demand window (queue everything), tiles above the walked zooms still need a viewer this recent.
_ABOVE_WARM_WINDOW_S = 300.0
#: Most tiles one edit may queue per source (a larger edit re-walks the pyramid instead).
_MAX_TOUCHED = 2_000


def parse_zoom_range(text: str) -> range:
    """``"10-16"`` or ``"14"`` → a range of zooms."""
    lo, _, hi = text.partition("-")
    a, b = int(lo), int(hi or lo)
    if not 0 <= a <= b <= 22:
        raise ValueError(f"warm zooms must be N or N-M within 0..22, not {text!r}")
    return range(a, b + 1)


class TileWarmer:
    """Keeps the composite tiles of ``sources`` (name → layer ids) rendered at ``zooms``."""

    def __init__(self, service: TileService, sources: dict[str, Sequence[str]], *,
                 zooms: range = range(10, 17), cpu_share: float = 0.25, encoding: str = "br",
                 poll_s: float = 1.0, demand_window_s: float | None = None):
        self.service = service
        self.specs: dict[str, tuple[LayerSpec, ...]] = {
            name: service.layer_specs(list(ids)) for name, ids in sources.items() if ids}
        self.zooms = zooms
        self.cpu_share = min(max(cpu_share, 0.01), 1.0)
        self.encoding = encoding
        self.poll_s = poll_s
        #: queued re-renders after edits: (source, tile) → when queued (one entry per tile)
        self._pending: dict[tuple[str, Tile], float] = {}
        self._busy: tuple[str, Tile] | None = None
        #: when the first queued tile held back by re-render pacing is due (None: none held back)
        self.next_due: float | None = None
        #: seconds a viewer's request keeps a tile on the re-render queue (None: queue every touched tile)
        self.demand_window_s = demand_window_s
        #: the zooms edits re-render: the walked ones, and the one above them for tiles viewers asked for
        self.rerender_zooms = range(zooms.start, min(zooms.stop + 1, 23))
        #: sources made of fast-changing layers only (cheap tiles: re-rendered first)
        self.fast_sources = {name for name, specs in self.specs.items() if all(s.id in FAST_LAYERS for s in specs)}
        #: the latest re-renders after edits, oldest first (what the warmer spent its time on)
        self.recent: deque[tuple[str, Tile]] = deque(maxlen=1000)
        self.dropped = 0
        self._rewalk = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.walked = 0
        self.total = 0
        self.rendered = 0
        self.rerendered = 0
        self.passes = 0
        service.versions.feed.listeners.append(self._on_change)

    # --- change feed -------------------------------------------------------
    def _on_change(self, layer: str | None, box: BBox | None) -> None:
        """Queue the tiles an edit touched that viewers asked for (called on the feed's thread; only enqueues).

        A tile of the slow source nobody asked for in the last ``demand_window_s`` is not queued: it
        re-renders when someone asks for it (or on the next walk), so re-render work follows what is
        watched; the fast source's tiles are cheap and queued anyway, after the asked-for ones.
        The zoom above the warm range is included (a tile there is only queued once viewed: kept,
        not walked).
        """
        if layer is None or box is None:
            self._rewalk.set()
            return
        zooms: Sequence[int] = self.rerender_zooms
        if layer == "building_blocks":  # drawn as the buildings layer at the block zooms
            layer, zooms = "buildings", [z for z in zooms if z in BLOCK_ZOOMS]
        elif layer == "buildings":  # the block zooms follow the blocks (tiles.mvt.key_layers)
            zooms = [z for z in zooms if z not in BLOCK_ZOOMS]
        now = time.monotonic()
        for name, specs in self.specs.items():
            if not any(s.id == layer for s in specs):
                continue
            touched: list[Tile] = []
            for z in zooms:
                touched.extend(tiles_for_bbox(_grow(box, z), z))
                if len(touched) > _MAX_TOUCHED:
                    self._rewalk.set()
                    break
            else:
                with self._lock:
                    for t in touched:
                        if t.z not in self.zooms and not self._wanted(t, now):
                            continue  # above the walked zooms: only what viewers look at
                        if self._droppable(name) and not self._wanted(t, now):
                            self.dropped += 1
                            WARM_DROPPED.inc()
                            continue
                        self._pending[(name, t)] = now  # one entry per tile: repeated touches coalesce
                    WARM_PENDING.set(len(self._pending))

    def _droppable(self, name: str) -> bool:
        """Unrequested touched tiles of ``name`` are dropped: the slow source's (heavy tiles); the
        fast source's are cheap and stay queued, after every requested tile."""
        return self.demand_window_s is not None and name not in self.fast_sources

    def _wanted(self, tile: Tile, now: float) -> bool:
        seen = self.service.last_demand(tile)
        window = self.demand_window_s if self.demand_window_s is not None else _ABOVE_WARM_WINDOW_S
        return seen is not None and now - seen <= window

    def _next_touched(self) -> tuple[str, Tile] | None:
        """The queued tile to re-render next, taken off the queue (:meth:`idle` waits until :meth:`_done`).

        Order: tiles viewers asked for within the window before the others; among those, the
        fast layers' source (events, devices, cameras: cheap tiles) first, then the most recently
        asked for; unrequested tiles (kept only with ``demand_window_s=None``) oldest edit first.
        Tiles whose demand ran out while queued are dropped; a tile re-rendered moments ago waits
        until :meth:`TileService.rerender_due` (``next_due`` then says when the first one is due).
        """
        with self._lock:
            self.next_due = None
            if not self._pending:
                return None
            now = time.monotonic()
            best: tuple[str, Tile] | None = None
            best_rank: tuple[bool, bool, float] | None = None
            for item, queued in list(self._pending.items()):
                seen = self.service.last_demand(item[1])
                wanted = self._wanted(item[1], now)
                if not wanted and self._droppable(item[0]):
                    del self._pending[item]
                    self.dropped += 1
                    WARM_DROPPED.inc()
                    continue
                due = self.service.rerender_due(tuple(key_layers(self.specs[item[0]], item[1].z)), item[1])
                if due > now:  # rendered moments ago and costly: paced (TileService.rerender_due)
                    self.next_due = due if self.next_due is None else min(self.next_due, due)
                    continue
                rank = (wanted, item[0] in self.fast_sources, seen if wanted and seen is not None else -queued)
                if best_rank is None or rank > best_rank:
                    best, best_rank = item, rank
            if best is not None:
                del self._pending[best]  # an edit landing during the render queues it again
                self._busy = best
            WARM_PENDING.set(len(self._pending))
            return best

    def _done(self, item: tuple[str, Tile]) -> None:
        with self._lock:
            self._busy = None
            WARM_PENDING.set(len(self._pending))

    def _rerender(self, item: tuple[str, Tile]) -> None:
        try:
            # re-renders do not rest: their amount is set by the edits (what viewers look at first)
            if self.warm_one(*item, rest=False, reason="edit"):
                self.rerendered += 1
                self.recent.append(item)
                WARM_RENDERS.labels("edit").inc()
        finally:
            self._done(item)

    # --- the walk ------------------------------------------------------------
    def pyramid(self) -> list[tuple[str, Tile]]:
        """Every (source, tile) of the warm pyramid, coarse zooms first.

        Within a zoom the walk starts at a random tile, so several workers sharing a Redis
        tier spread out instead of rendering the same tiles at the same moment.
        """
        out: list[tuple[str, Tile]] = []
        for z in self.zooms:
            level: list[tuple[str, Tile]] = []
            for name, specs in self.specs.items():
                if not any(s.min_zoom <= z <= s.max_zoom for s in specs):
                    continue
                area = union_extent(self.service.extents(specs, self.service.versions.get()))
                if area is not None:
                    level.extend((name, t) for t in tiles_for_bbox(area, z))
            start = random.randrange(len(level)) if level else 0
            out.extend(level[start:] + level[:start])
        return out

    def warm_one(self, name: str, tile: Tile, *, rest: bool = True, reason: str = "walk") -> bool:
        """Render ``tile`` of source ``name`` unless it is cached under its current key; True if rendered.

        ``rest``: afterwards sleep so the walk uses at most ``cpu_share`` of a core while viewers are
        being served (a tile request in the last :data:`IDLE_AFTER_S`); when none is, nobody waits
        for the CPU and the walk goes on at full speed (one thread). Re-renders after
        edits do not rest: their amount is set by the edits (each queues only the tiles it touched),
        and until they are done viewers get the previous version (``TWIN_TILE_STALE_S``) or wait.
        """
        specs, svc = self.specs[name], self.service
        svc.versions.get()
        if svc.cache.get(f"{svc.etag(specs, tile)}:{self.encoding}") is not None:  # memory, then Redis
            return False
        started = time.perf_counter()
        self.service.tile(specs, tile, self.encoding, background=True)  # not a viewer's hit or miss
        spent = time.perf_counter() - started
        WARM_SECONDS.labels(reason, name, str(tile.z)).inc(spent)
        if rest and time.monotonic() - svc.last_request < IDLE_AFTER_S:
            # at most cpu_share of one core: rest (1/share − 1) times as long as the render took
            self._stop.wait(spent * (1.0 / self.cpu_share - 1.0))
        return True

    def run_pass(self, walk: Iterator[tuple[str, Tile]] | None = None) -> None:
        """One walk of the pyramid, serving queued re-renders first; returns when done or stopped."""
        tiles = self.pyramid() if walk is None else list(walk)
        self.total, self.walked = len(tiles), 0
        started = last_log = time.monotonic()
        last_poll = 0.0
        it = iter(tiles)
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_poll >= self.poll_s:
                self.service.versions.get()  # pulls new changes → _on_change queues them
                last_poll = now
            touched = self._next_touched()
            if touched is not None:
                self._rerender(touched)
                continue
            item = next(it, None)
            if item is None:
                break
            self.walked += 1
            WARM_PROGRESS.set(self.walked / max(self.total, 1))
            if self.warm_one(*item):
                self.rendered += 1
                WARM_RENDERS.labels("walk").inc()
            if now - last_log >= 10:
                last_log = now
                self._log_progress(item[1].z, now - started)
        self.passes += 1
        self._log_progress(None, time.monotonic() - started)

    def _log_progress(self, z: int | None, seconds: float) -> None:
        pct = 100.0 * self.walked / max(self.total, 1)
        where = f"z{z}" if z is not None else "done"
        log.info("tile warm: %d/%d tiles (%.0f%%, %s), %d rendered, %d re-rendered after edits, %.0f s",
                 self.walked, self.total, pct, where, self.rendered, self.rerendered, seconds)

    def _run(self) -> None:
        lower_thread_priority(BACKGROUND_NICE)
        self._rewalk.set()  # the first walk
        backoff = self.poll_s
        while not self._stop.is_set():
            try:  # an accelerator: a failure (database busy, timeout) is logged and retried
                if self._rewalk.is_set():
                    self._rewalk.clear()
                    self.run_pass()
                    continue
                self.service.versions.get()
                touched = self._next_touched()
                if touched is None:
                    due = self.next_due
                    self._stop.wait(self.poll_s if due is None else min(self.poll_s, max(due - time.monotonic(), 0.01)))
                else:
                    self._rerender(touched)
                backoff = self.poll_s
            except Exception:
                log.exception("tile warmer: render failed; retrying in %.0f s", backoff)
                if self.passes == 0:
                    self._rewalk.set()
                backoff = min(backoff * 2, 60.0)
                self._stop.wait(backoff)

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> TileWarmer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="twin-tile-warm", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        listeners = self.service.versions.feed.listeners
        if self._on_change in listeners:
            listeners.remove(self._on_change)

    close = stop

    def idle(self) -> bool:
        """True when the first walk is done and no re-render is queued."""
        with self._lock:
            return self.passes > 0 and not self._pending and self._busy is None and not self._rewalk.is_set()


def _grow(box: BBox, z: int) -> BBox:
    """``box`` grown by the tile buffer at zoom ``z`` (degrees, approximately, at the box's latitude)."""
    import math

    pad = 360.0 / (1 << z) * BUFFER / EXTENT
    lat_pad = pad * math.cos(math.radians((box[1] + box[3]) / 2))
    return (box[0] - pad, box[1] - lat_pad, box[2] + pad, box[3] + lat_pad)


__all__ = ["TileWarmer", "parse_zoom_range"]
