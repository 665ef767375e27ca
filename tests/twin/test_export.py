"""Exporting layers to GeoJSON / GeoPackage, and loading the export back, on both backends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyogrio
import pytest
import shapely
from pyproj import Transformer

from twin.errors import UnsupportedFormat
from twin.export import export_layer
from twin.loader import load_file
from twin.store import FeatureQuery, SpatialStore

T0 = dt.datetime(2024, 5, 1, 0, 30, tzinfo=dt.UTC)


def _events(n: int) -> list[dict]:
    return [
        {"code": f"E{i}", "source": "12345", "category": "garbage", "title": f"事件{i}", "status": "reported",
         "description": None if i % 2 else "路边垃圾", "reported_at": T0 + dt.timedelta(hours=i),
         "grid_code": "G1", "geom": shapely.Point(120.6 + i * 0.001, 31.3 + i * 0.0005)}
        for i in range(n)
    ]


def _devices() -> list[dict]:
    return [
        {"code": "D1", "name": "扬尘1", "kind": "dust", "metrics": ["pm10", "pm25"], "thresholds": {"pm10": 150.0},
         "status": "online", "installed_on": dt.date(2023, 4, 5), "geom": shapely.Point(120.61, 31.31)},
        {"code": "D2", "name": "水位", "kind": "water_level", "metrics": None, "thresholds": None,
         "status": "offline", "installed_on": None, "geom": shapely.Point(120.62, 31.32)},
    ]


def _features(store: SpatialStore, layer: str) -> dict[str, tuple[dict, object]]:
    page = store.query(FeatureQuery(layer=layer, limit=10_000))
    return {p["code"]: (p, g) for p, g in zip(page.properties, page.geometries, strict=True)}


def _pipes() -> list[dict]:
    return [
        {"code": f"L{i}", "utility": "sewage", "material": "PVC", "diameter_mm": 300.0 + i, "gravity": i % 2 == 0,
         "year_laid": 2000 + i if i else None, "start_depth_m": 1.5,
         "geom": shapely.LineString([(120.6, 31.3 + i * 0.001), (120.601, 31.3 + i * 0.001)])}
        for i in range(4)
    ]


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg"])
@pytest.mark.parametrize("layer, rows", [("events", _events(5)), ("devices", _devices()), ("pipelines", _pipes())])
def test_export_then_load_into_an_empty_store_gives_the_same_features(
    empty_store: SpatialStore, tmp_path: Path, suffix: str, layer: str, rows: list[dict]
):
    empty_store.write_features(layer, rows)
    before = _features(empty_store, layer)
    out = tmp_path / f"{layer}{suffix}"
    assert export_layer(empty_store, layer, out) == len(rows)
    empty_store.clear([layer])
    report = load_file(empty_store, out, layer)
    assert report.written == len(rows) and report.source_crs in ("EPSG:4326", "OGC:CRS84")
    assert "id" in report.skipped_fields
    after = _features(empty_store, layer)
    assert after.keys() == before.keys()
    for code, (props, geom) in before.items():
        assert after[code][0] == props
        assert after[code][1].equals_exact(geom, tolerance=1e-9)


def test_export_fields_are_typed(empty_store: SpatialStore, tmp_path: Path):
    empty_store.write_features("pipelines", _pipes())
    out = tmp_path / "p.gpkg"
    export_layer(empty_store, "pipelines", out)
    info = pyogrio.read_info(out)
    types = dict(zip(info["fields"], info["dtypes"], strict=True))
    assert types["diameter_mm"] == "float64" and types["year_laid"] == "int64" and types["gravity"] == "bool"
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] == "LineString"


def test_export_bbox_limits_features(empty_store: SpatialStore, tmp_path: Path):
    empty_store.write_features("events", _events(10))
    out = tmp_path / "some.geojson"
    assert export_layer(empty_store, "events", out, bbox=(120.5995, 31.29, 120.6025, 31.31)) == 3
    codes = {f["properties"]["code"] for f in json.loads(out.read_text())["features"]}
    assert codes == {"E0", "E1", "E2"}


def test_export_in_gauss_kruger_and_load_back(empty_store: SpatialStore, tmp_path: Path):
    empty_store.write_features("events", _events(3))
    before = _features(empty_store, "events")
    out = tmp_path / "gk.gpkg"
    export_layer(empty_store, "events", out, crs="EPSG:4528")
    assert pyogrio.read_info(out)["crs"] == "EPSG:4528"
    first = shapely.from_wkb(pyogrio.raw.read(out)[2][0])
    ref = Transformer.from_crs("EPSG:4326", "EPSG:4528", always_xy=True).transform(120.6, 31.3)
    assert (first.x, first.y) == pytest.approx(ref, abs=0.01)
    empty_store.clear(["events"])
    load_file(empty_store, out, "events")
    for code, (props, geom) in _features(empty_store, "events").items():
        assert props == before[code][0]
        assert geom.distance(before[code][1]) < 1e-7


def test_export_of_an_empty_layer_writes_an_empty_file(empty_store: SpatialStore, tmp_path: Path):
    out = tmp_path / "none.geojson"
    assert export_layer(empty_store, "roads", out) == 0
    assert json.loads(out.read_text())["features"] == []


def test_export_to_unknown_suffix_is_refused(empty_store: SpatialStore, tmp_path: Path):
    with pytest.raises(UnsupportedFormat, match=".gpkg"):
        export_layer(empty_store, "roads", tmp_path / "r.kml")
