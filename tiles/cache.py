"""Tile cache: a bytes-bounded in-process LRU, an optional Redis tier, and cheap data versions.

Keys carry, per layer in the tile, the version of the newest change that touches the
tile (its extent, from the database's change log, :mod:`twin.changes`), and the
encoding version, so an edit makes exactly the tiles it touches miss, at every zoom;
nothing has to be deleted. Values are the compressed bytes as sent (gzip, br or identity), so a hit
costs no compression.

:class:`LayerVersions` reads versions and new log rows at most once per ``ttl`` seconds;
a commit through the store's engine in this process invalidates it at once (an
engine event), so in-process edits show immediately; edits by other processes
or straight SQL show within ``ttl`` (default 1 s).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from sqlalchemy import event

from twin.changes import ChangeFeed, ChangeIndex

log = logging.getLogger("twin.tiles")

#: Per-entry bookkeeping counted against the memory budget on top of key and value.
_ENTRY_OVERHEAD = 100


class MemoryTileCache:
    """Thread-safe LRU of ``key → bytes`` bounded by total size (keys, values and overhead)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def set(self, key: str, value: bytes) -> None:
        cost = len(key) + len(value) + _ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(key) + len(old) + _ENTRY_OVERHEAD
            self._data[key] = value
            self._size += cost
            while self._size > self.max_bytes:
                k, v = self._data.popitem(last=False)
                self._size -= len(k) + len(v) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0

    @property
    def size_bytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._data)


class RedisTileCache:
    """Shared tier in Redis. Failures are logged and treated as misses: Redis is an accelerator."""

    def __init__(self, url: str, *, prefix: str = "twin:tile:", ttl_s: int = 7 * 24 * 3600):
        import redis

        self.prefix = prefix
        self.ttl_s = ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._warned = 0.0

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            log.warning("redis tile cache unavailable: %s", exc)
            self._warned = now

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get(self.prefix + key)  # type: ignore[return-value]
        except Exception as exc:  # redis down or slow: render instead
            self._failed(exc)
            return None

    def set(self, key: str, value: bytes) -> None:
        try:
            self.client.set(self.prefix + key, value, ex=self.ttl_s)
        except Exception as exc:
            self._failed(exc)

    def clear(self) -> None:
        """Delete this prefix's keys (tests, ``twin tiles clear``)."""
        try:
            keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
            for i in range(0, len(keys), 1000):
                self.client.delete(*keys[i : i + 1000])
        except Exception as exc:
            self._failed(exc)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover
            pass


class TileCache:
    """Memory LRU in front of an optional Redis tier; values are compressed tile bytes."""

    def __init__(self, memory_bytes: int = 256 * 2**20, redis_url: str | None = None, *,
                 redis_prefix: str = "twin:tile:"):
        self.memory = MemoryTileCache(memory_bytes)
        self.redis = RedisTileCache(redis_url, prefix=redis_prefix) if redis_url else None

    @property
    def enabled(self) -> bool:
        """False when neither tier keeps anything (``TWIN_TILE_CACHE_MB=0`` and no Redis)."""
        return self.memory.max_bytes > 0 or self.redis is not None

    def get_memory(self, key: str) -> bytes | None:
        return self.memory.get(key)

    def get(self, key: str) -> bytes | None:
        value = self.memory.get(key)
        if value is None and self.redis is not None:
            value = self.redis.get(key)
            if value is not None:
                self.memory.set(key, value)
        return value

    def set(self, key: str, value: bytes, *, shared: bool = True) -> None:
        """Store in memory and (when ``shared``) in Redis."""
        self.memory.set(key, value)
        if shared and self.redis is not None:
            self.redis.set(key, value)

    def clear(self) -> None:
        self.memory.clear()
        if self.redis is not None:
            self.redis.clear()

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


class LayerVersions:
    """Layer versions and the change index (:class:`twin.changes.ChangeFeed`), refreshed at most
    every ``ttl`` seconds and at once after a commit in this process.

    ``index`` answers which changes touch a tile; ``get()``/``peek()`` give the layer versions.
    """

    def __init__(self, store, ttl: float = 1.0, *, max_log_rows: int = 20_000):  # noqa: ANN001 - a SpatialStore
        self.store = store
        self.ttl = ttl
        self.feed = ChangeFeed(store.engine, max_rows=max_log_rows)
        self._versions: dict[str, int] = {}
        self._expires = 0.0
        self._gen = 0
        self._lock = threading.Lock()
        engine = store.engine
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine.pool, "checkin", self._on_checkin)

    # a commit fires before the database commits; the check-in after it is when
    # the new version is visible to others, so invalidate at both moments
    def _on_commit(self, conn) -> None:  # noqa: ANN001
        conn.info["twin_tiles_dirty"] = True
        self.invalidate()

    def _on_checkin(self, _dbapi_conn, record) -> None:  # noqa: ANN001
        if record is not None and record.info.pop("twin_tiles_dirty", False):
            self.invalidate()

    def close(self) -> None:
        """Stop listening to the engine's commits."""
        for target, name, fn in ((self.store.engine, "commit", self._on_commit),
                                 (self.store.engine.pool, "checkin", self._on_checkin)):
            if event.contains(target, name, fn):
                event.remove(target, name, fn)

    @property
    def index(self) -> ChangeIndex:
        """The change index as of the last refresh."""
        return self.feed.index

    def invalidate(self) -> None:
        """Forget the cached versions (call after writing through another engine or process)."""
        self._gen += 1
        self._expires = 0.0

    def peek(self) -> dict[str, int] | None:
        """The cached versions if still fresh, else ``None`` (never touches the database)."""
        if time.monotonic() < self._expires:
            return self._versions
        return None

    def get(self) -> dict[str, int]:
        fresh = self.peek()
        if fresh is not None:
            return fresh
        with self._lock:
            fresh = self.peek()
            if fresh is not None:
                return fresh
            started, gen = time.monotonic(), self._gen
            versions = self.feed.refresh()
            self._versions = versions
            # a commit while we were reading may not be in what we read: stay stale then
            self._expires = started + self.ttl if gen == self._gen else 0.0
            return versions


def tile_key(layers: Iterable[str], versions: Mapping[str, int], z: int, x: int, y: int, salt: str) -> str:
    """Cache key / ETag body of one tile: the layers with the newest change touching the tile
    (:meth:`twin.changes.ChangeIndex.tile_versions`), the address, the encoding."""
    parts = ",".join(f"{name}.{versions.get(name, 0)}" for name in layers)
    raw = f"{salt}|{parts}|{z}/{x}/{y}"
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


__all__ = ["LayerVersions", "MemoryTileCache", "RedisTileCache", "TileCache", "tile_key"]
