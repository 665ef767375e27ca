"""The live-layer publish/subscribe hub.

Everything that changes on a live layer — a device reading, an event opened by an
alarm — is one *change* ``{"op": "add"|"update"|"remove", "layer": str, "feature":
GeoJSON Feature}``, published with :meth:`Hub.publish`. Every subscriber (a WebSocket
or SSE client) has its own bounded queue:

* **every change while the client keeps up**: below ``coalesce_after`` queued changes
  (a quarter of the queue size by default) each change is queued, so a client that keeps
  up sees every reading;
* **coalesce when it lags**: from ``coalesce_after`` queued changes on, a change to a
  feature still waiting in the queue replaces what waits for it (the client only needs
  the latest state of each feature; counted in ``twin_live_hub_coalesced_total``);
* **drop oldest**: when the queue holds ``maxsize`` different features, the oldest
  one is dropped (counted in ``twin_live_hub_dropped_total``).

So a slow or stalled client never blocks ingest or other clients, and its memory is
bounded. Publishing never waits for a subscriber.

**Frames** (:class:`Pacer`, one per event loop): a subscriber's consumer is woken by its loop's
pacer, not by every publish: the first change after a quiet spell goes out at once, then the
pacer ticks every ``frame_s`` (25 ms) while changes keep coming and wakes, in one pass, every
subscriber with something queued — one cross-thread call and one timer per loop and tick, not
per subscriber and batch. A subscription with a synchronous consumer (``Subscription.push``, the
WebSocket's :class:`layers.push.Pusher`) has its frame built and sent in the tick itself, with no
task to wake; others (SSE) have their task woken. Under load the tick lengthens by itself (up to ``frame_max_s``,
50 ms): when the worker's threads used more than 90 % of a core since the last tick (they share
one GIL), or the tick itself ran late (the event loop is behind), the next one is half as long
again, so frames grow and their count falls instead of the worker falling behind; it shrinks
back as the load goes. A change shared by several subscribers is serialised once
per loop and tick (:meth:`Pacer.frame`), not once per subscriber.

Backends (``TWIN_HUB_URL``): in-process for one worker; ``redis://…`` (pub/sub) or
``nats://…`` so every worker of ``twin serve --workers N`` and every host sees every
change. With a shared backend, :meth:`Hub.publish` sends the change out and every
worker (the publishing one included) delivers it to its own subscribers when it comes
back, so all workers see one order.

Subscriptions filter by layer and bbox (CRS84 lon/lat). A feature that moves out of a
subscriber's bbox reaches it as ``remove``; one that enters it as ``add``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("twin.live.hub")

Change = dict[str, Any]
BBox = tuple[float, float, float, float]

DROPPED = Counter("twin_live_hub_dropped_total", "Changes dropped from full subscriber queues (oldest first)")
COALESCED = Counter("twin_live_hub_coalesced_total", "Changes merged into a queued change of the same feature")
PUBLISHED = Counter("twin_live_hub_delivered_total", "Changes delivered by the hub to this worker", ["layer"])
SUBSCRIBERS = Gauge("twin_live_subscribers", "Open live-stream subscribers in this worker")
FRAME_INTERVAL = Histogram("twin_live_frame_interval_seconds", "Tick of the live-stream pacer (lengthens under load)",
                           buckets=(0.025, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25))


class Pacer:
    """Wakes the consumers of one event loop's subscriptions, one tick at a time (see the module
    doc), and serialises the changes they send (once per change, shared by every subscriber)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, frame_s: float = 0.025, frame_max_s: float = 0.05,
                 busy_share: float = 0.9, cache_size: int = 4096):
        self.loop = loop
        self.frame_s = frame_s
        self.frame_max_s = max(frame_s, frame_max_s)
        self.busy_share = busy_share
        self.interval = frame_s
        self._lock = threading.Lock()
        self._ready: set[Subscription] = set()
        self._armed = False  # a tick is scheduled (or running): producers only add to _ready
        self._mark: tuple[float, float] | None = None  # (wall, process CPU) at the last tick
        self._due = 0.0  # when the next tick should run
        self._encoded: dict[int, tuple[Change, bytes]] = {}
        self._cache_size = cache_size

    def ready(self, sub: Subscription) -> None:
        """``sub`` has changes queued (any thread). Arms a tick unless one is pending."""
        with self._lock:
            self._ready.add(sub)
            if self._armed:
                return
            self._armed = True
        try:
            self.loop.call_soon_threadsafe(self._tick)
        except RuntimeError:  # loop closed: its subscribers are gone
            sub.closed = True

    def _tick(self) -> None:
        with self._lock:
            subs, self._ready = self._ready, set()
            if not subs:  # quiet: the next change goes out at once
                self._armed = False
                self._mark = None
                self.interval = self.frame_s
                return
        # the frames this tick wakes share one encoding per change; what earlier ticks encoded goes (it only
        # kept thousands of live objects for the garbage collector's full passes to scan: twin/gc_pauses.py)
        self._encoded = {}
        wall, cpu = time.perf_counter(), time.process_time()
        if self._mark is not None:
            # the worker is busy when its threads together (ingest, hub, frames: they share one GIL)
            # used more than busy_share of a core since the last tick, or this tick ran late
            busy = (cpu - self._mark[1]) / max(1e-6, wall - self._mark[0])
            late = wall - self._due
            if busy > self.busy_share or late > self.interval / 4:
                self.interval = min(self.frame_max_s, self.interval * 1.5)
            elif busy < self.busy_share * 0.75 and late < self.interval / 10:  # (was busy_share / 2: a worker at
                # half a core, as at 2,000 readings/s, never shrank back after one late tick and stayed at frame_max_s)
                self.interval = max(self.frame_s, self.interval / 1.5)
        self._mark = (wall, cpu)
        self._due = wall + self.interval
        FRAME_INTERVAL.observe(self.interval)
        self.loop.call_later(self.interval, self._tick)  # before the sends: they are not the next tick's lateness
        for sub in subs:
            push = sub.push
            if push is not None:  # a synchronous consumer (layers.push): frames go out in this tick
                try:
                    push()
                except Exception:  # one broken stream must not stop the others'
                    log.exception("live push failed")
            elif sub._event is not None:  # a consumer task: it takes its frame in its own turn
                sub._event.set()

    def frame(self, changes: Sequence[Change]) -> bytes:
        """``{"type": "changes", "changes": [...]}`` as JSON bytes, each change serialised once for all
        the loop's subscribers (loop thread only)."""
        cache = self._encoded
        parts = []
        for ch in changes:
            hit = cache.get(id(ch))
            if hit is not None and hit[0] is ch:
                parts.append(hit[1])
                continue
            b = orjson.dumps(ch)
            cache[id(ch)] = (ch, b)  # the reference keeps the id from being reused while cached
            parts.append(b)
        if len(cache) > self._cache_size:  # oldest half out (dicts keep insertion order)
            for k in list(cache)[: len(cache) // 2]:
                del cache[k]
        return b'{"type":"changes","changes":[' + b",".join(parts) + b"]}"


def feature_key(change: Change) -> tuple[str, str]:
    return change["layer"], str(change["feature"].get("id"))


def feature_bounds(feature: dict[str, Any]) -> BBox | None:
    """Bounds of a GeoJSON feature's geometry (points fast, other shapes through shapely)."""
    geom = feature.get("geometry")
    if not geom:
        return None
    if geom.get("type") == "Point":
        x, y = geom["coordinates"][:2]
        return (float(x), float(y), float(x), float(y))
    import shapely.geometry

    b = shapely.geometry.shape(geom).bounds
    return None if any(np.isnan(b)) else (b[0], b[1], b[2], b[3])


class Subscription:
    """One subscriber's filter and bounded queue. Thread-safe on the producer side; consumed from the
    asyncio loop it was created in.

    While the client keeps up (fewer than ``min(coalesce_after, maxsize)`` changes queued) the queue
    is a plain list in arrival order, extended once per published batch — the usual case costs no
    per-change work. Past that it is regrouped per feature (in order of first arrival), where
    coalescing and dropping happen; once drained it is a list again."""

    def __init__(self, layers: Iterable[str] | None, bbox: BBox | None, maxsize: int,
                 loop: asyncio.AbstractEventLoop | None = None, coalesce_after: int | None = None,
                 pacer: Pacer | None = None):
        self.layers: frozenset[str] | None = frozenset(layers) if layers else None
        self.bbox = bbox
        self.maxsize = maxsize
        self.coalesce_after = max(1, maxsize // 4) if coalesce_after is None else coalesce_after
        self.dropped = 0
        self.coalesced = 0
        self.version = 0  # bumped by reset(): the hub's filter arrays follow it
        self._lock = threading.Lock()
        self._list: list[Change] = []  # keeping up: changes in arrival order
        self._fast = max(1, min(self.coalesce_after, maxsize))  # the list's limit
        self._pending: dict[tuple[str, str], list[Change]] = {}  # lagging: per feature, first arrival first
        self._count = 0  # changes queued (a feature may have several while the client keeps up)
        self._loop = loop
        self._event = asyncio.Event() if loop is not None else None
        self._signalled = False
        self.pacer = pacer
        #: a synchronous consumer (``layers.push.Pusher.push``) the pacer calls on its tick instead of
        #: waking a task waiting in :meth:`next_batch`
        self.push: Callable[[], None] | None = None
        self.closed = False

    # -- producer side -------------------------------------------------------------------
    def offer(self, changes: Sequence[Change]) -> None:
        """Queue ``changes`` (already filtered for this subscriber): keep all while the queue is
        short, coalesce per feature once it is ``coalesce_after`` long, drop the oldest feature when full."""
        wake = False
        coalesced = dropped = 0
        with self._lock:
            pending = self._pending
            if not pending and self._count + len(changes) <= self._fast:  # keeping up: one extend
                self._list.extend(changes)
                self._count += len(changes)
                changes = ()
            elif self._list:  # falling behind: regroup what waits per feature, then go on per change
                for ch in self._list:
                    pending.setdefault((ch["layer"], str(ch["feature"].get("id"))), []).append(ch)
                self._list = []
            for ch in changes:
                key = (ch["layer"], str(ch["feature"].get("id")))  # feature_key, inlined: the hot loop
                queued = pending.get(key)
                if queued is not None:
                    if self._count < self.coalesce_after:  # keeping up: the client gets every change
                        queued.append(ch)
                        self._count += 1
                        continue
                    n = len(queued)  # lagging: only the latest state of this feature waits
                    self._count -= n
                    coalesced += n
                    first = queued[0]["op"]
                    if first == "add" and ch["op"] == "remove":
                        del pending[key]  # never seen by the client: nothing to remove
                        coalesced += 1
                        continue
                    pending[key] = [{**ch, "op": "add"} if first == "add" else ch]
                    self._count += 1
                    continue
                if len(pending) >= self.maxsize:
                    old = pending.pop(next(iter(pending)))  # the oldest feature
                    self._count -= len(old)
                    dropped += len(old)
                pending[key] = [ch]
                self._count += 1
            self.coalesced += coalesced
            self.dropped += dropped
            if self._count and not self._signalled:
                self._signalled = wake = True
        if coalesced:  # once per batch: a stalled subscriber's queue does no per-change metric work
            COALESCED.inc(coalesced)
        if dropped:
            DROPPED.inc(dropped)
        if not wake:
            return
        if self.pacer is not None:
            self.pacer.ready(self)
        elif self._loop is not None and self._event is not None:
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # loop closed: the subscriber is gone
                self.closed = True

    # -- consumer side -------------------------------------------------------------------
    def drain(self, max_items: int | None = None) -> list[Change]:
        with self._lock:
            pending = self._pending
            if self._list:  # keeping up (the usual case)
                if max_items is None or max_items >= len(self._list):
                    out, self._list = self._list, []
                else:
                    out, self._list = self._list[:max_items], self._list[max_items:]
            elif max_items is None or max_items >= self._count:  # everything
                out = [ch for queued in pending.values() for ch in queued]
                pending.clear()
            else:
                out = []
                while len(out) < max_items:
                    key, queued = next(iter(pending.items()))
                    room = max_items - len(out)
                    if len(queued) <= room:
                        del pending[key]
                        out.extend(queued)
                    else:
                        out.extend(queued[:room])
                        del queued[:room]
            self._count -= len(out)
            if not self._count:
                self._signalled = False
            return out

    async def next_batch(self, max_items: int = 500, timeout: float | None = None) -> list[Change]:
        """Wait for changes (at most ``timeout`` seconds) and take up to ``max_items``; ``[]`` after a timeout
        or a :meth:`wake`. With a pacer, changes are taken when its tick wakes this consumer (what arrives
        between two ticks shares one frame); without one, as soon as there are any."""
        assert self._event is not None, "subscription has no event loop"
        if self.pacer is not None:
            if not self._event.is_set():
                try:
                    if timeout is None:
                        await self._event.wait()
                    else:
                        await asyncio.wait_for(self._event.wait(), timeout)
                except TimeoutError:
                    return []
            self._event.clear()
            batch = self.drain(max_items)
            with self._lock:
                rest = self._count > 0
            if rest:  # more than max_items: the rest goes at the next tick
                self.pacer.ready(self)
            return batch
        self._event.clear()
        batch = self.drain(max_items)
        if batch:
            return batch
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return []
        return self.drain(max_items)  # may be [] when woken by wake()

    def pending_count(self) -> int:
        """Changes waiting for the client."""
        with self._lock:
            return self._count

    def wake(self) -> None:
        """Wake the consumer even with nothing queued (it has something else to do)."""
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    def reset(self, layers: Iterable[str] | None, bbox: BBox | None) -> None:
        """Move the subscription (a new snapshot follows); queued changes are forgotten."""
        with self._lock:
            self.layers = frozenset(layers) if layers else None
            self.bbox = bbox
            self._pending.clear()
            self._list = []
            self._count = 0
            self._signalled = False
            self.version += 1


class Hub:
    """Publish/subscribe of live changes within one worker, optionally joined to others by a backend."""

    def __init__(self, queue_size: int = 2000, coalesce_after: int | None = None):
        self.queue_size = queue_size
        self.coalesce_after = coalesce_after  # None: a quarter of queue_size
        self.frame_s = 0.025  # the pacers' tick: shortest time between two frames to one subscriber
        self.frame_max_s = 0.05  # the longest it grows to under load (bounds the latency it adds)
        self._pacers: dict[asyncio.AbstractEventLoop, Pacer] = {}
        self._subs: list[Subscription] = []
        self._subs_lock = threading.Lock()
        self._positions: dict[tuple[str, str], BBox | None] = {}  # last known bounds per feature
        self._deliver_lock = threading.Lock()
        self._listeners: list[Callable[[list[Change]], None]] = []

    # -- publishing ------------------------------------------------------------------------
    def publish(self, layer: str, change: Change) -> None:
        """Publish one change on ``layer`` (the interface other live modules use)."""
        self.publish_many([{**change, "layer": layer}])

    def publish_many(self, changes: list[Change]) -> None:
        if changes:
            self._send(changes)

    def _send(self, changes: list[Change]) -> None:
        """In-process: deliver at once. Shared backends override this and deliver on receipt."""
        self.deliver(changes)

    def remember(self, changes: list[Change]) -> None:
        """Record where features are without delivering (the state a worker starts from), so their
        first change reaches bbox subscribers as ``update``, not ``add``."""
        with self._deliver_lock:
            for ch in changes:
                self._positions[feature_key(ch)] = feature_bounds(ch["feature"])

    def add_listener(self, fn: Callable[[list[Change]], None]) -> None:
        """Call ``fn(changes)`` for every delivered batch (the live state keeps itself current so)."""
        self._listeners.append(fn)

    # -- delivery --------------------------------------------------------------------------
    def deliver(self, changes: list[Change]) -> None:
        """Hand ``changes`` to this worker's listeners and matching subscribers (vectorised filter)."""
        if not changes:
            return
        with self._deliver_lock:
            n = len(changes)
            new_b = np.full((n, 4), np.nan)
            old_b = np.full((n, 4), np.nan)
            layers = np.empty(n, dtype=object)
            removes = np.zeros(n, dtype=bool)
            for i, ch in enumerate(changes):
                key = feature_key(ch)
                layers[i] = key[0]
                prev = self._positions.get(key)
                if prev is not None:
                    old_b[i] = prev
                if ch["op"] == "remove":
                    removes[i] = True
                    self._positions.pop(key, None)
                    if prev is not None:
                        new_b[i] = prev
                else:
                    b = feature_bounds(ch["feature"])
                    self._positions[key] = b
                    if b is not None:
                        new_b[i] = b
            for layer, count in zip(*np.unique(layers.astype(str), return_counts=True), strict=True):
                PUBLISHED.labels(layer).inc(int(count))  # once per layer and batch: labels() is not free
            for fn in self._listeners:
                try:
                    fn(changes)
                except Exception:  # a broken listener must not stop the stream
                    log.exception("live listener failed")
            with self._subs_lock:
                subs = [sub for sub in self._subs if not sub.closed]
            if subs:
                self._offer_all(subs, changes, layers, new_b, old_b, removes)

    @staticmethod
    def _offer_all(subs: list[Subscription], changes: list[Change], layers: np.ndarray, new_b: np.ndarray,
                   old_b: np.ndarray, removes: np.ndarray) -> None:
        """Filter ``changes`` for every subscriber at once (changes × subscribers boolean arrays), so a
        batch costs a few numpy operations however many subscribers there are, then queue each one's share."""
        n, s = len(changes), len(subs)
        boxes = np.array([sub.bbox if sub.bbox is not None else (-np.inf, -np.inf, np.inf, np.inf) for sub in subs],
                         dtype=float).reshape(s, 4)
        anywhere = np.array([sub.bbox is None for sub in subs])
        with np.errstate(invalid="ignore"):
            now_in = ((new_b[:, 0:1] <= boxes[:, 2]) & (new_b[:, 2:3] >= boxes[:, 0])
                      & (new_b[:, 1:2] <= boxes[:, 3]) & (new_b[:, 3:4] >= boxes[:, 1]))
            was_in = ((old_b[:, 0:1] <= boxes[:, 2]) & (old_b[:, 2:3] >= boxes[:, 0])
                      & (old_b[:, 1:2] <= boxes[:, 3]) & (old_b[:, 3:4] >= boxes[:, 1]))
        now_in[:, anywhere] = True  # no bbox: every change, as it is (features without geometry too)
        was_in[:, anywhere] = True
        now_in &= ~removes[:, None]
        wanted = now_in | was_in
        for layer in set(layers.tolist()):
            takes = np.array([sub.layers is None or layer in sub.layers for sub in subs])
            if not takes.all():
                wanted[np.ix_(layers == layer, ~takes)] = False
        # what each subscriber sees: 0 the change as is, 1 an add (entered its bbox), 2 a remove (left it)
        kind = np.zeros((n, s), dtype=np.int8)
        kind[now_in & ~was_in] = 1
        kind[was_in & ~now_in & ~removes[:, None]] = 2
        cols, rows = np.nonzero(wanted.T)  # grouped by subscriber, changes in order within each
        if not cols.size:
            return
        kinds = kind[rows, cols]
        cuts = np.flatnonzero(np.diff(cols)) + 1
        first = np.concatenate(([0], cuts))  # np.r_ cost ~80 µs a call: a third of a small batch's filter
        starts, ends = first.tolist(), np.concatenate((cuts, [cols.size])).tolist()
        rows_l, kinds_l, who = rows.tolist(), kinds.tolist(), cols[first].tolist()
        for j, a, b in zip(who, starts, ends, strict=True):
            seg, ks = rows_l[a:b], kinds_l[a:b]
            if any(ks):
                out = [changes[i] if k == 0 else {**changes[i], "op": "add" if k == 1 else "remove"}
                       for i, k in zip(seg, ks, strict=True)]
            else:
                out = [changes[i] for i in seg]
            subs[j].offer(out)

    # -- subscribers -----------------------------------------------------------------------
    def subscribe(self, layers: Iterable[str] | None = None, bbox: BBox | None = None,
                  loop: asyncio.AbstractEventLoop | None = None) -> Subscription:
        with self._subs_lock:
            pacer = None
            if loop is not None:
                for old in [lp for lp in self._pacers if lp.is_closed()]:
                    del self._pacers[old]
                pacer = self._pacers.get(loop)
                if pacer is None:
                    pacer = self._pacers[loop] = Pacer(loop, self.frame_s, self.frame_max_s)
            sub = Subscription(layers, bbox, self.queue_size, loop, self.coalesce_after, pacer)
            self._subs.append(sub)
        SUBSCRIBERS.inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        with self._subs_lock:
            if sub in self._subs:
                self._subs.remove(sub)
                SUBSCRIBERS.dec()

    @property
    def subscriber_count(self) -> int:
        with self._subs_lock:
            return len(self._subs)

    def start(self) -> None:
        """Connect the backend (nothing to do in-process)."""

    def close(self) -> None:
        with self._subs_lock:
            for sub in self._subs:
                sub.closed = True
                SUBSCRIBERS.dec()
            self._subs.clear()


def make_hub(url: str | None, channel: str = "twin.live", queue_size: int = 2000, frame_s: float = 0.025,
             frame_max_s: float = 0.05) -> Hub:
    """The hub for ``TWIN_HUB_URL``: in-process (None), ``redis://…`` or ``nats://…``."""
    hub = _make_hub(url, channel, queue_size)
    hub.frame_s, hub.frame_max_s = frame_s, max(frame_s, frame_max_s)
    return hub


def _make_hub(url: str | None, channel: str, queue_size: int) -> Hub:
    if not url:
        return Hub(queue_size)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from layers.hub_backends import RedisHub

        return RedisHub(url, channel, queue_size)
    if scheme in ("nats", "tls"):
        from layers.hub_backends import NatsHub

        return NatsHub(url, channel, queue_size)
    from twin.errors import InvalidParameter

    raise InvalidParameter(f"TWIN_HUB_URL must start with redis:// or nats://, not {url!r}")
