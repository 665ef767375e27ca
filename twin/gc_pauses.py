"""Garbage-collector pauses of a long-running server: freeze the start-up heap, count the pauses.

CPython's cyclic collector stops every thread of the process while it runs. Its oldest
generation scans *every* tracked object — in a twin worker after start-up that is
~230,000 (FastAPI, SQLAlchemy, shapely, numpy, the routers, the live registry and state) —
and it runs every few seconds under a steady stream of allocations (the live layers make a few
dicts per reading and per subscriber). Each such collection took 100–400 ms on the 2-core
bench machine: all the event loop's frames of that moment wait for it, which made most of the
live stream's p99 (docs/benchmarks.md, "Live layers").

:func:`freeze_startup_heap`, called once the app has started, collects once and moves every
object then alive into the permanent generation (:func:`gc.freeze`): later collections scan
only what was made since, so a full one costs milliseconds. Frozen objects are still freed by
reference counting when the last reference goes; only a reference *cycle* among them would
stay (start-up objects live as long as the process anyway). It happens once per process: a
process that builds several apps (the tests) freezes only at the first start, so what later
apps leave behind is still collected. ``TWIN_GC_FREEZE=false`` leaves the collector as Python
ships it.

:func:`watch` adds ``twin_gc_pause_seconds`` (a histogram per generation) to ``/metrics``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("twin.gc")

PAUSES = Histogram("twin_gc_pause_seconds", "Cyclic garbage collections (every thread of the worker waits)",
                   ["generation"], buckets=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))
_started = [0.0]
_watching = [False]
_frozen = [False]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        PAUSES.labels(str(info.get("generation", 0))).observe(time.perf_counter() - _started[0])


def watch() -> None:
    """Time every collection into ``twin_gc_pause_seconds`` (once per process)."""
    if not _watching[0]:
        _watching[0] = True
        gc.callbacks.append(_callback)


def freeze_startup_heap() -> int:
    """Collect, then freeze what is alive (see the module doc), once per process; returns the number of
    objects frozen (0 when this process has frozen before)."""
    if _frozen[0]:
        return 0
    _frozen[0] = True
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    n = gc.get_freeze_count()
    log.info("gc: %d start-up objects frozen (%.0f ms); later collections skip them", n,
             1000 * (time.perf_counter() - t0))
    return n
