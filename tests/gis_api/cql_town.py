"""A small data set for CQL2 tests through the HTTP API, served once per module and backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import shapely
from fastapi.testclient import TestClient

from gis_api.app import create_app
from twin.settings import TwinSettings
from twin.store import SpatialStore

DAY = dt.datetime(2026, 9, 28, tzinfo=dt.UTC)
NAMES = ["École Ａ座", "ÉCOLE NORD", "ecole sud", "E\u0301cole Est", "Straße 1", "ΟΔΟΣ", "back\\slash", None]


def _building(i: int) -> dict:
    return {
        "code": f"B{i:03d}",
        "name": NAMES[i % len(NAMES)] if i < 2 * len(NAMES) else None,
        "address": ("Main St " if i % 3 == 0 else "main st ") + str(i),
        "use": "residential" if i % 2 else "commercial",
        "floors": 1 + i % 6,
        "height_m": 3.0 * (1 + i % 6) + (0.5 if i % 4 == 0 else 0.0),
        "year_built": None if i % 7 == 0 else 1990 + i,
        "geom": shapely.box(120.9 + i * 1e-3, 31.7, 120.9004 + i * 1e-3, 31.7004),
    }


BUILDINGS = [_building(i) for i in range(30)]
# one event per day at 06:00 UTC, and one late on the second day
EVENTS = [{"code": f"E{i}", "source": "hotline_12345", "category": "noise", "title": "noise",
           "status": "closed" if i % 2 else "reported", "reported_at": DAY + dt.timedelta(days=i, hours=6),
           "geom": shapely.Point(120.9 + i * 1e-3, 31.7)} for i in range(8)]
EVENTS.append({"code": "E1late", "source": "hotline_12345", "category": "noise", "title": "noise",
               "status": "reported", "reported_at": dt.datetime(2026, 9, 29, 23, 59, 59, tzinfo=dt.UTC),
               "geom": shapely.Point(120.95, 31.7)})


def serve(store: SpatialStore) -> Iterator[TestClient]:
    """Load the data into ``store`` and yield a client over it; the store is emptied afterwards."""
    store.clear()
    store.write_features("buildings", BUILDINGS)
    store.write_features("events", EVENTS)
    settings = TwinSettings(database_url=store.engine.url.render_as_string(hide_password=False))
    with TestClient(create_app(settings, store=store)) as client:
        yield client
    store.clear()


def expect(pred, rows=BUILDINGS) -> list[str]:
    return sorted(r["code"] for r in rows if pred(r))
