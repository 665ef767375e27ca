"""Two hosts on one PostGIS database: one MQTT consumer (the live leader), and a take-over when it dies.

Two real ``twin serve`` processes with their own TWIN_HOME (as two machines have), the same
PostGIS database, the same broker (one of our own, persistent) and the same MQTT session id.
Exactly one of them is the leader (``twin_live_leader`` in its /metrics) and consumes; readings
sent with ``mosquitto_pub`` are stored once each. After SIGKILL of the leader the other takes the
PostgreSQL advisory lock over by itself, and readings published during the gap (QoS 1, kept by the
broker for the persistent session) and after it arrive, each once. PostGIS only: SpatiaLite is one
host by nature and keeps its file lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_support import Mosquitto, device_rows, unique
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from layers.history import readings_table
from twin.db import normalise_url
from twin.store import SpatialStore

ADMIN_URL = os.environ.get("TWIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TAKEOVER_BOUND_S = 20.0  # retry every 2-3 s; generous for a busy machine


@pytest.fixture
def pg_live_db(worker_id_suffix: str) -> Iterator[SpatialStore]:
    """A PostGIS database of our own with the test devices."""
    name = f"twin_leader_{worker_id_suffix}"
    admin = create_engine(normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store = SpatialStore.from_url(make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    store.migrate()
    store.write_features("devices", device_rows())
    yield store
    store.engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def twin_command() -> list[str]:
    exe = Path(sys.executable).parent / "twin"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gis_api.cli"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url: str, name: str) -> float | None:
    """An unlabelled sample from one process's /metrics; None when the process does not answer."""
    try:
        body = httpx.get(f"{url}/metrics", timeout=3).text
    except httpx.HTTPError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(cond, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def publish(port: int, topic: str, values: list[int]) -> None:
    for v in values:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
                        "-m", f'{{"values": {{"pm10": {v}}}}}'], check=True, timeout=10)


def stored(store: SpatialStore) -> list[float]:
    """pm10 of every DUST-W reading in history (a duplicate shows twice)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(readings_table.c["values"]).where(readings_table.c.device_code == "DUST-W"))
        return sorted(r[0]["pm10"] for r in rows)


def test_two_hosts_one_consumer_and_takeover_when_the_leader_dies(pg_live_db: SpatialStore,
                                                                     tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    prefix, client_id = unique("leadertest"), unique("twin-leader")
    db_url = pg_live_db.engine.url.render_as_string(hide_password=False)
    procs: dict[str, subprocess.Popen] = {}
    try:
        for i in range(2):
            home = tmp_path / f"host{i}"
            home.mkdir()
            env = {**os.environ, "TWIN_HOME": str(home), "TWIN_DATABASE_URL": db_url,
                   "TWIN_MQTT_URL": broker.url, "TWIN_MQTT_TOPIC_PREFIX": prefix,
                   "TWIN_MQTT_CLIENT_ID": client_id, "TWIN_LIVE_FLUSH_S": "0.1",
                   "TWIN_ADMIN_TOKEN": "leader-test-token"}
            env.pop("TWIN_HUB_URL", None)
            port = free_port()
            log = (tmp_path / f"twin{i}.log").open("wb")
            procs[f"http://127.0.0.1:{port}"] = subprocess.Popen(
                [*twin_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT)

        def logs() -> str:
            return "\n".join((tmp_path / f"twin{i}.log").read_text(errors="replace")[-1500:] for i in range(2))

        for url, proc in procs.items():
            assert wait_for(lambda u=url, p=proc: p.poll() is not None or metric(u, "twin_live_leader") is not None,
                            60), logs()
            assert proc.poll() is None, logs()

        def leaders() -> list[str]:
            return [u for u, p in procs.items() if p.poll() is None and metric(u, "twin_live_leader") == 1.0]

        # exactly one leader, and it stays so across the followers' retries
        assert wait_for(lambda: len(leaders()) == 1, 20), logs()
        time.sleep(3.5)  # longer than one retry period (2-3 s)
        (leader,) = leaders()
        (follower,) = [u for u in procs if u != leader]
        assert wait_for(lambda: metric(leader, "twin_live_mqtt_connected") == 1.0, 15), logs()
        assert httpx.get(f"{leader}/readyz", timeout=5).json()["checks"]["mqtt"] == "ok"
        ready = httpx.get(f"{follower}/readyz", timeout=5)  # a follower is ready without a broker connection
        assert ready.status_code == 200 and "mqtt" not in ready.json()["checks"]

        topic = f"{prefix}/devices/DUST-W"
        first = list(range(1, 9))
        publish(broker.port, topic, first)
        assert wait_for(lambda: len(stored(pg_live_db)) >= len(first), 15), (stored(pg_live_db), logs())
        time.sleep(1)
        assert stored(pg_live_db) == first  # each once: no second consumer took them too

        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(timeout=10)
        killed_at = time.monotonic()
        during = list(range(101, 105))
        publish(broker.port, topic, during)  # no consumer yet: the broker keeps them for the session

        assert wait_for(lambda: metric(follower, "twin_live_leader") == 1.0, TAKEOVER_BOUND_S), logs()
        took = time.monotonic() - killed_at
        assert wait_for(lambda: metric(follower, "twin_live_mqtt_connected") == 1.0, 15), logs()
        after = list(range(201, 205))
        publish(broker.port, topic, after)
        want = sorted(first + during + after)
        assert wait_for(lambda: len(stored(pg_live_db)) >= len(want), 15), (stored(pg_live_db), logs())
        time.sleep(1)
        assert stored(pg_live_db) == want, logs()
        assert took < TAKEOVER_BOUND_S
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()


def test_one_leader_per_database_and_a_follower_takes_over_when_it_closes(live_store: SpatialStore,
                                                                          tmp_path: Path) -> None:
    """In-process, both backends: two services on one database (PostGIS: two homes, as two hosts;
    SpatiaLite: one home, as two workers of one host) elect one leader; when it goes, the other leads."""
    from live_support import make_settings

    from layers.service import LiveService

    one_host = live_store.dialect.name != "postgresql"
    homes = [tmp_path / "a", tmp_path / ("a" if one_host else "b")]
    services = [LiveService(live_store, make_settings(live_store, home)) for home in homes]
    try:
        for s in services:
            s.ensure_started(mqtt=False)
        first, second = services
        assert first.is_leader and not second.is_leader
        time.sleep(3.5)  # the follower's retries do not take a held lock
        assert first.is_leader and not second.is_leader
        first.close()
        assert wait_for(lambda: second.is_leader, TAKEOVER_BOUND_S)
    finally:
        for s in services:
            s.close()


def test_a_leader_whose_lock_session_ends_steps_down_and_one_leader_remains(
        pg_live_db: SpatialStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL ends the leader's lock session (as a database restart or a cut would): it steps
    down at its next check, and afterwards exactly one process leads again."""
    from live_support import make_settings

    from layers.service import LiveService

    services = [LiveService(pg_live_db, make_settings(pg_live_db, tmp_path / h)) for h in ("a", "b")]
    try:
        for s in services:
            s.ensure_started(mqtt=False)
        assert [s.is_leader for s in services] == [True, False]
        with pg_live_db.engine.connect() as conn:
            ended = conn.execute(text(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'twin-live-leader' AND datname = current_database()) t")).scalar()
        assert ended == 1
        assert wait_for(lambda: "live leader lock lost" in caplog.text, TAKEOVER_BOUND_S)
        assert wait_for(lambda: sum(s.is_leader for s in services) == 1, TAKEOVER_BOUND_S)
        time.sleep(3.5)
        assert sum(s.is_leader for s in services) == 1
    finally:
        for s in services:
            s.close()
