"""The vector tile service: validated request → cached, compressed MVT bytes with an ETag.

This is what the HTTP routers, the seeder and the PMTiles exporter call; it knows no
HTTP. A tile's identity is ``(layers with the newest change touching the tile,
z/x/y, encoding version)``; that hash is both the cache key and the ETag, so a conditional request
can be answered before any cache or database is touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from prometheus_client import Counter

from tiles.cache import LayerVersions, MemoryTileCache, TileCache, tile_key
from tiles.mvt import (
    DEFAULT_FEATURE_CAP,
    ENCODING_VERSION,
    TileEncoder,
    encoder_for,
    key_layers,
    plan_tile,
)
from tiles.mvt_parts import split_layers
from tiles.tms import BUFFER, EXTENT, Tile, parse_layer_list, tiles_for_bbox
from twin.catalog import LayerSpec, get_layer
from twin.changes import BUFFER_FRACTION
from twin.dialect import BBox

try:  # optional: br when the client accepts it
    import brotli
except ImportError:  # pragma: no cover - brotli is a declared dependency
    brotli = None  # type: ignore[assignment]

TILE_LOOKUPS = Counter("twin_tile_cache_lookups_total",
                       "Vector tile requests: hit (memory or Redis), stale (the previous version, within "
                       "TWIN_TILE_STALE_S of the edit, while it re-renders) or miss (rendered while the client waited)",
                       ["result"])
_HIT, _MISS, _STALE = TILE_LOOKUPS.labels("hit"), TILE_LOOKUPS.labels("miss"), TILE_LOOKUPS.labels("stale")
MISSES_BY_ZOOM = Counter("twin_tile_misses_total", "Vector tile requests rendered while the client waited, by zoom",
                         ["zoom"])
BACKGROUND_RENDERS = Counter("twin_tile_background_renders_total",
                             "Vector tiles rendered with no client waiting: the warmer's walk and edits, "
                             "and refreshes of tiles answered stale", ["reason"])
_REFRESH = BACKGROUND_RENDERS.labels("stale")

# the change index grows tiles by BUFFER_FRACTION; a wider MVT buffer would miss edits
assert BUFFER / EXTENT <= BUFFER_FRACTION, "tile buffer wider than the change index assumes"

#: Cache-Control of a tile answered with its previous version (stale-while-revalidate): reuse
#: only after revalidating, so the viewer's next request gets the new version.
STALE_CACHE_CONTROL = "public, no-cache"
#: Most layers one composite tile may name.
MAX_LAYERS_PER_TILE = 20
ENCODINGS = ("br", "gzip", "identity") if brotli is not None else ("gzip", "identity")


def gzip_bytes(raw: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(raw) + c.flush()


def gunzip_bytes(data: bytes) -> bytes:
    return zlib.decompress(data, 47)


def compress(raw: bytes, encoding: str) -> bytes:
    if not raw or encoding == "identity":
        return raw
    if encoding == "gzip":
        return gzip_bytes(raw)
    if encoding == "br":
        return brotli.compress(raw, quality=5)
    raise ValueError(f"unknown encoding {encoding!r}")


@dataclass(frozen=True, slots=True)
class TileResult:
    """A tile as sent: ``body`` compressed with ``encoding`` (``b""`` = empty tile); ``stale``: the
    previous version of the tile, sent while the current one renders (send it with ``no-cache``)."""

    body: bytes
    etag: str
    encoding: str
    stale: bool = False


class TileService:
    """Vector tiles of one store, with the cache and the data-version bookkeeping.

    ``feature_cap`` bounds the features per layer per tile; ``version_ttl`` is the
    longest an edit made by another process stays unseen (s); ``workers`` threads
    render uncached tiles (each holds one database connection on PostGIS).
    """

    def __init__(
        self,
        store,  # noqa: ANN001 - a SpatialStore
        *,
        cache: TileCache | None = None,
        feature_cap: int = DEFAULT_FEATURE_CAP,
        max_layers: int = MAX_LAYERS_PER_TILE,
        version_ttl: float = 1.0,
        statement_timeout_ms: int = 15_000,
        workers: int | None = None,
        max_log_rows: int = 20_000,
        invalidation: str = "extent",
        stale_s: float = 0.0,
    ):
        self.store = store
        self.cache = cache if cache is not None else TileCache(0)
        self.feature_cap = feature_cap
        self.max_layers = max_layers
        if invalidation not in ("extent", "layer"):
            raise ValueError(f"invalidation must be 'extent' or 'layer', not {invalidation!r}")
        self.versions = LayerVersions(store, ttl=version_ttl, max_log_rows=max_log_rows)
        #: "extent": keys follow the newest change touching the tile; "layer": the layer version
        self.invalidation = invalidation
        self._statement_timeout_ms = statement_timeout_ms
        self._encoder: TileEncoder | None = None
        self._encoder_lock = threading.Lock()
        self._extents: dict[str, tuple[int, BBox | None]] = {}
        self._spec_memo: dict[str, tuple[LayerSpec, ...]] = {}
        self._etag_memo: dict[tuple[tuple[str, ...], Tile], tuple[int, str, tuple[int, ...]]] = {}
        #: stale-while-revalidate: how long after an edit was learned the previous version of a
        #: tile it touched may still be sent while the new one renders (0 = never)
        self.stale_s = stale_s
        #: monotonic time of the last tile request (:meth:`cached`, which every request goes through)
        self.last_request = 0.0
        # per tile address, of the newest version rendered: its key, its per-layer versions, and the
        # layers' global versions known when it was rendered (what bounds when it became stale)
        self._latest: dict[tuple[tuple[str, ...], Tile], tuple[str, tuple[int, ...], tuple[int, ...]]] = {}
        self._refreshing: set[tuple[tuple[str, ...], Tile, str]] = set()
        # per tile address: (monotonic end of its last render, what that render cost in seconds) —
        # paces the re-renders of a tile that edits keep touching (:meth:`rerender_due`)
        self._renders: dict[tuple[tuple[str, ...], Tile], tuple[float, float]] = {}
        # (layer, tile) → the earliest moment an edit this process has not re-rendered the tile for
        # can have committed (set by the change feed's listener, dropped when the tile is rendered)
        self._stale_since: dict[tuple[str, Tile], float] = {}
        self._zooms_seen: set[int] = set()
        #: tile address → monotonic time a viewer last asked for it (any source, any encoding): the
        #: warmer re-renders touched tiles by this demand (tiles/warm.py)
        self._demand: dict[Tile, float] = {}
        if stale_s > 0 and invalidation == "extent":
            self.versions.feed.listeners.append(self._on_change)
        self._refresh_lock = threading.Lock()
        #: per layer of a composite tile re-rendered after an edit: its bytes as last rendered at that
        #: address under its own version, so the next re-render encodes only the layers that changed
        #: (:meth:`render`); a quarter of the tile cache's memory budget
        self._parts = MemoryTileCache(self.cache.memory.max_bytes // 4)
        self._workers = workers or max(4, 2 * (os.cpu_count() or 2))
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        #: the version refresh under way for :meth:`fresh_versions_async`, with the loop it runs for
        self._versions_refresh: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None

    # --- parts -----------------------------------------------------------------
    @property
    def encoder(self) -> TileEncoder:
        if self._encoder is None:
            with self._encoder_lock:
                if self._encoder is None:
                    self._encoder = encoder_for(self.store, self._statement_timeout_ms)
        return self._encoder

    def layer_specs(self, layers: str | Sequence[str]) -> tuple[LayerSpec, ...]:
        """Parse ``a,b`` (or take a sequence) into layer specs; unknown → LayerNotFound, too many → 400."""
        names = parse_layer_list(layers, self.max_layers) if isinstance(layers, str) else tuple(layers)
        if len(names) > self.max_layers:
            parse_layer_list(",".join(names), self.max_layers)
        return tuple(get_layer(n) for n in names)

    def layer_specs_cached(self, raw: str) -> tuple[LayerSpec, ...]:
        """:meth:`layer_specs` memoised per distinct ``{layers}`` string (bounded)."""
        specs = self._spec_memo.get(raw)
        if specs is None:
            specs = self.layer_specs(raw)
            if len(self._spec_memo) < 4096:
                self._spec_memo[raw] = specs
        return specs

    def extents(self, specs: Sequence[LayerSpec], versions: dict[str, int]) -> dict[str, BBox | None]:
        """Data extents (lon/lat) of the layers, recomputed only when a layer's version moves."""
        out: dict[str, BBox | None] = {}
        for spec in specs:
            v = versions.get(spec.id, 0)
            cached = self._extents.get(spec.id)
            if cached is None or cached[0] != v:
                cached = (v, self.store.summary(spec.id).extent)
                self._extents[spec.id] = cached
            out[spec.id] = cached[1]
        return out

    def etag(self, specs: Sequence[LayerSpec], tile: Tile, versions: dict[str, int] | None = None,
             ids: tuple[str, ...] | None = None) -> str:
        """Cache key and ETag of ``tile``: per layer the newest change touching the tile (plus
        buffer), so an edit changes exactly the tiles it touches. ``versions`` is used by the
        layer-version scheme only; ``ids`` is ``key_layers(specs, tile.z)`` when the caller has it."""
        return self._key(specs, tile, versions, ids)[0]

    def _key(self, specs: Sequence[LayerSpec], tile: Tile, versions: dict[str, int] | None = None,
             ids: tuple[str, ...] | None = None) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
        """(key, the per-layer versions it names, the key layers)."""
        if ids is None:
            ids = tuple(key_layers(specs, tile.z))
        if self.invalidation == "layer":  # the older, coarser scheme: any edit changes every tile of the layer
            versions = versions if versions is not None else self.versions.get()
            tv = tuple(versions.get(i, 0) for i in ids)
            return tile_key(ids, dict(zip(ids, tv, strict=True)), tile.z, tile.x, tile.y, ENCODING_VERSION), tv, ids
        index = self.versions.index
        # memoised until the index next moves (at most once per version TTL): a hit costs one lookup
        memo_key = (ids, tile)
        memo = self._etag_memo.get(memo_key)
        if memo is not None and memo[0] == index.generation:
            return memo[1], memo[2], ids
        generation = index.generation
        per_layer = index.tile_versions(ids, tile.z, tile.x, tile.y)
        key = tile_key(ids, per_layer, tile.z, tile.x, tile.y, ENCODING_VERSION)
        tv = tuple(per_layer[i] for i in ids)
        if len(self._etag_memo) > 200_000:
            self._etag_memo.clear()
        self._etag_memo[memo_key] = (generation, key, tv)
        return key, tv, ids

    # --- stale-while-revalidate -----------------------------------------------------
    def _remember(self, ids: tuple[str, ...], tile: Tile, key: str, tv: tuple[int, ...],
                  versions: dict[str, int]) -> None:
        """Note the newest version rendered (or fetched) at this address, with the layers' global
        versions it was keyed under (``versions``, read with the index)."""
        old = self._latest.get((ids, tile))
        if old is None or old[1] <= tv:
            if len(self._latest) > 500_000:
                self._latest.clear()
            self._latest[(ids, tile)] = (key, tv, tuple(versions.get(i, 0) for i in ids))
            # the edits this version holds are done with; one that landed after its read keeps the
            # mark it has (the earliest, so ages from it are never too small)
            index = self.versions.index
            for layer, v in zip(ids, tv, strict=True):
                if index.tile_version(layer, tile.z, tile.x, tile.y) <= v:
                    self._stale_since.pop((layer, tile), None)
            self._zooms_seen.add(tile.z)

    # --- demand ----------------------------------------------------------------
    def _note_demand(self, tile: Tile, now: float) -> None:
        demand = self._demand
        if len(demand) > 200_000:  # bounded: the oldest half goes (a forgotten tile re-renders on demand)
            cut = sorted(demand.values())[len(demand) // 2]
            self._demand = demand = {t: at for t, at in list(demand.items()) if at > cut}
        demand[tile] = now

    def last_demand(self, tile: Tile) -> float | None:
        """Monotonic time a viewer last asked for ``tile`` (any source), or None if never (or forgotten)."""
        return self._demand.get(tile)

    def _on_change(self, layer: str | None, box: BBox | None) -> None:
        """Change-feed listener: date the tiles this edit touches (at the zooms served so far)."""
        if layer is None or box is None:
            return  # a reload or a whole-layer change: the layer-wide bound applies
        since = self.versions.feed.learning_since
        marks = self._stale_since
        if len(marks) > 200_000:
            marks.clear()
        for z in list(self._zooms_seen):
            pad = 360.0 / (1 << z) * BUFFER_FRACTION
            lat_pad = pad * math.cos(math.radians((box[1] + box[3]) / 2))
            grown = (box[0] - pad, box[1] - lat_pad, box[2] + pad, box[3] + lat_pad)
            for n, t in enumerate(tiles_for_bbox(grown, z)):
                if n > 64:
                    break  # a large edit: the layer-wide bound applies to the rest
                marks.setdefault((layer, t), since)

    def _stale(self, specs: Sequence[LayerSpec], tile: Tile, encoding: str, ids: tuple[str, ...],
               tv: tuple[int, ...]) -> TileResult | None:
        """The previous version of the tile from memory if the edits it lacks were learned at most
        ``stale_s`` ago; a background render of the current version is started. Else None."""
        if self.stale_s <= 0:
            return None
        prev = self._latest.get((ids, tile))
        if prev is None or prev[1] == tv:
            return None
        feed = self.versions.feed
        became_stale = None
        for layer, old_v, new_v, known in zip(ids, prev[1], tv, prev[2], strict=True):
            if new_v > old_v:
                # the first edit this version lacks is newer than every version of the layer known
                # when it was rendered (those were all in the index): it committed after the log
                # read before the one that found the next version; closer, per tile, when the feed's
                # listener dated the edits touching this tile
                at = feed.learned_after(layer, max(old_v, known))
                if at is None:
                    return None
                marked = self._stale_since.get((layer, tile))
                if marked is not None and marked > at:
                    at = marked
                became_stale = at if became_stale is None else min(became_stale, at)
        if became_stale is None or time.monotonic() - became_stale > self.stale_s:
            return None
        body = self.cache.get_memory(f"{prev[0]}:{encoding}")
        if body is None:
            return None
        self._refresh(specs, tile, encoding, ids)
        _STALE.inc()
        return TileResult(body, prev[0], encoding, stale=True)

    def _refresh(self, specs: Sequence[LayerSpec], tile: Tile, encoding: str, ids: tuple[str, ...]) -> None:
        """Render the current version of ``tile`` on the render threads, once at a time per address,
        and not before :meth:`rerender_due` (until then viewers keep getting the previous version)."""
        item = (ids, tile, encoding)
        with self._refresh_lock:
            if item in self._refreshing:
                return
            self._refreshing.add(item)

        def work() -> None:
            try:
                self.tile(specs, tile, encoding, background=True)
                _REFRESH.inc()
            finally:
                with self._refresh_lock:
                    self._refreshing.discard(item)

        wait = self.rerender_due(ids, tile) - time.monotonic()
        if wait > 0:
            timer = threading.Timer(wait, lambda: self._submit(work, item))
            timer.daemon = True
            timer.start()
        else:
            self._submit(work, item)

    def _submit(self, work: Callable[[], None], item: tuple[tuple[str, ...], Tile, str]) -> None:
        try:
            self._pool().submit(work)
        except RuntimeError:  # shut down meanwhile
            with self._refresh_lock:
                self._refreshing.discard(item)

    def rerender_due(self, ids: tuple[str, ...], tile: Tile) -> float:
        """Monotonic time from which the tile at this address may be rendered again after an edit.

        A tile that edits keep touching (the town centre's coarse tiles, say, under events changing
        every second) would otherwise be rendered once per edit, each time in full. Its re-renders are
        paced so that it takes at most :data:`RERENDER_SHARE` of a core: after a render that cost
        ``c`` seconds the next waits ``c / RERENDER_SHARE``, but never longer than half the stale
        window, so a viewer still gets a version at most ``stale_s`` old and never waits for it. A
        cheap tile (a few ms) is hardly delayed; without a stale window nothing is.
        """
        last = self._renders.get((ids, tile))
        if last is None or self.stale_s <= 0:
            return 0.0
        end, cost = last
        return end + min(cost / RERENDER_SHARE, self.stale_s / 2)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix="twin-tiles")
        return self._executor

    # --- rendering ---------------------------------------------------------------
    def render(self, specs: Sequence[LayerSpec], tile: Tile, versions: dict[str, int] | None = None,
               layer_versions: tuple[int, ...] | None = None, *, again: bool = False) -> bytes:
        """Uncompressed MVT of ``tile`` (``b""`` when empty), bypassing the tile cache.

        ``layer_versions`` (the per-layer versions of the tile's key, in ``key_layers`` order) and
        ``again`` (this address was rendered before: an edit moved its key): each layer's bytes are
        kept under the layer's own version, and a layer whose version did not move is taken from
        there instead of being encoded again — when one event changes, the live tile re-encodes the
        events, not the thousands of devices and cameras beside them. The result is byte for byte
        a full render (an MVT is its layers concatenated; see :mod:`tiles.mvt_parts`). Parts are
        kept only for addresses rendered more than once, the ones edits keep touching.
        """
        versions = versions if versions is not None else self.versions.get()
        plans = plan_tile(tile, specs, self.extents(specs, versions))
        if not plans:
            return b""
        if layer_versions is None or len(plans) < 2 or self._parts.max_bytes == 0:
            return self.encoder.encode(tile, plans, self.feature_cap)
        own = dict(zip((s.id for s in specs), zip(key_layers(specs, tile.z), layer_versions, strict=True), strict=True))
        keys = {p.spec.id: f"{p.spec.id}:{own[p.spec.id][0]}.{own[p.spec.id][1]}:{tile.z}/{tile.x}/{tile.y}"
                             f":{self.feature_cap}:{ENCODING_VERSION}" for p in plans}
        parts = {name: self._parts.get(k) for name, k in keys.items()}
        todo = [p for p in plans if parts[p.spec.id] is None]
        if todo and (again or len(todo) < len(plans)):
            fresh = split_layers(self.encoder.encode(tile, todo, self.feature_cap))
            for p in todo:
                parts[p.spec.id] = part = fresh.get(p.spec.id, b"")
                self._parts.set(keys[p.spec.id], part)
        elif todo:  # a first render: nothing kept (most addresses are never edited)
            return self.encoder.encode(tile, plans, self.feature_cap)
        return b"".join(parts[p.spec.id] or b"" for p in plans)

    def cached(self, specs: Sequence[LayerSpec], tile: Tile, encoding: str,
               ids: tuple[str, ...] | None = None, *, stale_ok: bool = True) -> TileResult | None:
        """Memory-cache lookup that never blocks on I/O: ``None`` if versions are stale or the tile is not cached.

        ``TileResult.body`` is ``None``-free: a result is only returned on a hit. ``stale_ok``: the
        previous version may answer (:meth:`_stale`).
        """
        self.last_request = now = time.monotonic()  # background work backs off while viewers are served
        self._note_demand(tile, now)
        versions = self.versions.peek()
        if versions is None:
            return None
        key, tv, ids = self._key(specs, tile, versions, ids)
        body = self.cache.get_memory(f"{key}:{encoding}")
        if body is None:
            return self._stale(specs, tile, encoding, ids, tv) if stale_ok else None
        _HIT.inc()
        return TileResult(body, key, encoding)

    def etag_if_fresh(self, specs: Sequence[LayerSpec], tile: Tile) -> str | None:
        versions = self.versions.peek()
        return None if versions is None else self.etag(specs, tile, versions)

    def tile(self, specs: Sequence[LayerSpec], tile: Tile, encoding: str = "gzip", *,
             stale_ok: bool = False, background: bool = False) -> TileResult:
        """The tile compressed for ``encoding``: memory → Redis → render, filling the tiers on the way.

        gzip is the form shared through Redis; other encodings are made from it (or from
        the fresh render, or from another encoding in memory) and kept in this process only. With no cache at all nothing is
        compressed that the client did not ask for. ``stale_ok``: the previous version may
        answer (see :meth:`_stale`) instead of a render. ``background``: no client is waiting
        (the warmer, a stale refresh), so the lookup is not counted as a hit or miss.
        """
        if not background:
            self._note_demand(tile, time.monotonic())
        versions = self.versions.get()
        key, tv, ids = self._key(specs, tile, versions)
        if not self.cache.enabled:
            return TileResult(compress(self.render(specs, tile, versions), encoding), key, encoding)
        body = self.cache.get(f"{key}:{encoding}")
        if body is not None:
            if not background:
                _HIT.inc()
            self._remember(ids, tile, key, tv, versions)
            return TileResult(body, key, encoding)
        raw_cached = self._raw_from_other_encoding(key, encoding)
        if raw_cached is not None:
            if not background:
                _HIT.inc()
            body = compress(raw_cached, encoding)
        else:
            if stale_ok:
                stale = self._stale(specs, tile, encoding, ids, tv)
                if stale is not None:
                    return stale
            if not background:
                _MISS.inc()
                MISSES_BY_ZOOM.labels(str(tile.z)).inc()
            started = time.monotonic()
            raw = self.render(specs, tile, versions, tv, again=(ids, tile) in self._latest)
            if encoding != "gzip" and self.cache.redis is not None:  # the form other workers read
                self.cache.set(f"{key}:gzip", gzip_bytes(raw) if raw else b"")
            body = compress(raw, encoding)
            self._note_render(ids, tile, started)
        self.cache.set(f"{key}:{encoding}", body, shared=encoding == "gzip")
        self._remember(ids, tile, key, tv, versions)
        return TileResult(body, key, encoding)

    def _raw_from_other_encoding(self, key: str, encoding: str) -> bytes | None:
        """The uncompressed tile under ``key`` from a form already cached in another encoding (gzip
        from memory or Redis; br or identity from memory), or ``None``. The gzip form is made at
        render time only when Redis shares it: a re-render for br-only clients (every browser)
        then costs one compression, not two; a gzip client is served by decompressing the br form."""
        if encoding != "gzip":
            canonical = self.cache.get(f"{key}:gzip")
            if canonical is not None:
                return gunzip_bytes(canonical) if canonical else b""
        for other in ("br", "identity"):
            if other != encoding:
                body = self.cache.get_memory(f"{key}:{other}")
                if body is not None:
                    return brotli.decompress(body) if other == "br" and body else body
        return None

    def _note_render(self, ids: tuple[str, ...], tile: Tile, started: float) -> None:
        renders = self._renders
        if len(renders) > 200_000:  # bounded: a forgotten tile's next re-render is simply not paced
            renders.clear()
        end = time.monotonic()
        renders[(ids, tile)] = (end, end - started)

    async def fresh_versions_async(self) -> None:
        """Read the layer versions again if they are past ``version_ttl``, on the render threads;
        callers arriving meanwhile wait for the same read. The cached-tile front calls this so that
        the first requests after the TTL — a burst of revalidations from nginx's tile cache, say —
        are still answered from memory instead of each going down the full route. Raises what the
        read raises (the caller then leaves the request to the full route)."""
        if self.versions.peek() is not None:
            return
        loop = asyncio.get_running_loop()
        running = self._versions_refresh
        if running is None or running[0] is not loop or running[1].done():
            running = self._versions_refresh = (loop, loop.run_in_executor(self._pool(), self.versions.get))
        await asyncio.shield(running[1])

    async def tile_async(self, specs: Sequence[LayerSpec], tile: Tile, encoding: str, *,
                         stale_ok: bool = True) -> TileResult:
        """:meth:`tile` on the render threads (the event loop never waits on the database)."""
        loop = asyncio.get_running_loop()
        # the request's context goes along: its read-replica routing (twin/replicas.py) applies to the render
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self._pool(), partial(ctx.run, self.tile, specs, tile, encoding, stale_ok=stale_ok))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._encoder is not None:
            self._encoder.close()
        self.versions.close()
        self.cache.close()


#: Most of one core the re-renders of one tile address may take while edits keep touching it
#: (:meth:`TileService.rerender_due`).
RERENDER_SHARE = 0.05

__all__ = ["ENCODINGS", "RERENDER_SHARE", "MAX_LAYERS_PER_TILE", "STALE_CACHE_CONTROL", "TileResult", "TileService", "compress"]
