"""Live layers: MQTT in → WebSocket out, against Mosquitto's own fan-out as the ceiling.

    bash bench/run.sh live                                         # the brief's scale: 2,000/s, 200 subscribers
    PYTHONPATH=. .venv/bin/python bench/live.py                    # the same without run.sh
    PYTHONPATH=. .venv/bin/python bench/live.py --rate 300 --subscribers 20 --seconds 5   # small

Steps (broker, PostgreSQL and twin on loopback; twin in its own process, one worker; the load
generator in *other* processes so it is not what is measured):

1. ``--devices`` devices at random points of a 20 × 20 km box go into a fresh PostGIS database.
2. ``--publishers`` processes share ``--rate`` readings/s at QoS 1 to ``{prefix}/devices/{code}``;
   each reading carries a unique sequence number and its send time, so every client measures
   publish → receive latency and counts what it missed.
3. Phase A: ``--subscribers`` WebSocket clients, each with its own random bbox (5–30 % of the
   box), spread over ``--client-procs`` processes, read the stream. Loss = readings of devices in
   a client's bbox that never reached it (the server coalescing for a lagging client counts).
4. Phase B: the same plus one *stalled* client (whole box, never reads; own process): its queue
   coalesces and drops; the others' p99 and the server's memory are compared with phase A.
5. Phase C: ``--subscribers`` MQTT connections straight at Mosquitto (the same client processes), each
   subscribed (QoS 1) to the topics of the devices in *its* bbox — the same deliveries as twin's
   bbox filter gives — while the same publishers send the same rate: the ceiling.
   Every phase also reports the cores each party kept busy (twin, broker, clients, publishers),
   so a run shows whether the load generator rather than the server is what saturates.
6. History: readings written straight to PostGIS through the ingest's batch writer, rows/s.

Results go to ``bench/results/live.json`` and a Markdown table on stdout. Numbers taken while
other work shares the machine are noisy; take final figures on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BOX = (120.80, 31.60, 121.00, 31.80)
SEQ_STRIDE = 100_000_000  # sequence numbers: publisher index × stride + k (unique across publishers)


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


def q(values: np.ndarray, p: float) -> float:
    return float(np.percentile(values, p)) * 1000 if len(values) else float("nan")


# -- load generator processes --------------------------------------------------------------------
def _mqtt_packet(first: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(length) + body


def publisher_proc(index: int, host: str, port: int, topic_prefix: str, codes: list[str], rate: float,
                   start_at: float, seconds: float, out: Any) -> None:
    """Publish ``rate`` readings/s at QoS 1 from ``start_at`` for ``seconds``; report (code index, seq) sent.

    A minimal MQTT 3.1.1 client on a plain socket (CONNECT, PUBLISH at QoS 1, PUBACKs counted by a
    reader thread): paho spent ~0.1 ms of CPU per publish, a tenth of a core at 1,000/s per process,
    taken from the server it loads. Readings due within the same millisecond go out in one write,
    each stamped with its send time."""
    import socket
    import struct

    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = f"bench-pub-{index}-{uuid.uuid4().hex[:6]}".encode()
    sock.sendall(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02" + struct.pack(">H", 60) + struct.pack(">H", len(cid))
                              + cid))
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise RuntimeError(f"broker refused the publisher: {connack!r}")
    acks = [0]

    def read_acks() -> None:
        buf = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 2 and len(buf) >= 2 + buf[1]:  # PUBACKs (and PINGRESPs): one-byte lengths
                if buf[0] >> 4 == 4:
                    acks[0] += 1
                buf = buf[2 + buf[1]:]

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    topics = [struct.pack(">H", len(t)) + t for t in (f"{topic_prefix}/devices/{c}".encode() for c in codes)]
    rng = np.random.default_rng(100 + index)
    picks = rng.integers(len(codes), size=int(rate * seconds) + 1)
    n = len(picks)
    while time.time() < start_at:
        time.sleep(0.001)
    t0, cpu0 = time.perf_counter(), sum(os.times()[:2])
    k = 0
    while k < n:
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        if due > k:
            now = time.time()
            parts = []
            for j in range(k, due):
                seq = index * SEQ_STRIDE + j
                payload = b'{"values":{"seq":%d.0,"t_sent":%r}}' % (seq, now)
                parts.append(_mqtt_packet(0x32, topics[picks[j]] + struct.pack(">H", j % 65535 + 1) + payload))
            sock.sendall(b"".join(parts))
            k = due
        time.sleep(0.002)
    late = time.perf_counter() - t0 - seconds
    cpu = sum(os.times()[:2]) - cpu0
    deadline = time.time() + 30
    while acks[0] < n and time.time() < deadline:
        time.sleep(0.01)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    out.put({"index": index, "codes": picks.astype(np.int32), "seqs": index * SEQ_STRIDE + np.arange(n),
             "late_s": late, "unacked": n - min(n, acks[0]), "cpu_s": cpu})


def _client_result(res: dict[int, Any]) -> dict[str, Any]:
    """A client process's report: per-reading latencies (arrival − send time, one per delivered
    reading), distinct sequence numbers received per client, and the process's CPU seconds."""
    lats, received = [], {}
    for i, (arrivals, counts, found) in res.items():
        marks_arr = np.array(found, dtype="S32").astype(float).reshape(-1, 2)
        received[i] = len(np.unique(marks_arr[:, 0]))
        if len(marks_arr):
            lats.append(np.repeat(np.asarray(arrivals), counts) - marks_arr[:, 1])
    lat = np.concatenate(lats).astype(np.float32) if lats else np.array([], dtype=np.float32)
    return {"lat": lat, "received": received, "cpu_s": sum(os.times()[:2])}


def ws_clients_proc(url: str, bboxes: dict[int, tuple[float, ...]], ready: Any, stop: Any, out: Any,
                    compression: str | None = None) -> None:
    """Open one WebSocket per bbox, read until ``stop``; report latencies and unique sequence numbers.

    Kept cheap so the load generator is not what saturates the machine: each connection iterates
    its frames (no timer per ``recv``), stamps the arrival once per frame and picks each reading's
    ``seq`` and ``t_sent`` out of the frame with one regular-expression pass (a full JSON parse of
    every ~400-byte feature was 60 % of a client process); the numbers are converted with numpy at
    the end. Only ``changes`` frames count (the snapshot and errors do not)."""
    import re

    import websockets

    marks = re.compile(rb'"seq":([-+0-9.eE]+),"t_sent":([-+0-9.eE]+)')

    async def one(i: int, bbox: tuple[float, ...], res: dict[int, Any], conns: list[Any]) -> None:
        arrivals: list[float] = []  # per frame
        counts: list[int] = []  # readings in that frame
        found: list[tuple[bytes, bytes]] = []  # (seq, t_sent) of every reading, frame after frame
        res[i] = (arrivals, counts, found)
        async with websockets.connect(f"{url}/live/ws?layers=devices&bbox={','.join(map(str, bbox))}",
                                      max_size=None, ping_interval=None, compression=compression,
                                      open_timeout=120) as ws:
            await ws.recv(decode=False)  # the snapshot
            conns.append(ws)
            ready.put(1)
            try:
                while True:
                    raw = await ws.recv(decode=False)
                    now = time.time()
                    if not raw.startswith(b'{"type":"changes"'):
                        continue
                    got = marks.findall(raw)
                    found.extend(got)
                    arrivals.append(now)
                    counts.append(len(got))
            except websockets.ConnectionClosed:
                pass

    async def main() -> None:
        res: dict[int, Any] = {}
        conns: list[Any] = []
        tasks = [asyncio.create_task(one(i, b, res, conns)) for i, b in bboxes.items()]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        await asyncio.wait(tasks, timeout=30)
        out.put(_client_result(res))

    asyncio.run(main())


def mqtt_clients_proc(host: str, port: int, topic_prefix: str, topics: dict[int, list[str]], ready: Any,
                      stop: Any, out: Any) -> None:
    """The ceiling's clients: one MQTT 3.1.1 connection per bbox, subscribed (QoS 1) to the topics of
    the devices in it, many connections per process on asyncio, a minimal client of the bench's own.

    The obvious clients measured themselves, not Mosquitto: paho (Python) could not take 58,000
    messages/s on two cores, and 200 ``mosquitto_sub`` processes (C, one write per message) took
    1.3 cores between them. Here a read takes every whole packet that arrived, stamps them all with
    the read's time, finds each one's packet id, ``seq`` and ``t_sent`` with one regular-expression
    pass over the read (no Python per packet) and answers their PUBACKs in one write."""
    import re
    import struct

    # a reading's PUBLISH ends with packet id (2 bytes) + payload: one pass finds them all
    publishes = re.compile(rb'(..)\{"values":\{"seq":([-+0-9.eE]+),"t_sent":([-+0-9.eE]+)\}\}', re.DOTALL)

    async def one(i: int, codes: list[str], res: dict[int, Any], writers: list[Any]) -> None:
        arrivals: list[float] = []
        counts: list[int] = []
        found: list[tuple[bytes, bytes]] = []
        res[i] = (arrivals, counts, found)
        reader, writer = await asyncio.open_connection(host, port)
        writers.append(writer)
        cid = f"bench-sub-{i}-{uuid.uuid4().hex[:6]}".encode()
        writer.write(_mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack(">H", len(cid)) + cid))
        await reader.readexactly(4)  # CONNACK
        body = struct.pack(">H", 1) + b"".join(
            struct.pack(">H", len(t)) + t + b"\x01"
            for t in (f"{topic_prefix}/devices/{c}".encode() for c in codes or ["none"]))
        writer.write(_mqtt_packet(0x82, body))
        await reader.readexactly(1)  # SUBACK: type, remaining length (varint), packet id + one code per topic
        length, mult = 0, 1
        while True:
            d = (await reader.readexactly(1))[0]
            length += (d & 0x7F) * mult
            mult <<= 7
            if d < 0x80:
                break
        await reader.readexactly(length)
        ready.put(1)
        buf = b""
        while True:
            data = await reader.read(1 << 18)
            if not data:
                return
            now = time.time()
            buf += data
            # only PUBLISHes of readings arrive now; each ends with its payload, so everything up to
            # the last payload matched is whole packets, and the rest waits for the next read
            got = publishes.findall(buf)
            if not got:
                continue
            buf = buf[buf.rindex(b"}}") + 2:]
            writer.write(b"".join(b"\x40\x02" + pid for pid, _, _ in got))  # PUBACKs
            found.extend((seq, t) for _, seq, t in got)
            arrivals.append(now)
            counts.append(len(got))

    async def main() -> None:
        res: dict[int, Any] = {}
        writers: list[Any] = []
        tasks = [asyncio.create_task(one(i, codes, res, writers)) for i, codes in topics.items()]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for w in writers:
            w.write(b"\xe0\x00")  # DISCONNECT
            w.close()
        await asyncio.wait(tasks, timeout=30)
        out.put(_client_result(res))

    asyncio.run(main())


def stalled_proc(url: str, ready: Any, stop: Any, compression: str | None = None) -> None:
    """A WebSocket client over the whole box that never reads after the snapshot: TCP backpressure."""
    import websockets

    async def main() -> None:
        async with websockets.connect(f"{url}/live/ws?layers=devices", max_queue=1, max_size=None,
                                      ping_interval=None, open_timeout=120, compression=compression) as ws:
            await ws.recv()
            ready.put(1)
            while not stop.is_set():
                await asyncio.sleep(0.2)

    asyncio.run(main())


# -- phases ------------------------------------------------------------------------------------
class RssSampler(threading.Thread):
    def __init__(self, proc: psutil.Process | None):
        super().__init__(daemon=True)
        self.proc, self.peak, self.halt = proc, 0, threading.Event()

    def run(self) -> None:
        while self.proc is not None and not self.halt.wait(0.2):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def broker_process(port: int) -> psutil.Process | None:
    """The Mosquitto serving ``port`` on this machine (for its CPU time), if it can be found."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "mosquitto":
            try:
                if any(c.laddr.port == port for c in proc.net_connections(kind="tcp") if c.status == "LISTEN"):
                    return proc
            except psutil.Error:
                continue
    return None


def cpu_s(proc: psutil.Process | None) -> float:
    try:
        return sum(proc.cpu_times()[:2]) if proc is not None else 0.0
    except psutil.Error:
        return 0.0


def run_phase(kind: str, args: argparse.Namespace, ctx: Any, target: str, topic_prefix: str, codes: list[str],
              bboxes: list[tuple[float, ...]], inside: np.ndarray, server: psutil.Process | None,
              stalled: bool = False) -> dict[str, Any]:
    """Start the clients, then the publishers; collect latency and loss per client, and the CPU
    seconds every party spent while the readings flowed (which one saturates the machine)."""
    ready, out, pub_out, stop = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
    procs: list[Any] = []
    for g in np.array_split(np.arange(len(bboxes)), args.client_procs):
        if kind == "ws":
            p = ctx.Process(target=ws_clients_proc, args=(target, {int(i): bboxes[i] for i in g}, ready, stop, out,
                                                          "deflate" if args.ws_deflate else None))
        else:
            topics = {int(i): [codes[d] for d in np.flatnonzero(inside[i])] for i in g}
            p = ctx.Process(target=mqtt_clients_proc,
                            args=(args.host, args.port, topic_prefix, topics, ready, stop, out))
        p.start()
        procs.append(p)
    extra = []
    if stalled:
        extra.append(ctx.Process(target=stalled_proc, args=(target, ready, stop,
                                                            "deflate" if args.ws_deflate else None)))
        extra[-1].start()
    try:
        for _ in range(len(bboxes) + len(extra)):
            ready.get(timeout=180)
    except BaseException:
        stop.set()
        for p in procs + extra:
            p.terminate()
        raise
    time.sleep(1.0)
    broker = broker_process(args.port)
    clients = [psutil.Process(p.pid) for p in procs]
    cpu0 = {"twin": cpu_s(server), "broker": cpu_s(broker), "clients": sum(cpu_s(c) for c in clients)}
    rss0 = server.memory_info().rss if server else 0
    sampler = RssSampler(server)
    sampler.start()
    start_at = time.time() + 1.0
    pubs = [ctx.Process(target=publisher_proc, args=(k, args.host, args.port, topic_prefix, codes,
                                                     args.rate / args.publishers, start_at, args.seconds, pub_out))
            for k in range(args.publishers)]
    for p in pubs:
        p.start()
    try:
        sent = [pub_out.get(timeout=args.seconds + 120) for _ in pubs]
        for p in pubs:
            p.join()
        rss1 = server.memory_info().rss if server else 0
        time.sleep(args.tail)  # let the tail arrive
        cpu1 = {"twin": cpu_s(server), "broker": cpu_s(broker), "clients": sum(cpu_s(c) for c in clients)}
        stop.set()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs + extra:
            p.join(timeout=30)
    finally:
        sampler.halt.set()
        for p in procs + extra + pubs:
            if p.is_alive():
                p.terminate()
    lat = np.concatenate([r["lat"] for r in results]) if results else np.array([])
    received = {i: n for r in results for i, n in r["received"].items()}
    counts = np.bincount(np.concatenate([s["codes"] for s in sent]), minlength=len(codes))
    expected_per = inside.astype(np.int64) @ counts
    expected = int(expected_per.sum())
    got = int(sum(received.values()))
    lossy = sum(1 for i in range(len(bboxes)) if received.get(i, 0) < expected_per[i])
    n_sent = int(sum(len(s["codes"]) for s in sent))
    wall = args.seconds + args.tail
    cpu = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0}  # cores busy on average
    cpu["publishers"] = sum(s["cpu_s"] for s in sent) / args.seconds
    return {"t_start": start_at, "t_end": start_at + wall, "sent": n_sent, "rate": n_sent / args.seconds, "publisher_late_s": max(s["late_s"] for s in sent),
            "unacked": sum(s["unacked"] for s in sent), "p50_ms": q(lat, 50), "p99_ms": q(lat, 99),
            "max_ms": q(lat, 100), "deliveries": int(len(lat)), "expected": expected, "received": got,
            "loss_pct": 100 * (1 - got / expected) if expected else 0.0, "clients_with_loss": lossy,
            "rss_start_mb": rss0 / 2**20, "rss_end_mb": rss1 / 2**20, "rss_peak_mb": sampler.peak / 2**20,
            "cores": cpu}


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


def history_rate(store: Any, codes: list[str], rows: int) -> float:
    from layers.history import write_batch
    from layers.readings import Reading

    now = dt.datetime.now(dt.UTC)
    readings = [Reading("devices", codes[i % len(codes)], now - dt.timedelta(seconds=rows - i), {"v": float(i)})
                for i in range(rows)]
    t0 = time.perf_counter()
    for k in range(0, rows, 5000):
        write_batch(store, readings[k:k + 5000])
    return rows / (time.perf_counter() - t0)


def accepted_total(http_port: int) -> float:
    """Readings twin has taken from MQTT so far (its /metrics)."""
    return scrape(http_port)[0]


def scrape(http_port: int) -> tuple[float, float, float]:
    """From twin's /metrics: readings taken from MQTT, and the sum and count of its pacer's ticks."""
    import httpx

    total = tick_sum = tick_count = 0.0
    for line in httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=30).text.splitlines():
        if line.startswith("twin_live_readings_total{") and 'source="mqtt"' in line:
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("twin_live_frame_interval_seconds_sum"):
            tick_sum = float(line.rsplit(" ", 1)[1])
        elif line.startswith("twin_live_frame_interval_seconds_count"):
            tick_count = float(line.rsplit(" ", 1)[1])
    return total, tick_sum, tick_count


def wait_caught_up(http_port: int, sent_so_far: int, limit_s: float = 60.0) -> float:
    """Wait until twin has taken every reading sent so far (a backlog must not spill into the next
    phase); returns the seconds it took after the phase ended."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if accepted_total(http_port) >= sent_so_far:
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A Mosquitto of the bench's own on a free loopback port: the shared one may keep the default
    ``max_queued_messages`` (1,000), so a subscriber that falls half a second behind at 2,000/s —
    twin's ingest or a ceiling client — would silently lose readings at the broker, and the run
    would measure the broker's configuration, not the fan-out. Persistence off, queues deep."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 1000000\nmax_queued_bytes 0\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the bench's own Mosquitto did not start")


def start_server(db: str, mqtt_url: str, prefix: str, probe: str | None = None) -> tuple[subprocess.Popen, int]:
    import httpx

    http_port = free_port()
    home = Path(f"/tmp/twin-bench-live-{os.getpid()}")
    env = {**os.environ, "TWIN_DATABASE_URL": db, "TWIN_HOME": str(home), "TWIN_MQTT_URL": mqtt_url,
           "TWIN_MQTT_TOPIC_PREFIX": prefix, "TWIN_MQTT_CLIENT_ID": prefix, "PYTHONPATH": str(ROOT)}
    env.pop("TWIN_HUB_URL", None)
    cmd = ["-m", "bench.live_probe", "serve", probe] if probe else ["-m", "gis_api.cli"]
    proc = subprocess.Popen([sys.executable, *cmd, "serve", "--port", str(http_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return proc, http_port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000, help="readings/s in, all publishers together")
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20, help="publishing time of each phase")
    ap.add_argument("--tail", type=float, default=2.0, help="seconds to wait for late deliveries")
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--client-procs", type=int, default=4, help="processes the subscribers are spread over")
    ap.add_argument("--history-rows", type=int, default=100_000)
    ap.add_argument("--ws-deflate", action="store_true",
                    help="WebSocket clients negotiate permessage-deflate (as browsers do); off by default, as MQTT")
    ap.add_argument("--mqtt", default=os.environ.get("TWIN_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--db-name", default="twin_bench_live",
                    help="the database the bench drops and recreates (a helper's runs use their own)")
    ap.add_argument("--postgres", default=os.environ.get("TWIN_TEST_POSTGRES_URL",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat phases A and B this many times, alternating their order (A B, B A, …), and report "
                    "the stalled subscriber's effect per pair: on a busy machine a single A-then-B pair is mostly drift")
    ap.add_argument("--shared-broker", action="store_true",
                    help="use the broker at --mqtt instead of starting the bench's own Mosquitto (deep queues)")
    ap.add_argument("--phases", default="A,B,C", help="which of A (WS), B (WS + stalled), C (Mosquitto) to run")
    ap.add_argument("--probe", metavar="DIR",
                    help="run twin with bench/live_probe.py's stage stamps (written to DIR) and print where each "
                    "phase's latency came from; diagnostic, costs the server a few per cent")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    ap.add_argument("--write-doc", action="store_true",
                    help="put this run's table into docs/benchmarks.md (between the live-run markers)")
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (server, client processes)
    broker_proc = None
    if not args.shared_broker:
        broker_proc, bport = start_broker(Path(f"/tmp/twin-bench-live-broker-{os.getpid()}"))
        args.mqtt = f"mqtt://127.0.0.1:{bport}"
    host, port = args.mqtt.split("//")[1].split(":")
    args.host, args.port = host, int(port)
    try:
        return run(args, broker_proc)
    finally:
        if broker_proc is not None:
            broker_proc.terminate()
            broker_proc.wait(timeout=20)


def run(args: argparse.Namespace, broker_proc: subprocess.Popen | None) -> int:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    phases = set(args.phases.upper().split(","))
    ctx = mp.get_context("spawn")

    import shapely

    from twin.store import SpatialStore

    db = fresh_db(args.postgres, args.db_name)
    store = SpatialStore.from_url(db)
    store.migrate()
    rng = np.random.default_rng(7)
    xs = rng.uniform(BOX[0], BOX[2], args.devices)
    ys = rng.uniform(BOX[1], BOX[3], args.devices)
    codes = [f"BENCH{i:05d}" for i in range(args.devices)]
    store.write_features("devices", [
        {"code": c, "name": c, "kind": "dust", "metrics": ["seq", "t_sent"], "thresholds": {}, "status": "online",
         "geom": shapely.Point(x, y)} for c, x, y in zip(codes, xs, ys, strict=True)])
    pts = {c: (x, y) for c, x, y in zip(codes, xs, ys, strict=True)}
    bboxes = []
    for _ in range(args.subscribers):
        f = rng.uniform(0.22, 0.55)  # side fraction → 5–30 % of the area
        w, h = (BOX[2] - BOX[0]) * f, (BOX[3] - BOX[1]) * f
        x0, y0 = rng.uniform(BOX[0], BOX[2] - w), rng.uniform(BOX[1], BOX[3] - h)
        bboxes.append((x0, y0, x0 + w, y0 + h))
    bb = np.array(bboxes)
    inside = ((xs[None, :] >= bb[:, 0:1]) & (xs[None, :] <= bb[:, 2:3]) & (ys[None, :] >= bb[:, 1:2])
              & (ys[None, :] <= bb[:, 3:4]))

    hub = hub_rate(bboxes, pts, codes)
    print(f"hub alone: {hub['changes_per_s']:,.0f} changes/s to {len(bboxes)} bbox subscribers "
          f"({hub['deliveries_per_s']:,.0f} deliveries/s, batches of {hub['batch']})", flush=True)
    result: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(), "args": vars(args),
                              "loadavg_start": os.getloadavg(), "hub_only": hub}
    if phases & {"A", "B"}:
        proc, http_port = start_server(db, args.mqtt, prefix, args.probe)
        url = f"ws://127.0.0.1:{http_port}"
        try:
            server = psutil.Process(proc.pid)
            sent_so_far = 0
            pair = [("A", "twin_ws", False), ("B", "twin_ws_with_stalled", True)]
            order = [ph for k in range(args.rounds) for ph in (pair if k % 2 == 0 else pair[::-1])]
            rounds: list[dict[str, Any]] = []
            for name, key, stalled in order:
                if name not in phases:
                    continue
                cpu0, (acc0, tick_s0, tick_n0) = sum(server.cpu_times()[:2]), scrape(http_port)
                r = run_phase("ws", args, ctx, url, prefix, codes, bboxes, inside, server, stalled=stalled)
                result.setdefault(key, r)  # the table shows the first run of each phase
                sent_so_far += r["sent"]
                r["backlog_s_after_tail"] = wait_caught_up(http_port, sent_so_far)
                # CPU the server spent per reading, all its threads (ingest, hub, sends, history): a
                # figure that holds on a busy machine, where latency does not
                acc1, tick_s1, tick_n1 = scrape(http_port)
                taken = acc1 - acc0
                r["frame_interval_ms_mean"] = 1000 * (tick_s1 - tick_s0) / max(1.0, tick_n1 - tick_n0)
                r["server_cpu_ms_per_reading"] = 1000 * (sum(server.cpu_times()[:2]) - cpu0) / max(1.0, taken)
                print(f"{name} {key}:", json.dumps(r), flush=True)
                if args.probe:
                    from bench.live_probe import summary

                    time.sleep(2.5)  # the probe writes its series every 2 s
                    r["probe"] = summary(Path(args.probe), r["t_start"], r["t_end"])
                    print(f"{name} probe (ms):", json.dumps(r["probe"]), flush=True)
                if len(rounds) == 0 or len(rounds[-1]) == 2:
                    rounds.append({})
                rounds[-1][name] = r
            if args.rounds > 1:
                result["paired_rounds"] = [{n: {k: v[k] for k in ("p50_ms", "p99_ms", "server_cpu_ms_per_reading")}
                                            for n, v in rd.items()} for rd in rounds]
            with store.engine.connect() as c:
                from sqlalchemy import text

                result["history_rows_in_run"] = c.execute(text("select count(*) from live_readings")).scalar()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    if "C" in phases:
        result["mosquitto_direct"] = run_phase("mqtt", args, ctx, "", prefix + "-direct", codes,
                                               bboxes, inside, None)
        print("C Mosquitto direct:", json.dumps(result["mosquitto_direct"]), flush=True)
    result["history_rows_per_s"] = history_rate(store, codes, args.history_rows)
    result["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    text = table(result, args)
    print(text)
    if args.write_doc:
        from bench.harness import write_section

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        cmd = " ".join(["bench/live.py", *sys.argv[1:]])
        write_section(ROOT / "docs" / "benchmarks.md", "live-run",
                      f"Last run: `{cmd}` on {result['when'][:16]} UTC, commit {commit}, {os.cpu_count()} cores.\n\n"
                      + text.replace("\n\n", "\n\n* ", 1).replace("\nhistory", "\n* history")
                      .replace("\nload average", "\n* load average").replace("\ntwin /", "\n* twin /"))
    return 0


def table(r: dict[str, Any], args: argparse.Namespace) -> str:
    cols = [("twin WS", r.get("twin_ws")), ("twin WS + 1 stalled", r.get("twin_ws_with_stalled")),
            (f"Mosquitto → {args.subscribers} MQTT subs", r.get("mosquitto_direct"))]
    cols = [(n, c) for n, c in cols if c]

    def row(label: str, fn: Any) -> str:
        return f"| {label} | " + " | ".join(fn(c) for _, c in cols) + " |"

    lines = ["| measure | " + " | ".join(n for n, _ in cols) + " |", "| --- |" + " --- |" * len(cols),
             row("readings/s in", lambda c: f"{c['rate']:,.0f}"),
             row("deliveries (expected)", lambda c: f"{c['deliveries']:,} ({c['expected']:,})"),
             row("p50 / p99 ms", lambda c: f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}"),
             row("loss % (clients with loss)", lambda c: f"{c['loss_pct']:.2f} ({c['clients_with_loss']})"),
             row("twin still catching up after the tail, s", lambda c: f"{c['backlog_s_after_tail']:.1f}"
                 if "backlog_s_after_tail" in c else ""),
             row("twin CPU per reading (all threads), ms → readings/s per core",
                 lambda c: f"{c['server_cpu_ms_per_reading']:.3f} → {1000 / c['server_cpu_ms_per_reading']:,.0f}"
                 if "server_cpu_ms_per_reading" in c else ""),
             row("cores busy: twin / broker / clients / publishers", lambda c: " / ".join(
                 f"{c['cores'][k]:.2f}" for k in ("twin", "broker", "clients", "publishers")) if "cores" in c else ""),
             row("frame interval (pacer tick) mean, ms", lambda c: f"{c['frame_interval_ms_mean']:.0f}"
                 if "frame_interval_ms_mean" in c else ""),
             row("server RSS MB start → end (peak)", lambda c: f"{c['rss_start_mb']:.0f} → {c['rss_end_mb']:.0f} "
                 f"({c['rss_peak_mb']:.0f})" if c["rss_start_mb"] else "")]
    a, b, m = r.get("twin_ws"), r.get("twin_ws_with_stalled"), r.get("mosquitto_direct")
    notes = []
    if a and b:
        notes.append(f"stalled subscriber: others' p99 {100 * (b['p99_ms'] / a['p99_ms'] - 1):+.0f} %")
    pairs = [rd for rd in r.get("paired_rounds", []) if "A" in rd and "B" in rd]
    if len(pairs) > 1:
        ratios = [100 * (rd["B"]["p99_ms"] / rd["A"]["p99_ms"] - 1) for rd in pairs]
        notes.append(f"stalled subscriber over {len(pairs)} alternating pairs: others' p99 median "
                     f"{float(np.median(ratios)):+.0f} % (per pair: " + ", ".join(f"{x:+.0f} %" for x in ratios) + ")")
    if a and m:
        notes.append(f"twin / Mosquitto p99: {a['p99_ms'] / m['p99_ms']:.2f}×, "
                     f"deliveries/s ratio {a['received'] / max(1, m['received']):.2f}")
    notes.append(f"history rows/s to PostGIS: {r['history_rows_per_s']:,.0f}")
    notes.append("load average (1/5/15 min) start " + " ".join(f"{x:.1f}" for x in r["loadavg_start"])
                 + ", end " + " ".join(f"{x:.1f}" for x in r["loadavg_end"]))
    return "\n".join(lines + [""] + notes)


if __name__ == "__main__":
    sys.exit(main())
