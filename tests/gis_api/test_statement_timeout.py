"""A query that cannot finish is cut by PostgreSQL's statement timeout: 503 JSON, no stuck worker.

Real scenario, no mocks: another session holds an exclusive lock on the layer's table (as a
long migration or a bulk edit would), so twin's query waits; the timeout cancels it.
"""

from __future__ import annotations

import threading
import time

import pytest
import shapely
from sqlalchemy import text

from twin.settings import TwinSettings
from twin.store import SpatialStore


@pytest.fixture
def locked_postgis(store: SpatialStore):
    """The PostGIS store with `roads` locked by another session (statement timeouts are a server
    feature: SpatiaLite has no server to wait on)."""
    store.write_features("roads", [{"code": "R1", "road_class": "local",
                                     "geom": shapely.LineString([(120.9, 31.7), (121.0, 31.7)])}],
                         mode="replace")
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        with store.engine.connect() as conn:
            conn.execute(text("BEGIN"))
            conn.execute(text("LOCK TABLE roads IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(30)
            conn.execute(text("ROLLBACK"))

    t = threading.Thread(target=hold_lock, daemon=True)
    t.start()
    assert locked.wait(10)
    yield store
    release.set()
    t.join(10)


@pytest.mark.parametrize("backend", ["postgis"], indirect=True)
def test_items_and_tiles_answer_503_when_the_query_is_cut(locked_postgis):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app

    url = locked_postgis.engine.url.render_as_string(hide_password=False)
    settings = TwinSettings(database_url=url, statement_timeout_ms=300, tile_cache_mb=0)
    fresh = SpatialStore.from_settings(settings)  # its connections carry the 300 ms timeout
    with TestClient(create_app(settings, store=fresh)) as client:
        t0 = time.perf_counter()
        r = client.get("/collections/roads/items")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "query_timeout" and r.json()["message"]
        r = client.get("/tiles/roads/14/13691/6671.mvt")
        assert r.status_code in (503, 204), r.text  # 204 only if the tile lies outside the data
        if r.status_code == 503:
            assert r.json()["code"] == "query_timeout"
        assert time.perf_counter() - t0 < 10
        # the server is not stuck: other layers answer at once
        assert client.get("/collections/buildings/items?limit=1").status_code == 200
