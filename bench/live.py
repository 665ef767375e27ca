"""Live layers: MQTT in → WebSocket out, against Mosquitto's own fan-out as the ceiling.

    PYTHONPATH=. .venv/bin/python bench/live.py                  # the brief's scale: 2,000/s, 200 subscribers
    PYTHONPATH=. .venv/bin/python bench/live.py --rate 300 --subscribers 20 --seconds 5   # small

Steps (broker, PostgreSQL and twin on loopback; twin in its own process, one worker):

1. ``--devices`` devices at random points of a 20 × 20 km box go into a fresh PostGIS database.
2. A paho publisher sends ``--rate`` readings/s at QoS 1 to ``{prefix}/devices/{code}``; each
   reading carries its send time, so every client measures publish → receive latency.
3. Phase A: ``--subscribers`` WebSocket clients, each with its own random bbox (5–30 % of the
   box), read the stream. Loss = readings of devices in a client's bbox that never reached it.
4. Phase B: the same plus one *stalled* client (whole box, never reads): its queue coalesces
   and drops; the others' p99 and the server's memory are compared with phase A.
5. Phase C: ``--subscribers`` MQTT clients subscribe to the same topics straight at Mosquitto
   (every reading to every client): the ceiling twin is reported against.
6. History: readings written straight to PostGIS through the ingest's batch writer, rows/s.

Numbers taken while other work shares the machine are noisy; the lead takes final figures on a
quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psutil
import shapely
import websockets
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.store import SpatialStore  # noqa: E402

BOX = (120.80, 31.60, 121.00, 31.80)


def fresh_db(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from twin.db import normalise_url

    eng = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def q(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000 if values else float("nan")


class Publisher(threading.Thread):
    def __init__(self, host: str, port: int, prefix: str, codes: list[str], rate: float):
        super().__init__(daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()
        self.prefix, self.codes, self.rate = prefix, codes, rate
        self.sent: list[tuple[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(1)
        t0 = time.perf_counter()
        k = 0
        while not self.stop.is_set():
            due = t0 + k / self.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            code = self.codes[int(rng.integers(len(self.codes)))]
            t = time.time()
            self.client.publish(f"{self.prefix}/devices/{code}",
                                orjson.dumps({"values": {"v": float(k), "t_sent": t}}), qos=1)
            self.sent.append((code, t))
            k += 1

    def finish(self) -> None:
        self.stop.set()
        self.join()
        self.client.loop_stop()


async def ws_client(url: str, bbox: tuple[float, ...], out: dict, stop: asyncio.Event) -> None:
    lat: list[float] = []
    got: set[tuple[str, float]] = set()
    async with websockets.connect(f"{url}/live/ws?layers=devices&bbox={','.join(map(str, bbox))}",
                                  max_size=None) as ws:
        out["ready"] = True
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            msg = orjson.loads(raw)
            if msg.get("type") != "changes":
                continue
            for ch in msg["changes"]:
                v = ch["feature"]["properties"]["values"]
                if "t_sent" in v:
                    lat.append(now - v["t_sent"])
                    got.add((ch["feature"]["id"], v["t_sent"]))
    out["lat"], out["got"] = lat, got


async def stalled_client(url: str, stop: asyncio.Event) -> None:
    async with websockets.connect(f"{url}/live/ws?layers=devices", max_queue=1, max_size=None):
        await stop.wait()  # never reads: TCP backpressure reaches the server


def inside(b: tuple[float, ...], pts: dict[str, tuple[float, float]], code: str) -> bool:
    x, y = pts[code]
    return b[0] <= x <= b[2] and b[1] <= y <= b[3]


async def ws_phase(url: str, bboxes: list, pts: dict, pub_args: tuple, seconds: float, stalled: bool,
                   server: psutil.Process) -> dict:
    stop = asyncio.Event()
    outs = [{} for _ in bboxes]
    tasks = [asyncio.create_task(ws_client(url, b, o, stop)) for b, o in zip(bboxes, outs, strict=True)]
    if stalled:
        tasks.append(asyncio.create_task(stalled_client(url, stop)))
    while not all(o.get("ready") for o in outs):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    rss0 = server.memory_info().rss
    pub = Publisher(*pub_args)
    pub.start()
    await asyncio.sleep(seconds)
    pub.finish()
    rss1 = server.memory_info().rss
    await asyncio.sleep(2.0)  # let the tail arrive
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = [x for o in outs for x in o.get("lat", [])]
    expected = received = 0
    for b, o in zip(bboxes, outs, strict=True):
        want = {(c, t) for c, t in pub.sent if inside(b, pts, c)}
        expected += len(want)
        received += len(want & o.get("got", set()))
    return {"sent": len(pub.sent), "rate": len(pub.sent) / seconds, "p50_ms": q(lat, 50), "p99_ms": q(lat, 99),
            "deliveries": len(lat), "expected": expected, "received": received,
            "loss_pct": 100 * (1 - received / expected) if expected else 0.0,
            "rss_start_mb": rss0 / 2**20, "rss_end_mb": rss1 / 2**20}


def mqtt_phase(host: str, port: int, prefix: str, codes: list[str], rate: float, n: int, seconds: float) -> dict:
    lats: list[list[float]] = [[] for _ in range(n)]
    clients = []
    for i in range(n):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")

        def on_msg(client, userdata, msg, i=i):  # noqa: ANN001, ANN202
            lats[i].append(time.time() - orjson.loads(msg.payload)["values"]["t_sent"])

        c.on_message = on_msg
        c.connect(host, port)
        c.subscribe(f"{prefix}/devices/+", qos=1)
        c.loop_start()
        clients.append(c)
    time.sleep(1.0)
    pub = Publisher(host, port, prefix, codes, rate)
    pub.start()
    time.sleep(seconds)
    pub.finish()
    time.sleep(2.0)
    for c in clients:
        c.loop_stop()
        c.disconnect()
    flat = [x for lst in lats for x in lst]
    return {"sent": len(pub.sent), "p50_ms": q(flat, 50), "p99_ms": q(flat, 99), "deliveries": len(flat),
            "expected": len(pub.sent) * n, "loss_pct": 100 * (1 - len(flat) / max(1, len(pub.sent) * n))}


def hub_rate(bboxes: list, pts: dict, codes: list[str], n: int = 20_000, batch: int = 100) -> dict:
    """Server-side cost alone: changes/s through Hub.deliver to len(bboxes) bbox subscribers
    (queues drained between batches, as keeping-up clients do)."""
    from layers.hub import Hub

    hub = Hub(queue_size=2000)
    subs = [hub.subscribe(["devices"], b) for b in bboxes]
    rng = np.random.default_rng(3)
    changes = []
    for k in range(n):
        c = codes[int(rng.integers(len(codes)))]
        changes.append({"op": "update", "layer": "devices", "feature": {
            "type": "Feature", "id": c, "geometry": {"type": "Point", "coordinates": list(pts[c])},
            "properties": {"values": {"v": float(k)}}}})
    t0 = time.perf_counter()
    delivered = 0
    for k in range(0, n, batch):
        hub.deliver(changes[k:k + batch])
        for s in subs:
            delivered += len(s.drain())
    took = time.perf_counter() - t0
    return {"changes_per_s": n / took, "deliveries_per_s": delivered / took, "batch": batch}


def history_rate(store: SpatialStore, codes: list[str], rows: int) -> float:
    from layers.history import write_batch
    from layers.readings import Reading

    now = dt.datetime.now(dt.UTC)
    readings = [Reading("devices", codes[i % len(codes)], now - dt.timedelta(seconds=rows - i), {"v": float(i)})
                for i in range(rows)]
    t0 = time.perf_counter()
    for k in range(0, rows, 5000):
        write_batch(store, readings[k:k + 5000])
    return rows / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--history-rows", type=int, default=100_000)
    ap.add_argument("--mqtt", default=os.environ.get("TWIN_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--postgres", default=os.environ.get("TWIN_TEST_POSTGRES_URL",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    args = ap.parse_args()
    host, port = args.mqtt.split("//")[1].split(":")
    mport = int(port)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    db = fresh_db(args.postgres, "twin_bench_live")
    store = SpatialStore.from_url(db)
    store.migrate()
    rng = np.random.default_rng(7)
    xs = rng.uniform(BOX[0], BOX[2], args.devices)
    ys = rng.uniform(BOX[1], BOX[3], args.devices)
    codes = [f"BENCH{i:05d}" for i in range(args.devices)]
    store.write_features("devices", [
        {"code": c, "name": c, "kind": "dust", "metrics": ["v"], "thresholds": {}, "status": "online",
         "geom": shapely.Point(x, y)} for c, x, y in zip(codes, xs, ys, strict=True)])
    pts = {c: (x, y) for c, x, y in zip(codes, xs, ys, strict=True)}
    bboxes = []
    for _ in range(args.subscribers):
        f = rng.uniform(0.22, 0.55)  # side fraction → 5–30 % of the area
        w, h = (BOX[2] - BOX[0]) * f, (BOX[3] - BOX[1]) * f
        x0, y0 = rng.uniform(BOX[0], BOX[2] - w), rng.uniform(BOX[1], BOX[3] - h)
        bboxes.append((x0, y0, x0 + w, y0 + h))

    hub = hub_rate(bboxes, pts, codes)
    print(f"hub alone: {hub['changes_per_s']:,.0f} changes/s to {len(bboxes)} bbox subscribers "
          f"({hub['deliveries_per_s']:,.0f} deliveries/s, batches of {hub['batch']})", flush=True)
    http_port = free_port()
    home = Path(f"/tmp/twin-bench-live-{os.getpid()}")
    env = {**os.environ, "TWIN_DATABASE_URL": db, "TWIN_HOME": str(home), "TWIN_MQTT_URL": args.mqtt,
           "TWIN_MQTT_TOPIC_PREFIX": prefix, "TWIN_MQTT_CLIENT_ID": prefix, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "gis_api.cli", "serve", "--port", str(http_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"ws://127.0.0.1:{http_port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        server = psutil.Process(proc.pid)
        pub_args = (host, mport, prefix, codes, args.rate)
        a = asyncio.run(ws_phase(url, bboxes, pts, pub_args, args.seconds, False, server))
        b = asyncio.run(ws_phase(url, bboxes, pts, pub_args, args.seconds, True, server))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    c = mqtt_phase(host, mport, prefix + "-direct", codes, args.rate, args.subscribers, args.seconds)
    h = history_rate(store, codes, args.history_rows)
    result = {"when": dt.datetime.now(dt.UTC).isoformat(), "args": vars(args), "loadavg": os.getloadavg(),
              "twin_ws": a, "twin_ws_with_stalled": b, "mosquitto_direct": c, "history_rows_per_s": h, "hub_only": hub}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"| measure | twin WS | twin WS + 1 stalled | Mosquitto → {args.subscribers} MQTT subs |")
    print("| --- | --- | --- | --- |")
    print(f"| readings/s in | {a['rate']:.0f} | {b['rate']:.0f} | {c['sent'] / args.seconds:.0f} |")
    print(f"| deliveries | {a['deliveries']} | {b['deliveries']} | {c['deliveries']} |")
    print(f"| p50 ms | {a['p50_ms']:.1f} | {b['p50_ms']:.1f} | {c['p50_ms']:.1f} |")
    print(f"| p99 ms | {a['p99_ms']:.1f} | {b['p99_ms']:.1f} | {c['p99_ms']:.1f} |")
    print(f"| loss % | {a['loss_pct']:.2f} | {b['loss_pct']:.2f} | {c['loss_pct']:.2f} |")
    print(f"| server RSS MB start→end | {a['rss_start_mb']:.0f}→{a['rss_end_mb']:.0f} | "
          f"{b['rss_start_mb']:.0f}→{b['rss_end_mb']:.0f} | |")
    print(f"history rows/s to PostGIS: {h:,.0f}; load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
