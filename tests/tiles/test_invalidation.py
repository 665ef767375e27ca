"""Invalidation by extent: an edit changes the ETag of exactly the tiles it touches (both backends).

The place P sits 500 m west of a z12 tile edge (also a tile edge at every deeper
zoom), so the point 1 km east of it lies in another tile at every zoom from 12 to 18
and well outside every tile buffer (≤ 130 m at z12).
"""

from __future__ import annotations

import datetime as dt
import math
import time

import pytest
from sqlalchemy import text

from tiles.cache import TileCache
from tiles.service import TileService
from tiles.tms import Tile
from twin.changes import row_box

LAT = 31.75
_EDGE = 3425 / 4096 * 360 - 180  # east edge of a z12 tile column near 121°E
_M_PER_DEG = 111_320 * math.cos(math.radians(LAT))
P = (_EDGE - 500 / _M_PER_DEG, LAT)
FAR = (_EDGE + 500 / _M_PER_DEG, LAT)  # 1 km east of P
Q = (_EDGE + 3000 / _M_PER_DEG, LAT + 0.1)  # where a feature is moved to (~11 km north, another z12 tile)
ZOOMS = range(12, 19)


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def event(i: int, lon: float, lat: float, status: str = "reported") -> dict:
    from shapely.geometry import Point

    return {"id": i, "code": f"EV-{i}", "source": "hotline", "category": "litter", "title": f"event {i}",
            "status": status, "reported_at": dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC), "geom": Point(lon, lat)}


@pytest.fixture
def town(empty_store):
    # one event at P, one 1 km away, one at Q; a building near FAR so the composite tile there has content
    empty_store.write_features("events", [event(1, *P), event(2, *FAR), event(3, Q[0] + 0.01, Q[1])])
    yield empty_store
    empty_store.clear(["events"])


@pytest.fixture
def svc(town):
    s = TileService(town, cache=TileCache(2**20), version_ttl=0.05)
    yield s
    s.close()


def etags(svc: TileService, layers: str, place: tuple[float, float]) -> dict[int, str]:
    specs = svc.layer_specs(layers)
    return {z: svc.tile(specs, tile_at(*place, z)).etag for z in ZOOMS}


def other_connection_update(store, sql: str, *, spatial: bool = True) -> None:
    """Run ``sql`` as another program would: its own DBAPI connection, not twin's engine
    (on SQLite without loading SpatiaLite unless ``spatial``: an attribute edit needs none)."""
    url = store.engine.url
    if store.dialect.name == "postgis":
        import psycopg

        with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
            conn.execute(sql)
    else:
        import pysqlite3.dbapi2 as sqlite

        conn = sqlite.connect(url.database)
        if spatial:
            conn.enable_load_extension(True)
            conn.load_extension("mod_spatialite")
        conn.execute(sql)
        conn.commit()
        conn.close()


def wait_for_change(svc: TileService, layers: str, place: tuple[float, float], before: dict[int, str]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and etags(svc, layers, place) == before:
        time.sleep(0.05)


@pytest.mark.parametrize("layers", ["events", "events,buildings,roads"])
def test_edit_to_one_event_changes_tiles_around_it_and_no_tile_1km_away(town, svc, layers):
    near, far = etags(svc, layers, P), etags(svc, layers, FAR)
    with town.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'verified' WHERE code = 'EV-1'"))
    near2, far2 = etags(svc, layers, P), etags(svc, layers, FAR)
    assert all(near2[z] != near[z] for z in ZOOMS), "every tile holding the edited event changes"
    assert far2 == far, "no tile 1 km away changes"


def test_edit_by_raw_sql_in_another_connection_invalidates_the_same_tiles(town, svc):
    near, far = etags(svc, "events", P), etags(svc, "events", FAR)
    other_connection_update(town, "UPDATE events SET status = 'dispatched' WHERE code = 'EV-1'", spatial=False)
    wait_for_change(svc, "events", P, near)  # seen within the version TTL
    near2, far2 = etags(svc, "events", P), etags(svc, "events", FAR)
    assert all(near2[z] != near[z] for z in ZOOMS)
    assert far2 == far


def test_moved_feature_invalidates_its_old_and_new_places(town, svc):
    old, new, far = etags(svc, "events", P), etags(svc, "events", Q), etags(svc, "events", FAR)
    other_connection_update(
        town, f"UPDATE events SET geom = GeomFromText('POINT({Q[0]} {Q[1]})', 4326) WHERE code = 'EV-1'"
        if town.dialect.name == "spatialite" else
        f"UPDATE events SET geom = ST_GeomFromText('POINT({Q[0]} {Q[1]})', 4326) WHERE code = 'EV-1'")
    wait_for_change(svc, "events", P, old)
    old2, new2, far2 = etags(svc, "events", P), etags(svc, "events", Q), etags(svc, "events", FAR)
    assert all(old2[z] != old[z] for z in ZOOMS)
    assert all(new2[z] != new[z] for z in ZOOMS)
    assert far2 == far


def test_replace_load_invalidates_every_tile_of_the_layer(town, svc):
    far = etags(svc, "events", FAR)
    elsewhere = (Q[0] + 0.05, Q[1] + 0.05)
    away = etags(svc, "events", elsewhere)
    town.write_features("events", [event(9, *P)], mode="replace")
    assert all(etags(svc, "events", FAR)[z] != far[z] for z in ZOOMS)
    assert all(etags(svc, "events", elsewhere)[z] != away[z] for z in ZOOMS)


def test_edit_of_one_layer_leaves_other_layers_tiles_alone(town, svc):
    roads = etags(svc, "roads", P)
    with town.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code = 'EV-1'"))
    assert etags(svc, "roads", P) == roads


def test_edited_tile_content_follows_the_edit(town, svc):
    import gzip

    import mapbox_vector_tile

    specs, t = svc.layer_specs("events"), tile_at(*P, 16)

    def status() -> str:
        body = gzip.decompress(svc.tile(specs, t).body)
        feats = mapbox_vector_tile.decode(body)["events"]["features"]
        return next(f["properties"]["status"] for f in feats if f["id"] == 1)

    assert status() == "reported"
    with town.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'handled' WHERE code = 'EV-1'"))
    assert status() == "handled"


def test_change_log_rows_are_written_in_the_edit_transaction(town):
    with town.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM change_log WHERE layer = 'events'")).scalar_one()
    with pytest.raises(RuntimeError), town.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code = 'EV-2'"))
        raise RuntimeError("roll back")
    with town.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM change_log WHERE layer = 'events'")).scalar_one() == before
    with town.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code = 'EV-2'"))
    with town.engine.connect() as conn:
        rows = conn.execute(text("SELECT minx, miny, maxx, maxy, mbr FROM change_log WHERE layer = 'events' "
                                 "ORDER BY id DESC LIMIT 1")).all()
    box = row_box(*rows[0])
    assert box is not None and box[0] == pytest.approx(FAR[0]) and box[1] == pytest.approx(FAR[1])


def test_layer_scheme_still_invalidates_the_whole_layer(town):
    svc = TileService(town, cache=TileCache(2**20), version_ttl=0.05, invalidation="layer")
    try:
        far = etags(svc, "events", FAR)
        with town.engine.begin() as conn:
            conn.execute(text("UPDATE events SET status = 'verified' WHERE code = 'EV-1'"))
        assert all(etags(svc, "events", FAR)[z] != far[z] for z in ZOOMS)
    finally:
        svc.close()
    with pytest.raises(ValueError):
        TileService(town, invalidation="sometimes")
