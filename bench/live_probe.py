"""Where the live stream's latency comes from: per-stage ages, event-loop lag, GC pauses, flushes.

``bench/live.py --probe DIR`` starts twin through :func:`serve` instead of ``twin serve``: the same
server, with wrappers around the live path that stamp every reading's age (now − its ``t_sent``,
the publisher's clock, same machine) at each stage, and write them to ``DIR`` every 2 s:

* ``paho``: the MQTT network thread got the message (broker + socket);
* ``accept``: the ingest worker starts on its batch (+ the hand-off queue and the 10 ms batch window);
* ``published``: the hub has queued the batch for every subscriber (+ parse, state, alarms, hub filter);
* ``framed``: a subscriber's consumer builds its frame (+ the pacer's tick, the loop's turn);
  one value per delivery, so its quantiles compare with the clients' publish → receive;
* ``sent``: ``ws.send_text`` returned for that frame (+ the send path);
* ``tick_late``: how late each pacer tick ran against its due time (the event loop's lag);
* ``lag``: a 5 ms timer's lateness on the event loop, sampled all along;
* ``gc``, ``gc_cpu``: each collection's duration (wall, and CPU of the collecting thread) and
  generation (``gc.callbacks``);
* ``flush``: each history flush's duration;
* with ``TWIN_PROBE_CENSUS=1``, ``heap-N.txt``: the objects the collector still scans, by type
  (taken every 20 s; it holds the GIL for tens of ms, so not in latency runs).

Each series is ``(time, value)`` pairs of float64 in ``DIR/<name>.f64``; :func:`summary` reads them.
Diagnostic only: the wrappers cost the server CPU, most of it on the event loop (a record per
delivery when framed, a regular-expression pass over every frame sent): phase A's CPU per reading
was 0.37–0.43 ms with it against 0.27–0.32 ms without, so take latencies from runs without it.
"""

from __future__ import annotations

import array
import asyncio
import gc
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

SERIES = ("paho", "accept", "published", "framed", "sent", "tick_late", "lag", "gc", "gc_cpu", "flush", "batch")
_data: dict[str, array.array] = {k: array.array("d") for k in SERIES}
_lock = threading.Lock()
T_SENT = re.compile(rb'"t_sent":([-+0-9.eE]+)')


def _rec(name: str, t: float, v: float) -> None:
    a = _data[name]
    a.append(t)
    a.append(v)


def install(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    import layers.history as history
    import layers.hub as hub
    import layers.mqtt as mqtt
    import layers.service as service

    # -- MQTT network thread ------------------------------------------------------------------
    on_message = mqtt.MqttIngest._on_message

    def _on_message(self: Any, client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        m = T_SENT.search(msg.payload)
        if m:
            _rec("paho", now, now - float(m.group(1)))
        on_message(self, client, userdata, msg)

    mqtt.MqttIngest._on_message = _on_message  # type: ignore[method-assign]

    # -- ingest worker -----------------------------------------------------------------------------
    accept = service.LiveService.accept

    def _accept(self: Any, parsed: Any, source: str) -> Any:
        now = time.time()
        sents = [r.values.get("t_sent") for r, _ in parsed]
        for s in sents:
            if s is not None:
                _rec("accept", now, now - s)
        out = accept(self, parsed, source)
        done = time.time()
        _rec("batch", done, done - now)
        for s in sents:
            if s is not None:
                _rec("published", done, done - s)
        return out

    service.LiveService.accept = _accept  # type: ignore[method-assign]

    # -- pacer: frames, ticks, loop lag ------------------------------------------------------------
    frame = hub.Pacer.frame

    def _frame(self: Any, changes: Any) -> bytes:
        now = time.time()
        for ch in changes:
            s = ch["feature"]["properties"]["values"].get("t_sent")
            if s is not None:
                _rec("framed", now, now - s)
        return frame(self, changes)

    hub.Pacer.frame = _frame  # type: ignore[method-assign]

    tick = hub.Pacer._tick

    def _tick(self: Any) -> None:
        now = time.perf_counter()
        if self._mark is not None:  # a tick of a running stream (the first after a quiet spell has no due time)
            _rec("tick_late", time.time(), now - self._due)
        tick(self)

    hub.Pacer._tick = _tick  # type: ignore[method-assign]

    init = hub.Pacer.__init__

    def _init(self: Any, loop: asyncio.AbstractEventLoop, *a: Any, **kw: Any) -> None:
        init(self, loop, *a, **kw)

        def probe(due: float) -> None:
            now = time.perf_counter()
            _rec("lag", time.time(), now - due)
            loop.call_later(0.005, probe, now + 0.005)

        loop.call_soon_threadsafe(lambda: loop.call_later(0.005, probe, time.perf_counter() + 0.005))

    hub.Pacer.__init__ = _init  # type: ignore[method-assign]

    # -- the WebSocket send: wrap starlette's send_text for /live/ws ---------------------------------
    from starlette.websockets import WebSocket

    send_text = WebSocket.send_text

    async def _send_text(self: Any, data: str) -> None:
        await send_text(self, data)
        if data.startswith('{"type":"changes"'):
            now = time.time()
            for m in T_SENT.finditer(data.encode()):
                _rec("sent", now, now - float(m.group(1)))

    WebSocket.send_text = _send_text  # type: ignore[method-assign]

    # -- history flushes ---------------------------------------------------------------------------
    write_batch = history.write_batch

    def _write_batch(*a: Any, **kw: Any) -> int:
        t0 = time.perf_counter()
        try:
            return write_batch(*a, **kw)
        finally:
            _rec("flush", time.time(), time.perf_counter() - t0)

    history.write_batch = _write_batch

    # -- garbage collector -------------------------------------------------------------------------
    started: list[float] = [0.0, 0.0]

    def _gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = time.perf_counter(), time.thread_time()
        else:
            now = time.time()
            _rec("gc", now, (time.perf_counter() - started[0]) + 10 * info["generation"])
            _rec("gc_cpu", now, (time.thread_time() - started[1]) + 10 * info["generation"])

    gc.callbacks.append(_gc)

    census = bool(os.environ.get("TWIN_PROBE_CENSUS"))

    def dump() -> None:
        k = 0
        while True:
            time.sleep(2)
            k += 1
            if census and k % 10 == 5:  # what the collector scans besides the frozen heap, by type (holds the GIL)
                import collections

                objs = gc.get_objects()
                kinds = collections.Counter(type(o).__name__ for o in objs)
                mods = collections.Counter(getattr(type(o), "__module__", "?") for o in objs)
                (out / f"heap-{k}.txt").write_text(f"{len(objs)} tracked, {gc.get_freeze_count()} frozen\n"
                                                   f"{kinds.most_common(40)}\n{mods.most_common(30)}\n")
                del objs
            for name, a in list(_data.items()):
                with open(out / f"{name}.f64.tmp", "wb") as f:
                    a.tofile(f)
                (out / f"{name}.f64.tmp").replace(out / f"{name}.f64")

    threading.Thread(target=dump, name="live-probe-dump", daemon=True).start()


def serve(out: str, argv: list[str]) -> None:
    install(Path(out))
    from gis_api.cli import main

    sys.exit(main(argv))


def summary(out: Path, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
    """Quantiles (ms) of every series between ``since`` and ``until`` (epoch seconds)."""
    import numpy as np

    res: dict[str, Any] = {}
    for name in SERIES:
        p = out / f"{name}.f64"
        if not p.exists():
            continue
        a = np.fromfile(p, dtype=np.float64)
        a = a[: len(a) // 2 * 2].reshape(-1, 2)
        a = a[(a[:, 0] >= since) & (a[:, 0] <= until)]
        if not len(a):
            continue
        v = a[:, 1]
        if name in ("gc", "gc_cpu"):
            gen = (v // 10).astype(int)
            res[name] = {f"gen{g}": {"n": int((gen == g).sum()), "total_ms": float((v[gen == g] % 10).sum() * 1000),
                                     "max_ms": float((v[gen == g] % 10).max() * 1000)}
                         for g in range(3) if (gen == g).any()}
            continue
        res[name] = {"n": len(v), **{f"p{q}": round(float(np.percentile(v, q)) * 1000, 1) for q in (50, 90, 99, 99.9)},
                     "max": round(float(v.max()) * 1000, 1)}
    return res


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        import json

        print(json.dumps(summary(Path(sys.argv[2]), *map(float, sys.argv[3:])), indent=1))
