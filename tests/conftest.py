"""Shared fixtures: a real store on each backend (SpatiaLite file, PostGIS database).

The PostGIS server comes from ``TWIN_TEST_POSTGRES_URL`` (default: the local
server on 127.0.0.1:5432 as user postgres); each pytest worker gets its own
fresh database ``twin_test_<worker>``. If PostGIS cannot be reached the tests
fail: the README's test command starts it, so nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from twin.db import normalise_url
from twin.settings import TwinSettings
from twin.store import SpatialStore

# Callers without a token get the role TWIN_ANONYMOUS_ROLE. The product's default is "public"
# (roles.json: no pipelines, some fields hidden) and the security tests (tests/security) use it
# explicitly; the tests of the data services run as a closed network would be configured,
# where everyone on it is an operator, so they can reach every layer without logging in.
os.environ.setdefault("TWIN_ANONYMOUS_ROLE", "operator")

BACKENDS = ["spatialite", "postgis"]
ADMIN_URL = os.environ.get("TWIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _fresh_postgis_db(name: str) -> str:
    admin = create_engine(normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def worker_id_suffix(request: pytest.FixtureRequest) -> str:
    # TWIN_TEST_DB_TAG keeps concurrent test runs on one server (several work trees) apart.
    return os.environ.get("TWIN_TEST_DB_TAG", "") + os.environ.get("PYTEST_XDIST_WORKER", "main")


def make_backend_url(backend: str, name: str, tmp_dir: Path) -> str:
    if backend == "spatialite":
        return f"sqlite:///{tmp_dir / (name + '.sqlite')}"
    return _fresh_postgis_db(name)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def store(backend: str, worker_id_suffix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpatialStore]:
    """An empty, migrated store per backend for the session. Tests that write clean up after themselves
    (or use ``empty_store``)."""
    url = make_backend_url(backend, f"twin_test_{worker_id_suffix}", tmp_path_factory.mktemp(backend))
    s = SpatialStore.from_url(url)
    s.migrate()
    yield s
    s.engine.dispose()


@pytest.fixture
def empty_store(store: SpatialStore) -> SpatialStore:
    store.clear()
    return store


@pytest.fixture(scope="session")
def town_store(backend: str, worker_id_suffix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpatialStore]:
    """A store holding the tiny sample town (scale 0.05) plus its rasters, read-only for tests."""
    from sample_data import build_sample_town

    tmp = tmp_path_factory.mktemp(f"town-{backend}")
    url = make_backend_url(backend, f"twin_town_{worker_id_suffix}", tmp)
    s = SpatialStore.from_url(url)
    s.migrate()
    build_sample_town(s, tmp / "rasters", scale=0.05)
    s.raster_dir = tmp / "rasters"  # type: ignore[attr-defined]
    yield s
    s.engine.dispose()


@pytest.fixture(scope="session")
def town_settings(town_store: SpatialStore) -> TwinSettings:
    home = Path(town_store.raster_dir).parent  # type: ignore[attr-defined]
    return TwinSettings(home=home, database_url=town_store.engine.url.render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def town_client(town_store: SpatialStore, town_settings: TwinSettings):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app

    with TestClient(create_app(town_settings, store=town_store)) as client:
        yield client


@pytest.fixture
def client_for():
    """Build a TestClient for a given store (with default settings otherwise)."""
    from fastapi.testclient import TestClient

    from gis_api.app import create_app

    clients = []

    def make(store: SpatialStore, **settings_kw):
        settings = TwinSettings(database_url=store.engine.url.render_as_string(hide_password=False), **settings_kw)
        c = TestClient(create_app(settings, store=store))
        clients.append(c)
        return c

    yield make


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(app) -> Iterator[str]:  # noqa: ANN001 - an ASGI app
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields its URL."""
    import threading
    import time

    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_app():
    """``with serve_app(app) as url:`` a real server for a test's own app (other settings)."""
    return _serve


@pytest.fixture(scope="module")
def live_url(town_store, town_settings):
    """A real uvicorn server on a free loopback port over the sample town, for real clients
    (Chromium, GDAL)."""
    from gis_api.app import create_app

    with _serve(create_app(town_settings, store=town_store)) as url:
        yield url


@pytest.fixture(scope="module")
def live_process_url(town_settings):
    """The app served by uvicorn in its own process, for clients that hold the GIL while they
    wait on the network (GDAL through pyogrio/rasterio)."""
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    env = {**os.environ, "TWIN_HOME": str(town_settings.home), "TWIN_DATABASE_URL": town_settings.database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "gis_api.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("server did not start in 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
