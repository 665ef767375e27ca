"""Building blocks: buildings merged per zoom for z12–z13, kept in step through the change log (both backends)."""

from __future__ import annotations

import gzip
import math
import time

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text

from tiles.cache import TileCache
from tiles.service import TileService
from tiles.tms import Tile
from twin.blocks import BLOCK_ZOOMS, BlockMaintainer, merge_buildings

LON, LAT = 121.0, 31.7
M = 1 / (111_320 * math.cos(math.radians(LAT)))  # degrees of longitude per metre here


def footprint(lon: float, lat: float, size_m: float = 12.0) -> MultiPolygon:
    return MultiPolygon([box(lon, lat, lon + size_m * M, lat + size_m * M * 0.85)])


def cluster(lon: float, lat: float, n: int = 6, gap_m: float = 6.0) -> list[MultiPolygon]:
    step = (12 + gap_m) * M
    return [footprint(lon + i * step, lat + j * step * 0.85) for i in range(n) for j in range(n)]


def test_close_buildings_merge_into_one_block_and_far_clusters_stay_apart():
    geoms = cluster(LON, LAT) + cluster(LON + 0.03, LAT)  # ~2.8 km apart
    n = len(geoms)
    blocks = merge_buildings(np.array(geoms, dtype=object), ["residential"] * (n - 1) + ["commercial"],
                             [9.0] * n, 12)
    assert len(blocks) == 2
    assert sorted(b.building_count for b in blocks) == [36, 36]
    assert all(b.use == "residential" and b.height_m == 9.0 for b in blocks)
    for b in blocks:  # the block covers its buildings (generalised: nearly all of their area)
        inside = [g for g in geoms if g.intersects(b.geom)]
        covered = sum(g.intersection(b.geom).area for g in inside) / sum(g.area for g in inside)
        assert covered > 0.9


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), gap=st.floats(1.0, 200.0), z=st.sampled_from(BLOCK_ZOOMS))
def test_blocks_are_valid_multipolygons_and_account_for_at_most_every_building(n, gap, z):
    geoms = cluster(LON, LAT, n, gap)
    blocks = merge_buildings(np.array(geoms, dtype=object), ["public"] * len(geoms), [6.0] * len(geoms), z)
    assert sum(b.building_count for b in blocks) <= len(geoms)
    assert all(b.geom.is_valid and b.geom.geom_type == "MultiPolygon" for b in blocks)


def tile_at(lon: float, lat: float, z: int) -> Tile:
    n = 1 << z
    return Tile(z, int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def rows(geoms: list[MultiPolygon], start: int) -> list[dict]:
    return [{"id": start + i, "code": f"BK-{start + i}", "use": "residential", "floors": 3, "height_m": 9.0,
             "geom": g} for i, g in enumerate(geoms)]


@pytest.fixture
def blocks_store(empty_store):
    empty_store.write_features("buildings", rows(cluster(LON, LAT), 1))
    yield empty_store
    empty_store.clear(["buildings"])
    with empty_store.engine.begin() as conn:
        conn.execute(text("DELETE FROM building_blocks"))


def features(svc: TileService, t: Tile) -> list[dict]:
    body = svc.tile(svc.layer_specs("buildings"), t).body
    return mapbox_vector_tile.decode(gzip.decompress(body))["buildings"]["features"] if body else []


def test_z12_tiles_draw_blocks_z14_single_buildings_and_an_edit_refreshes_the_blocks(blocks_store):
    store = blocks_store
    svc = TileService(store, cache=TileCache(2**20), version_ttl=0.05)
    maint = BlockMaintainer(store, svc.versions.feed)
    try:
        maint.catch_up()
        assert maint.run_once() == -1  # nothing built yet: every cell
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM building_blocks")).scalar_one() == len(BLOCK_ZOOMS)
        z12 = features(svc, tile_at(LON, LAT, 12))
        assert len(z12) == 1 and z12[0]["properties"]["use"] == "residential"
        assert z12[0]["properties"]["height_m"] == 9.0
        assert len(features(svc, tile_at(LON, LAT, 14))) == 36  # single buildings from z14

        far = (LON + 0.05, LAT)  # ~4.7 km east: another z12 tile? keep the check to its own tile
        t_here, t_far = tile_at(LON, LAT, 13), tile_at(*far, 13)
        etag_here = svc.tile(svc.layer_specs("buildings"), t_here).etag
        store.write_features("buildings", rows(cluster(*far, n=3), 100))  # a new quarter, by the store
        svc.versions.get()  # the feed reads the new change; the maintainer queued its cells
        assert maint.run_once() > 0
        new = features(svc, t_far)
        assert len(new) == 1 and new[0]["properties"]["use"] == "residential"
        assert svc.tile(svc.layer_specs("buildings"), t_here).etag == etag_here  # the old block's tile is intact
    finally:
        maint.stop()
        svc.close()


def test_two_workers_recomputing_at_once_leave_one_set_of_blocks(blocks_store):
    """Every server process runs a maintainer; they must not deadlock or duplicate blocks."""
    import threading

    from twin.changes import ChangeFeed

    store = blocks_store
    makers = [BlockMaintainer(store, ChangeFeed(store.engine)) for _ in range(2)]
    errors: list[Exception] = []

    def work(m: BlockMaintainer) -> None:
        try:
            m.catch_up()
            for _ in range(20):  # a worker that found the other busy retries on its next round
                m.run_once()
                if not (m._all or m._cells or m._boxes):
                    break
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in makers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with store.engine.connect() as conn:
        per_zoom = dict(conn.execute(text("SELECT zoom, count(*) FROM building_blocks GROUP BY zoom")).all())
    assert per_zoom == {z: 1 for z in BLOCK_ZOOMS}


def test_an_attribute_edit_reuses_the_outlines_and_a_shape_edit_merges_again(blocks_store, monkeypatch):
    """A height edit (the commonest in a living town) recounts the attributes of the blocks it touches
    and never merges the cell; a moved building merges the cell again. Both end as a full recompute would."""
    import twin.blocks

    store = blocks_store
    svc = TileService(store, cache=TileCache(2**20), version_ttl=0.05)
    maint = BlockMaintainer(store, svc.versions.feed)
    merges: list[int] = []
    real = twin.blocks.block_parts
    monkeypatch.setattr(twin.blocks, "block_parts", lambda merc, z: merges.append(z) or real(merc, z))

    def blocks() -> list[tuple]:
        with store.engine.connect() as conn:
            return sorted(conn.execute(text("SELECT zoom, use, height_m, building_count, ST_AsText(geom) FROM building_blocks")).all())

    try:
        maint.catch_up()
        maint.run_once()
        maint.memo.clear()
        svc.versions.get()  # the feed's first read: later edits reach the maintainer

        def sql_edit_then_refresh(sql: str) -> int:
            """``sql`` by another connection, as another program would; the feed learns of it and the
            maintainer runs once (``merges`` then holds the zooms it merged)."""
            with store.engine.begin() as conn:
                conn.execute(text(sql))
            time.sleep(0.1)  # past the version TTL
            svc.versions.get()
            merges.clear()
            return maint.run_once()

        assert sql_edit_then_refresh("UPDATE buildings SET height_m = 45 WHERE id = 1") > 0  # one taller
        assert merges == [], "an attribute edit (change_log.shape = 0) recounts the block, never merges the cell"
        assert maint.recounted_blocks == len(BLOCK_ZOOMS)
        first = blocks()
        assert sql_edit_then_refresh("UPDATE buildings SET height_m = 99 WHERE id = 2") > 0
        assert merges == [], "a height edit reuses the cell's outlines"
        after_height = blocks()
        assert [b[4] for b in after_height] == [b[4] for b in first]
        assert all(b[2] > f[2] for b, f in zip(after_height, first, strict=True)), "the mean height follows the edit"
        with store.engine.begin() as conn:  # the reference: every cell merged from scratch
            twin.blocks.recompute_cells(conn, None, 0)
        assert [b[:4] for b in blocks()] == [b[:4] for b in after_height]

        moved = rows(cluster(LON, LAT), 1)[0]
        moved["geom"] = shapely.affinity.translate(moved["geom"], xoff=0.01)  # ~1 km east: leaves the block
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM buildings WHERE id = 1"))
            store.write_features("buildings", [moved], conn=conn)
        time.sleep(0.1)  # past the version TTL
        svc.versions.get()
        merges.clear()
        maint.run_once()
        assert merges, "a moved building merges its cells again"
    finally:
        maint.stop()
        svc.close()


def test_the_change_log_says_whether_an_update_changed_the_geometry(blocks_store):
    """``change_log.shape``: 0 for an attribute edit, 1 for a geometry edit (even inside the same
    extent), by any writer (plain SQL here), on both backends."""
    store = blocks_store
    from twin.changes import ChangeFeed

    feed = ChangeFeed(store.engine)
    feed.refresh()
    heard: list[tuple[str | None, bool]] = []
    feed.edit_listeners.append(lambda layer, box, shape: heard.append((layer, shape)))
    setter = "ST_GeomFromText" if store.engine.dialect.name == "postgresql" else "GeomFromText"
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE buildings SET height_m = height_m + 1 WHERE id = 3"))
    time.sleep(0.01)
    feed.refresh()
    assert heard == [("buildings", False)]
    heard.clear()
    with store.engine.begin() as conn:  # the same extent, one vertex pulled in: a new shape
        wkt = conn.execute(text("SELECT ST_AsText(geom) FROM buildings WHERE id = 3")).scalar_one()
        g = shapely.from_wkt(wkt)
        poly = g.geoms[0]
        (x0, y0, x1, y1) = poly.bounds
        notch = MultiPolygon([shapely.Polygon([(x0, y0), (x1, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1), (x0, y1)])])
        conn.execute(text(f"UPDATE buildings SET geom = {setter}(:w, 4326) WHERE id = 3"), {"w": notch.wkt})
    feed.refresh()
    assert heard and all(layer == "buildings" and shape for layer, shape in heard)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(1, 36), st.sampled_from(["height", "use", "floors"]),
                                st.floats(3, 120, allow_nan=False)), min_size=1, max_size=6))
def test_recounted_blocks_equal_a_full_recompute(blocks_store, edits):
    """Whatever attribute edits land, the recounted blocks are what merging every cell again gives."""
    import twin.blocks

    store = blocks_store
    from twin.changes import ChangeFeed

    feed = ChangeFeed(store.engine)
    maint = BlockMaintainer(store, feed)

    def blocks() -> list[tuple]:
        with store.engine.connect() as conn:
            return sorted(conn.execute(text("SELECT zoom, cell_x, cell_y, use, height_m, building_count, "
                                            "ST_AsText(geom) FROM building_blocks")).all())

    try:
        maint.catch_up()
        maint.run_once()
        feed.refresh()
        with store.engine.begin() as conn:
            for bid, what, value in edits:
                if what == "height":
                    conn.execute(text("UPDATE buildings SET height_m = :v WHERE id = :i"), {"v": round(value, 2), "i": bid})
                elif what == "use":
                    conn.execute(text("UPDATE buildings SET use = :v WHERE id = :i"),
                                 {"v": ["residential", "commercial", "industrial"][int(value) % 3], "i": bid})
                else:
                    conn.execute(text("UPDATE buildings SET floors = :v WHERE id = :i"), {"v": int(value) % 30 + 1, "i": bid})
        time.sleep(0.01)
        feed.refresh()
        maint.run_once()
        assert not maint._cells and not maint._all, "attribute edits never queue a cell merge"
        recounted = blocks()
        with store.engine.begin() as conn:
            twin.blocks.recompute_cells(conn, None, 0)
        assert [b[:6] for b in blocks()] == [b[:6] for b in recounted]
    finally:
        maint.stop()
