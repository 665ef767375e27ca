"""Read replicas against a real streaming replica of the test PostgreSQL (run.sh setup_replica).

The replica (port 5433, ``TWIN_TEST_REPLICA_URL``) was made with ``pg_basebackup -R`` from the test
server; a test database created on the primary reaches it by streaming replication. Proofs that a
read was served by the replica use ``pg_wal_replay_pause()``: a row written on the primary is not on
the paused replica, so a 404 for it can only come from the replica. Failover stops the replica
cluster for real (``pg_ctlcluster … stop``) and starts it again.

The tests of this module take a file lock: they pause, stop and start the one shared replica.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gis_api.app import create_app
from gis_api.replicas import min_lsn
from tests.conftest import ADMIN_URL, _fresh_postgis_db
from twin.db import normalise_url
from twin.replicas import format_lsn, parse_lsn
from twin.settings import TwinSettings
from twin.store import SpatialStore

REPLICA_ADMIN_URL = os.environ.get(
    "TWIN_TEST_REPLICA_URL", make_url(ADMIN_URL).set(port=5433).render_as_string(hide_password=False))
CLUSTER = os.environ.get(
    "TWIN_TEST_REPLICA_CLUSTER", f"{max(os.listdir('/usr/lib/postgresql'), key=int, default='15')}/replica")
LOCK = Path("/tmp/twin-test-replica.lock")


def _on(url: str, db: str) -> str:
    return make_url(url).set(database=db).render_as_string(hide_password=False)


def _scalar(url: str, sql: str):  # noqa: ANN202
    eng = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with eng.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        eng.dispose()


def _until(check, timeout: float = 60.0, what: str = "condition"):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _replayed(primary_url: str, replica_url: str) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    target = parse_lsn(_scalar(primary_url, "SELECT pg_current_wal_lsn()::text"))
    _until(lambda: parse_lsn(_scalar(replica_url, "SELECT pg_last_wal_replay_lsn()::text")) >= target,
           what="the replica to replay the primary's WAL")


def _cluster(action: str, *, check: bool = True) -> int:
    """``pg_ctlcluster <version> replica <action>`` (``stop`` is a fast shutdown: sessions are cut)."""
    version, name = CLUSTER.split("/")
    cmd = ["pg_ctlcluster", version, name, action]
    if action == "stop":
        cmd += ["-m", "fast"]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, timeout=180).returncode


@contextlib.contextmanager
def paused_replay() -> Iterator[None]:
    _scalar(REPLICA_ADMIN_URL, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        _scalar(REPLICA_ADMIN_URL, "SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
def replica_lock() -> Iterator[None]:
    with LOCK.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # a run killed mid-test may have left the replica stopped or paused
        if _cluster("status", check=False) == 3:  # not running
            _cluster("start")
        _until(lambda: _scalar(REPLICA_ADMIN_URL, "SELECT pg_is_in_recovery()"), timeout=180,
               what="the replica to accept queries")
        _scalar(REPLICA_ADMIN_URL, "SELECT pg_wal_replay_resume()")
        yield


@pytest.fixture(scope="module")
def primary_url(replica_lock: None, worker_id_suffix: str) -> Iterator[str]:
    """A fresh, migrated test database on the primary, replayed on the replica."""
    name = f"twin_replica_{worker_id_suffix}"
    url = _fresh_postgis_db(name)
    s = SpatialStore.from_url(url)
    s.migrate()
    s.engine.dispose()
    _replayed(url, _on(REPLICA_ADMIN_URL, name))
    yield url
    with contextlib.suppress(Exception):
        eng = create_engine(normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


@pytest.fixture(scope="module")
def replica_url(primary_url: str) -> str:
    return _on(REPLICA_ADMIN_URL, make_url(primary_url).database or "")


def _settings(primary_url: str, replica_url: str, home: Path, **kw) -> TwinSettings:  # noqa: ANN003
    # no first-view warm-up: it would render the small test town's tiles before the requests that
    # check where reads go
    kw = {"replica_check_s": 0.2, "replica_retry_s": 1.0, "replica_max_lag_s": 3600.0, "first_view_warm": "", **kw}
    return TwinSettings(home=home, database_url=primary_url, database_read_urls=replica_url,
                        tile_blocks=False, **kw)


@contextlib.contextmanager
def served(serve_app, settings: TwinSettings) -> Iterator[tuple[str, SpatialStore]]:  # noqa: ANN001
    store = SpatialStore.from_settings(settings)
    try:
        with serve_app(create_app(settings, store=store)) as url:
            yield url, store
    finally:
        if store.read_router is not None:
            store.read_router.dispose()
        store.engine.dispose()


def _add_building(url: str, name: str) -> int:
    """A building written straight to the primary by another process's engine (not through the app)."""
    s = SpatialStore.from_url(url)
    try:
        s.write_features("buildings", [{"code": f"R-{name}-{time.time_ns()}", "name": name, "use": "residential", "floors": 3, "height_m": 9.0, "geom": shapely.box(120.90, 31.70, 120.9003, 31.7003)}])
        with s.engine.connect() as conn:
            return int(conn.execute(text("SELECT max(id) FROM buildings")).scalar_one())
    finally:
        s.engine.dispose()


def _replica_up(base: str) -> bool:
    checks = httpx.get(f"{base}/readyz", timeout=10).json()["checks"]
    return any(k.startswith("replica ") and v.startswith("ok") for k, v in checks.items())


def test_reads_are_served_by_the_replica(primary_url, replica_url, serve_app, tmp_path):
    with served(serve_app, _settings(primary_url, replica_url, tmp_path)) as (base, _store):
        _until(lambda: _replica_up(base), what="the replica to be in use")
        with paused_replay():
            fid = _add_building(primary_url, "only on the primary")
            # the paused replica has not replayed the row: a 404 can only come from it
            r = httpx.get(f"{base}/collections/buildings/items/{fid}", timeout=10)
            assert r.status_code == 404, r.text
            pending = _scalar(replica_url, f"SELECT count(*) FROM buildings WHERE id = {fid}")
            assert pending == 0
        # replay resumes: the same read now finds the row, still on the replica
        _until(lambda: httpx.get(f"{base}/collections/buildings/items/{fid}", timeout=10).status_code == 200,
               what="the row to be replayed")
        seen = _scalar(replica_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'twin-replica-read'")
        assert seen >= 1  # the app's pooled read connections sit on the replica
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        replica_reads = [line for line in metrics.splitlines()
                         if line.startswith("twin_replica_reads_total{") and "primary" not in line]
        assert replica_reads and float(replica_reads[0].split()[-1]) >= 2
        assert "twin_replica_lag_seconds{" in metrics and "twin_replica_lag_bytes{" in metrics


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def test_tiles_scenes_analysis_and_search_read_the_replica(primary_url, replica_url, serve_app, tmp_path):
    _add_building(primary_url, "service reads")
    _replayed(primary_url, replica_url)
    x, y = _tile(120.9001, 31.7001, 16)
    requests = {
        "tile": ("GET", f"/tiles/buildings/16/{x}/{y}.mvt", None),
        "scene": ("GET", "/scenes/scene.glb?bbox=120.899,31.699,120.902,31.702&layers=buildings", None),
        "search": ("GET", "/search?q=service", None),
        "features": ("GET", "/collections/buildings/items?bbox=120.899,31.699,120.902,31.702", None),
        "analysis": ("POST", "/analysis/buffer", {"geometry": {"type": "Point", "coordinates": [120.9001, 31.7001]},
                                                  "distance": 50, "layers": ["buildings"]}),
        "process": ("POST", "/processes/buffer/execution", {"inputs": {
            "geometry": {"type": "Point", "coordinates": [120.9001, 31.7001]}, "distance": 50,
            "layers": ["buildings"]}}),
    }
    with served(serve_app, _settings(primary_url, replica_url, tmp_path)) as (base, store), \
            httpx.Client(base_url=base, timeout=60) as c:
        _until(lambda: _replica_up(base), what="the replica to be in use")
        replica = store.read_router.replicas[0]  # type: ignore[union-attr]
        for what, (method, path, body) in requests.items():
            before = replica.reads
            r = c.request(method, path, json=body)
            assert r.status_code == 200, (what, r.status_code, r.text[:300])
            assert replica.reads > before, f"{what} did not read the replica"


def test_writes_go_to_the_primary_and_the_writer_reads_them(primary_url, replica_url, serve_app, tmp_path):
    s1 = _settings(primary_url, replica_url, tmp_path / "a")
    s2 = _settings(primary_url, replica_url, tmp_path / "b")
    # two app processes' worth of state (two workers): the writer's cookie carries its write to the other
    with served(serve_app, s1) as (base_a, _a), served(serve_app, s2) as (base_b, _b):
        for base in (base_a, base_b):
            _until(lambda base=base: _replica_up(base), what="the replica to be in use")
        with paused_replay(), httpx.Client(timeout=10) as writer, httpx.Client(timeout=10) as other:
            r = writer.post(f"{base_a}/events", json={"lon": 120.75, "lat": 31.65, "category": "garbage",
                                                      "title": "replica test", "by": "test"})
            assert r.status_code == 201, r.text
            eid = r.json()["id"]
            lsn = r.headers["x-twin-wal-lsn"]
            assert writer.cookies.get("twin_wal") == lsn
            # on the primary, not (yet) on the paused replica
            assert _scalar(primary_url, f"SELECT count(*) FROM events WHERE id = {eid}") == 1
            assert _scalar(replica_url, f"SELECT count(*) FROM events WHERE id = {eid}") == 0
            # the writer reads its write on the worker that wrote
            assert writer.get(f"{base_a}/collections/events/items/{eid}").status_code == 200
            # a client without the cookie on the other worker reads the replica: not there yet
            assert other.get(f"{base_b}/collections/events/items/{eid}").status_code == 404
            # the writer's cookie takes its reads on the other worker to the primary
            assert writer.get(f"{base_b}/collections/events/items/{eid}").status_code == 200
            # API clients without cookies may name the position themselves
            assert other.get(f"{base_b}/collections/events/items/{eid}",
                             headers={"X-Twin-Min-LSN": lsn}).status_code == 200
            # from then on that worker reads nothing older than what it has read (its caches stay consistent)
            assert other.get(f"{base_b}/collections/events/items/{eid}").status_code == 200
        _until(lambda: httpx.get(f"{base_b}/collections/events/items/{eid}", timeout=10).status_code == 200,
               what="the event to be replayed")


def test_failover_when_the_replica_stops_and_back_when_it_returns(primary_url, replica_url, serve_app, tmp_path):
    fid = _add_building(primary_url, "failover")
    _replayed(primary_url, replica_url)
    with served(serve_app, _settings(primary_url, replica_url, tmp_path)) as (base, store):
        _until(lambda: _replica_up(base), what="the replica to be in use")
        statuses: list[int] = []
        stop = threading.Event()

        def read_loop() -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    for path in (f"/collections/buildings/items/{fid}", "/collections/buildings/items?limit=5"):
                        statuses.append(c.get(base + path).status_code)

        reader = threading.Thread(target=read_loop, daemon=True)
        reader.start()
        try:
            _until(lambda: len(statuses) >= 10, what="reads before the stop")
            _cluster("stop")  # a real stop of the replica cluster, mid-run
            before = len(statuses)
            _until(lambda: len(statuses) >= before + 20, what="reads while the replica is down")
            checks = httpx.get(f"{base}/readyz", timeout=10).json()
            assert checks["status"] == "ok"
            assert any(k.startswith("replica ") and v.startswith("unavailable") for k, v in checks["checks"].items())
            assert "twin_replica_up{" in (m := httpx.get(f"{base}/metrics", timeout=10).text)
            assert any(line.startswith("twin_replica_up{") and line.endswith(" 0.0") for line in m.splitlines())
        finally:
            _cluster("start")
        try:
            _until(lambda: _replica_up(base), what="the replica to come back into use")
            r0 = store.read_router.replicas[0].reads  # type: ignore[union-attr]
            _until(lambda: store.read_router.replicas[0].reads > r0 + 5,  # type: ignore[union-attr]
                   what="reads to go to the replica again")
        finally:
            stop.set()
            reader.join(timeout=30)
        assert statuses and all(code == 200 for code in statuses), sorted(set(statuses))
        assert store.read_router.replicas[0].failures >= 1  # type: ignore[union-attr]


def test_a_replica_dying_under_a_query_is_taken_out_and_the_read_retried_on_the_primary(
        primary_url, replica_url, tmp_path):
    """A replica connection killed under a read: the query fails with ReplicaFailed (a StoreUnavailable,
    not a raw OperationalError, so the circuit breaker does not count it; the HTTP layer runs the
    request again on the primary), the replica is out, and the next read goes to the primary."""
    from twin.replicas import ReadContext, ReplicaFailed, read_context

    settings = _settings(primary_url, replica_url, tmp_path, replica_retry_s=30.0)
    store = SpatialStore.from_settings(settings)
    router = store.read_router
    assert router is not None
    try:
        router.check(force=True)
        assert router.replicas[0].healthy
        with read_context(ReadContext()) as ctx, store.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True  # on the replica
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert _scalar(replica_url, f"SELECT pg_terminate_backend({pid})") is True
            with pytest.raises(ReplicaFailed):
                conn.execute(text("SELECT count(*) FROM buildings"))
            assert ctx.failed and not router.replicas[0].healthy and router.replicas[0].failures == 1
        with read_context(ReadContext()), store.engine.connect() as conn:  # out: reads go to the primary
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
    finally:
        router.dispose()
        store.engine.dispose()


def test_a_slow_query_on_the_replica_is_a_timeout_not_a_replica_failure(primary_url, replica_url, tmp_path):
    from sqlalchemy.exc import OperationalError

    from twin.replicas import ReadContext, ReplicaFailed, read_context

    store = SpatialStore.from_settings(_settings(primary_url, replica_url, tmp_path))
    router = store.read_router
    assert router is not None
    try:
        router.check(force=True)
        with read_context(ReadContext()) as ctx, store.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
            conn.execute(text("SET statement_timeout = 50"))
            with pytest.raises(OperationalError, match="statement timeout") as err:
                conn.execute(text("SELECT pg_sleep(2)"))
            assert not isinstance(err.value, ReplicaFailed)
        assert not ctx.failed and router.replicas[0].healthy and router.replicas[0].failures == 0
    finally:
        router.dispose()
        store.engine.dispose()


def test_a_request_whose_replica_dies_mid_request_is_answered_by_the_primary(
        primary_url, replica_url, serve_app, tmp_path):
    """The replica's backend is killed (pg_terminate_backend) just before the request's query runs on it:
    the HTTP answer is still 200, from the primary, and the replica is out."""
    from sqlalchemy import event

    fid = _add_building(primary_url, "mid-request")
    _replayed(primary_url, replica_url)
    with served(serve_app, _settings(primary_url, replica_url, tmp_path, replica_retry_s=60.0)) as (base, store):
        _until(lambda: _replica_up(base), what="the replica to be in use")
        replica = store.read_router.replicas[0]  # type: ignore[union-attr]
        killed: list[int] = []

        @event.listens_for(store.engine, "before_cursor_execute")
        def kill(conn, _cursor, statement, *_args):  # noqa: ANN001, ANN202
            if "FROM buildings" in statement and not killed and conn.info.get("twin_replica"):
                pid = conn.connection.dbapi_connection.info.backend_pid
                killed.append(pid)
                assert _scalar(replica_url, f"SELECT pg_terminate_backend({pid}, 10000)") is True

        r = httpx.get(f"{base}/collections/buildings/items/{fid}", timeout=30)
        event.remove(store.engine, "before_cursor_execute", kill)
        assert killed, "the request did not read the replica"
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["name"] == "mid-request"
        assert replica.failures == 1 and not replica.healthy
        checks = httpx.get(f"{base}/readyz", timeout=10).json()
        assert checks["status"] == "ok" and any(v.startswith("unavailable") for v in checks["checks"].values())


def test_spatialite_refuses_read_urls(tmp_path):
    with pytest.raises(ValidationError, match="needs a PostgreSQL TWIN_DATABASE_URL"):
        TwinSettings(home=tmp_path, database_read_urls="postgresql://postgres@127.0.0.1:5433/postgres")
    with pytest.raises(ValidationError, match="not PostgreSQL URLs"):
        TwinSettings(home=tmp_path, database_url="postgresql://postgres@127.0.0.1/x",
                     database_read_urls="sqlite:///elsewhere.sqlite")


def test_twin_config_names_the_refusal(tmp_path):
    env = {**os.environ, "TWIN_HOME": str(tmp_path), "TWIN_DATABASE_READ_URLS": "postgresql://127.0.0.1:5433/x"}
    env.pop("TWIN_DATABASE_URL", None)
    twin = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "twin"
    r = subprocess.run([str(twin), "config"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert "TWIN_DATABASE_READ_URLS needs a PostgreSQL TWIN_DATABASE_URL" in r.stderr + r.stdout


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text_round_trips(lsn):
    assert parse_lsn(format_lsn(lsn)) == lsn


@given(st.text(max_size=40))
def test_a_garbled_lsn_cookie_or_header_is_ignored_never_an_error(raw):
    headers = [(b"cookie", f"a=b; twin_wal={raw}".encode("utf-8", "replace")),
               (b"x-twin-min-lsn", raw.encode("utf-8", "replace"))]
    value = min_lsn({"headers": headers})
    assert value >= 0
    try:
        expected = parse_lsn(raw.encode("utf-8", "replace").decode("latin-1"))
    except ValueError:
        expected = None
    if expected is not None:
        assert value >= expected
