"""Two twin server processes on one Redis (or NATS) hub: a reading ingested by one reaches the other's
subscribers; only one of them consumes MQTT."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from live_support import (
    NATS_URL,
    REDIS_URL,
    TOKEN,
    auth,
    change_ids,
    free_port,
    receive_until,
    unique,
)

from twin.store import SpatialStore


def start_server(store: SpatialStore, home: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TWIN_HOME": str(home), "TWIN_ADMIN_TOKEN": TOKEN, "TWIN_LIVE_FLUSH_S": "0.1",
           "TWIN_DATABASE_URL": store.engine.url.render_as_string(hide_password=False), **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "gis_api.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.mark.slow  # two server processes start: ~25 s each on a busy machine
@pytest.mark.parametrize("hub_url", [REDIS_URL, NATS_URL], ids=["redis", "nats"])
def test_reading_ingested_by_one_worker_reaches_a_subscriber_of_the_other(live_store, tmp_path, hub_url) -> None:
    env = {"TWIN_HUB_URL": hub_url, "TWIN_HUB_CHANNEL": unique("twin.test.workers")}
    procs = []
    try:
        a, url_a = start_server(live_store, tmp_path, env)
        procs.append(a)
        b, url_b = start_server(live_store, tmp_path, env)
        procs.append(b)

        async def main() -> None:
            ws_url = url_b.replace("http", "ws") + "/live/ws?layers=devices"
            async with websockets.connect(ws_url) as ws:
                snap = orjson.loads(await ws.recv())
                assert snap["type"] == "snapshot"
                async with httpx.AsyncClient(base_url=url_a) as http:
                    r = await http.post("/live/devices/features", headers=auth(),
                                        json={"id": "GAS-1", "values": {"lel_pct": 42.0}})
                    assert r.status_code == 202, r.text
                msg = await receive_until(ws, lambda m: m["type"] == "changes" and "GAS-1" in change_ids(m))
                assert msg["changes"][0]["feature"]["properties"]["values"] == {"lel_pct": 42.0}
            # worker b's own state followed too
            async with httpx.AsyncClient(base_url=url_b) as http:
                feats = {f["id"]: f for f in (await http.get("/live/devices")).json()["features"]}
                assert feats["GAS-1"]["properties"]["values"] == {"lel_pct": 42.0}

        asyncio.run(main())
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=15)
