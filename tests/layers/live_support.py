"""Helpers of the live-layer tests: devices, settings, a broker of our own."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import shapely
from sqlalchemy import delete

from layers.history import readings_table, state_table
from twin.settings import TwinSettings
from twin.store import SpatialStore

TOKEN = "live-test-token"
MQTT_URL = os.environ.get("TWIN_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
REDIS_URL = os.environ.get("TWIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
NATS_URL = os.environ.get("TWIN_TEST_NATS_URL", "nats://127.0.0.1:4222")

#: (code, kind, lon, lat, thresholds): two dust monitors far apart, a water gauge, a gas detector
DEVICES = [
    ("DUST-W", "dust", 120.80, 31.70, {"pm10": 150.0}),
    ("DUST-E", "dust", 121.00, 31.70, {"pm10": 150.0}),
    ("WATER-1", "water_level", 120.90, 31.75, {"water_level_m": 3.2}),
    ("GAS-1", "gas", 120.91, 31.71, {"lel_pct": 20.0}),
]
WEST = (120.75, 31.65, 120.85, 31.80)  # holds DUST-W only
EAST = (120.95, 31.65, 121.05, 31.80)  # holds DUST-E only


def device_rows() -> list[dict]:
    return [
        {"code": code, "name": code, "kind": kind, "metrics": list(thr), "thresholds": thr, "status": "online",
         "grid_code": "G1", "geom": shapely.Point(lon, lat)}
        for code, kind, lon, lat, thr in DEVICES
    ]


def clear_live(store: SpatialStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(readings_table))
        conn.execute(delete(state_table))


def make_settings(store: SpatialStore, home: Path, **kw) -> TwinSettings:
    base = {"home": home, "database_url": store.engine.url.render_as_string(hide_password=False),
            "admin_token": TOKEN, "live_flush_s": 0.1}
    base.update(kw)
    return TwinSettings(**base)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Mosquitto:
    """A broker of our own on a free port, persistence in a temp dir: it can be killed and restarted."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\nmax_queued_messages 100000\n"
            "max_inflight_messages 100\nuser root\n"
            f"log_dest file {workdir}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n"
            "log_type information\n"
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def log_tail(self, n: int = 4000) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else "(no broker log)"

    def stop(self) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class ServerThread:
    """The app served by uvicorn in a thread on a free port (real WebSocket/SSE/HTTP clients)."""

    def __init__(self, app) -> None:  # noqa: ANN001
        import threading

        import uvicorn

        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def receive_until(ws, predicate, timeout: float = 10.0) -> dict:  # noqa: ANN001
    """Read WebSocket messages until one satisfies ``predicate``; returns it."""
    import asyncio

    import orjson

    async def loop() -> dict:
        while True:
            msg = orjson.loads(await ws.recv())
            if predicate(msg):
                return msg

    return await asyncio.wait_for(loop(), timeout)


def change_ids(msg: dict) -> list[str]:
    return [c["feature"]["id"] for c in msg.get("changes", [])]
