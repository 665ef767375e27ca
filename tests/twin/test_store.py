"""The spatial store on both backends: writes, versions, bbox queries, filters, transactions."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from twin.errors import FeatureNotFound, InvalidGeometry, InvalidParameter, LayerNotFound
from twin.store import FeatureQuery, SpatialStore


def building(i: int, x: float = 120.90, y: float = 31.70, **kw) -> dict:
    g = shapely.box(x + i * 0.001, y, x + i * 0.001 + 0.0004, y + 0.0004)
    return {"code": f"B{i:05d}", "use": "residential", "floors": 2 + i % 5, "height_m": 3.0 * (2 + i % 5),
            "address": f"Test Road {i}", "geom": g, **kw}


def test_write_then_query_by_bbox_returns_only_features_inside(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(50)])
    # buildings 0..9 lie in [120.900, 120.9094]
    page = empty_store.query(FeatureQuery("buildings", bbox=(120.8999, 31.6999, 120.9095, 31.7010), limit=100))
    assert page.number_matched == 10
    assert sorted(p["code"] for p in page.properties) == [f"B{i:05d}" for i in range(10)]
    assert all(g.geom_type == "MultiPolygon" for g in page.geometries)


def test_polygons_are_stored_as_multipolygons_and_round_trip(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(1)])
    page = empty_store.query(FeatureQuery("buildings"))
    assert page.geometries[0].equals(shapely.MultiPolygon([building(1)["geom"]]))


def test_wrong_geometry_type_is_refused_and_nothing_written(empty_store: SpatialStore):
    rows = [building(1), {**building(2), "geom": shapely.Point(120.9, 31.7)}]
    with pytest.raises(InvalidGeometry):
        empty_store.write_features("buildings", rows)
    assert empty_store.summary("buildings").count == 0


def test_failed_write_leaves_layer_and_version_unchanged(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(5)])
    before = empty_store.version("buildings")
    with pytest.raises(IntegrityError):
        # duplicate code violates the unique constraint half-way through the batch
        empty_store.write_features("buildings", [building(10), building(11), building(1)])
    assert empty_store.summary("buildings").count == 5
    assert empty_store.version("buildings") == before


def test_every_write_bumps_only_that_layers_version(empty_store: SpatialStore):
    v = empty_store.versions()
    empty_store.write_features("buildings", [building(1)])
    v2 = empty_store.versions()
    assert v2["buildings"] > v["buildings"]
    assert v2["roads"] == v["roads"]
    # a write straight into the database (not through twin) bumps it too
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE buildings SET floors = 9"))
    assert empty_store.version("buildings") > v2["buildings"]


def test_replace_mode_empties_the_layer_first(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(5)])
    empty_store.write_features("buildings", [building(i) for i in range(100, 103)], mode="replace")
    assert empty_store.summary("buildings").count == 3


def test_property_filters_are_typed(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(10)])
    page = empty_store.query(FeatureQuery("buildings", filters={"floors": "4"}))
    assert {p["floors"] for p in page.properties} == {4}
    assert page.number_matched == 2
    with pytest.raises(InvalidParameter):
        empty_store.query(FeatureQuery("buildings", filters={"floors": "four"}))
    with pytest.raises(InvalidParameter):
        empty_store.query(FeatureQuery("buildings", filters={"colour": "red"}))


def test_paging_is_stable_and_counts_all_matches(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(25)])
    seen = []
    for offset in (0, 10, 20):
        page = empty_store.query(FeatureQuery("buildings", limit=10, offset=offset))
        assert page.number_matched == 25
        seen += page.ids
    assert len(seen) == len(set(seen)) == 25


def test_datetime_interval_filters_events(empty_store: SpatialStore):
    base = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    rows = [{"code": f"E{i}", "source": "grid", "category": "garbage", "title": "t", "status": "reported",
             "reported_at": base + dt.timedelta(days=i), "geom": shapely.Point(120.9, 31.7)} for i in range(10)]
    empty_store.write_features("events", rows)
    page = empty_store.query(FeatureQuery("events", datetime=(base + dt.timedelta(days=2),
                                                              base + dt.timedelta(days=4))))
    assert sorted(p["code"] for p in page.properties) == ["E2", "E3", "E4"]
    assert page.properties[0]["reported_at"].tzinfo is not None
    with pytest.raises(InvalidParameter):
        empty_store.query(FeatureQuery("buildings", datetime=(base, None)))


def test_summary_has_count_extent_and_temporal_extent(empty_store: SpatialStore):
    empty_store.write_features("buildings", [building(i) for i in range(3)])
    s = empty_store.summary("buildings")
    assert s.count == 3
    minx, miny, maxx, maxy = s.extent
    assert minx == pytest.approx(120.900, abs=1e-4) and maxx == pytest.approx(120.9024, abs=1e-4)
    assert miny == pytest.approx(31.70, abs=1e-4) and maxy == pytest.approx(31.7004, abs=1e-4)


def test_unknown_layer_and_feature_raise_not_found(empty_store: SpatialStore):
    with pytest.raises(LayerNotFound):
        empty_store.query(FeatureQuery("nope"))
    with pytest.raises(FeatureNotFound):
        empty_store.get("buildings", 999_999)
