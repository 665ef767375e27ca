"""The change index: no edit is ever missed, point edits are exact, compaction only widens (both backends)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point
from sqlalchemy import text

from twin.changes import BUFFER_FRACTION, EXACT_MAX_ZOOM, ChangeFeed, ChangeIndex, compact, row_box


def merc(lon: float, lat: float) -> tuple[float, float]:
    return (lon + 180) / 360, (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2


def grown_tile(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 1 << z
    b = BUFFER_FRACTION / n
    return x / n - b, y / n - b, (x + 1) / n + b, (y + 1) / n + b


def tile_of(u: float, v: float, z: int) -> tuple[int, int]:
    n = 1 << z
    return min(int(u * n), n - 1), min(int(v * n), n - 1)


boxes = st.tuples(
    st.floats(120.0, 121.0), st.floats(31.0, 32.0),
    st.floats(0.0, 0.2), st.floats(0.0, 0.2),
).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@settings(max_examples=300, deadline=None)
@given(box=boxes, z=st.integers(0, 22), du=st.floats(-3, 3), dv=st.floats(-3, 3))
def test_a_tile_whose_buffer_meets_a_change_always_sees_it(box, z, du, dv):
    index = ChangeIndex()
    index.add("events", 7, box)
    u0, v1 = merc(box[0], box[1])
    u1, v0 = merc(box[2], box[3])
    n = 1 << z
    # a tile near the change's corner, a few tiles either way
    x = min(max(int(u0 * n + du), 0), n - 1)
    y = min(max(int(v0 * n + dv), 0), n - 1)
    tu0, tv0, tu1, tv1 = grown_tile(z, x, y)
    meets = tu0 <= u1 and tu1 >= u0 and tv0 <= v1 and tv1 >= v0
    if meets:
        assert index.tile_version("events", z, x, y) == 7


@settings(max_examples=300, deadline=None)
@given(lon=st.floats(120.0, 121.0), lat=st.floats(31.0, 32.0), z=st.integers(0, EXACT_MAX_ZOOM),
       du=st.integers(-2, 2), dv=st.integers(-2, 2))
def test_a_point_edit_touches_only_tiles_whose_buffer_holds_the_point(lon, lat, z, du, dv):
    index = ChangeIndex()
    index.add("events", 3, (lon, lat, lon, lat))
    u, v = merc(lon, lat)
    x, y = tile_of(u, v, z)
    x, y = min(max(x + du, 0), (1 << z) - 1), min(max(y + dv, 0), (1 << z) - 1)
    tu0, tv0, tu1, tv1 = grown_tile(z, x, y)
    eps = 1e-9
    inside = tu0 - eps <= u <= tu1 + eps and tv0 - eps <= v <= tv1 + eps
    assert (index.tile_version("events", z, x, y) == 3) == inside or not inside and (
        # a point exactly on a (grown) edge may count for the neighbour: conservative, never a miss
        min(abs(u - tu0), abs(u - tu1), abs(v - tv0), abs(v - tv1)) < 1e-6)


def test_whole_layer_change_is_a_floor_for_every_tile_and_other_layers_are_apart():
    index = ChangeIndex()
    index.add("events", 5, (120.5, 31.5, 120.5, 31.5))
    index.add("buildings", 9, None)
    assert index.tile_version("buildings", 18, 1, 1) == 9
    assert index.tile_version("events", 18, 1, 1) == 0
    key = index.key(["events", "buildings"], (120.49, 31.49, 120.51, 31.51), 14)
    assert key == "events.5,buildings.9"


def test_key_for_bounds_covering_many_tiles_uses_a_coarser_zoom_and_stays_conservative():
    index = ChangeIndex()
    index.add("events", 4, (120.3, 31.3, 120.3, 31.3))
    # bounds of a whole 3D tile at LOD 18: hundreds of z18 tiles, answered on a few coarser ones
    assert index.versions(["events"], (120.0, 31.0, 121.0, 32.0), 18) == {"events": 4}
    assert index.versions(["events"], (120.5, 31.5, 120.6, 31.6), 18) == {"events": 0}


def _events(n: int) -> list[dict]:
    return [{"code": f"CX-{i}", "source": "hotline", "category": "litter", "title": "t", "status": "reported",
             "reported_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
             "geom": Point(120.5 + (i % 20) * 0.004, 31.5 + (i // 20) * 0.004)} for i in range(n)]


def test_compaction_shrinks_the_log_and_keys_only_grow(empty_store):
    store = empty_store
    store.write_features("events", _events(60))  # 60 small writes → 60 logged rows
    with store.engine.begin() as conn:
        for i in range(0, 60, 3):
            conn.execute(text(f"UPDATE events SET status = 'verified' WHERE code = 'CX-{i}'"))
    feed = ChangeFeed(store.engine)
    feed.refresh()
    probes = [(z, x, y) for z in (12, 14, 16, 18)
              for (x, y) in {tile_of(*merc(120.5 + i * 0.002, 31.5 + j * 0.002), z)
                             for i in range(0, 40, 3) for j in range(0, 12, 3)}]
    before = {t: feed.index.tile_version("events", *t) for t in probes}
    with store.engine.connect() as conn:
        rows_before = conn.execute(text("SELECT count(*) FROM change_log")).scalar_one()
    removed = compact(store.engine, keep=5)
    assert removed > 0
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM change_log")).scalar_one() == rows_before - removed
    feed.refresh()  # the generation moved: reloads the whole log
    after = {t: feed.index.tile_version("events", *t) for t in probes}
    assert all(after[t] >= before[t] for t in probes)
    assert any(after[t] > 0 for t in probes)
    # and new edits are still seen incrementally after the reload
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE events SET status = 'closed' WHERE code = 'CX-0'"))
    feed.refresh()
    t0 = (16, *tile_of(*merc(120.5, 31.5), 16))
    assert feed.index.tile_version("events", *t0) > after.get(t0, 0)
    store.clear(["events"])


@pytest.mark.parametrize("rows", [3, 600])
def test_twin_loads_log_rows_one_by_one_when_small_and_one_whole_layer_row_when_bulk(empty_store, rows):
    store = empty_store
    with store.engine.connect() as conn:
        start = conn.execute(text("SELECT coalesce(max(id), 0) FROM change_log")).scalar_one()
    store.write_features("events", _events(rows))
    with store.engine.connect() as conn:
        logged = conn.execute(text(f"SELECT minx, miny, maxx, maxy, mbr FROM change_log WHERE id > {start} "
                                   "AND layer = 'events'")).all()
        bulk = conn.execute(text("SELECT bulk FROM change_log_state")).scalar_one()
    assert bulk == 0
    boxes = [row_box(*r) for r in logged]
    if rows == 3:
        assert len(boxes) == 3 and all(b is not None and 120.5 <= b[0] <= 120.6 for b in boxes)
    else:
        assert boxes == [None]
    store.clear(["events"])
