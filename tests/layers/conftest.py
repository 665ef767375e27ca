"""Fixtures of the live-layer tests: a store with a few devices, a client, a broker of our own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_support import Mosquitto, clear_live, device_rows, make_settings

from twin.store import SpatialStore


@pytest.fixture
def live_store(empty_store: SpatialStore) -> SpatialStore:
    empty_store.write_features("devices", device_rows())
    clear_live(empty_store)
    return empty_store


@pytest.fixture
def live_client(live_store: SpatialStore, tmp_path: Path):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app

    with TestClient(create_app(make_settings(live_store, tmp_path), store=live_store)) as client:
        yield client


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    assert shutil.which("mosquitto"), "Debian package mosquitto is needed (run.sh installs it)"
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def live_server(live_store: SpatialStore, tmp_path: Path):
    """Start the app over ``live_store`` in uvicorn; call with extra settings, use as a context manager."""
    from live_support import ServerThread

    from gis_api.app import create_app

    def make(**kw) -> ServerThread:
        return ServerThread(create_app(make_settings(live_store, tmp_path, **kw), store=live_store))

    return make
