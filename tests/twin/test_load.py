"""Loading files into layers, on both backends: formats, CRS, mapping, geometry policy, transactions."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from pyproj import Geod, Transformer

from twin.errors import InvalidParameter, LoadFailed, UnsupportedFormat
from twin.loader import load_file
from twin.store import FeatureQuery, SpatialStore

GEOD = Geod(ellps="WGS84")
SUZHOU = (120.62, 31.30)


# --- helpers: real files made from small data -------------------------------------


def building_boxes(n: int, lon: float = SUZHOU[0], lat: float = SUZHOU[1]) -> np.ndarray:
    x = lon + np.arange(n) * 0.001
    return shapely.box(x, lat, x + 0.0003, lat + 0.0002)


def building_fields(n: int) -> tuple[list[np.ndarray], list[str]]:
    return (
        [np.array([f"B{i:04d}" for i in range(n)], dtype=object),
         np.array(["residential", "commercial"], dtype=object)[np.arange(n) % 2],
         (np.arange(n) % 9 + 1).astype(np.int64),
         (np.arange(n) % 9 + 1) * 3.0,
         np.array([f"人民路{i}号" for i in range(n)], dtype=object)],
        ["code", "use", "floors", "height_m", "address"],
    )


def write_gpkg(path: Path, geoms: np.ndarray, fields: list[np.ndarray], names: list[str], crs: str = "EPSG:4326",
               geometry_type: str = "Polygon", layer: str | None = None, append: bool = False) -> Path:
    pyogrio.raw.write(str(path), shapely.to_wkb(geoms), fields, names, driver="GPKG", crs=crs,
                      geometry_type=geometry_type, layer=layer, append=append)
    return path


def write_shp(path: Path, geoms: np.ndarray, fields: list[np.ndarray], names: list[str], crs: str) -> Path:
    pyogrio.raw.write(str(path), shapely.to_wkb(geoms), fields, names, driver="ESRI Shapefile", crs=crs,
                      geometry_type="Polygon")
    return path


def feature_collection(features: list[dict], crs: str | None = None) -> dict:
    fc: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    return fc


def gj_feature(props: dict, geom) -> dict:
    return {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(geom)}


def write_geojson(path: Path, fc: dict) -> Path:
    path.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    return path


def all_features(store: SpatialStore, layer: str):
    return store.query(FeatureQuery(layer=layer, limit=10_000))


def by_code(page) -> dict[str, tuple[dict, object]]:
    return {p["code"]: (p, g) for p, g in zip(page.properties, page.geometries, strict=True)}


def seed_buildings(store: SpatialStore, tmp_path: Path, n: int = 5) -> None:
    f, names = building_fields(n)
    f[0] = np.array([f"OLD{i}" for i in range(n)], dtype=object)
    load_file(store, write_gpkg(tmp_path / "seed.gpkg", building_boxes(n, lat=31.2), f, names), "buildings")


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    return GEOD.inv(a[0], a[1], b[0], b[1])[2]


# --- formats -----------------------------------------------------------------------


def test_geopackage_loads_all_buildings_with_their_values(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(20)
    path = write_gpkg(tmp_path / "b.gpkg", building_boxes(20), fields, names)
    report = load_file(empty_store, path, "buildings")
    assert (report.read, report.written, report.rejected_count) == (20, 20, 0)
    assert report.format == "GeoPackage" and report.source_crs == "EPSG:4326" and report.crs_origin == "file"
    page = all_features(empty_store, "buildings")
    assert page.number_matched == 20
    props, geom = by_code(page)["B0003"]
    assert props["use"] == "commercial" and props["floors"] == 4 and props["height_m"] == 12.0
    assert props["address"] == "人民路3号"
    assert geom.geom_type == "MultiPolygon"
    assert geom.equals_exact(shapely.MultiPolygon([building_boxes(20)[3]]), tolerance=1e-9)


def test_geojson_loads_events_with_datetimes_and_defaults(empty_store: SpatialStore, tmp_path: Path):
    feats = [
        gj_feature({"code": f"E{i}", "source": "12345", "category": "garbage", "title": f"事件{i}",
                    "status": "reported", "reported_at": "2024-05-01T08:30:00+08:00"}, shapely.Point(120.6 + i / 100, 31.3))
        for i in range(3)
    ]
    report = load_file(empty_store, write_geojson(tmp_path / "e.geojson", feature_collection(feats)), "events")
    assert report.written == 3 and report.crs_origin == "file"
    props, geom = by_code(all_features(empty_store, "events"))["E2"]
    assert props["title"] == "事件2"
    assert props["reported_at"].isoformat() == "2024-05-01T00:30:00+00:00"
    assert (geom.x, geom.y) == pytest.approx((120.62, 31.3))


def test_shapefile_and_zipped_shapefile_load(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(7)
    shp = write_shp(tmp_path / "b.shp", building_boxes(7), fields, names, "EPSG:4490")
    report = load_file(empty_store, shp, "buildings")
    assert report.written == 7 and report.source_crs == "EPSG:4490"
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("b.*"):
            if part.suffix != ".zip":
                zf.write(part, f"export/{part.name}")
    report = load_file(empty_store, archive, "buildings", mode="replace")
    assert report.written == 7 and report.format == "Shapefile"
    assert by_code(all_features(empty_store, "buildings"))["B0006"][0]["address"] == "人民路6号"


def test_csv_with_chinese_lon_lat_headers_loads_devices(empty_store: SpatialStore, tmp_path: Path):
    csv_text = (
        "编号,code,name,kind,经度,纬度,metrics,installed_on\n"
        '1,D1,扬尘监测1,dust,120.61,31.31,"[""pm10"", ""pm25""]",2023-04-05\n'
        "2,D2,水位计,water_level,120.62,31.32,,\n"
    )
    path = tmp_path / "devices.csv"
    path.write_text(csv_text, encoding="utf-8")
    report = load_file(empty_store, path, "devices")
    assert report.written == 2
    assert "编号" in report.skipped_fields and "经度" in report.skipped_fields
    assert report.defaults == {"status": "online"}
    feats = by_code(all_features(empty_store, "devices"))
    props, geom = feats["D1"]
    assert props["metrics"] == ["pm10", "pm25"] and str(props["installed_on"]) == "2023-04-05"
    assert props["status"] == "online"
    assert (geom.x, geom.y) == pytest.approx((120.61, 31.31))
    assert feats["D2"][0]["metrics"] is None


def test_csv_with_named_coordinate_columns_and_gbk_text(empty_store: SpatialStore, tmp_path: Path):
    path = tmp_path / "cams.csv"
    path.write_bytes("code;name;heading_deg;fov_deg;range_m;E;N\nC1;东门;90;60;120;120.6;31.3\n".encode("gbk"))
    with pytest.raises(UnsupportedFormat, match="lon_field"):
        load_file(empty_store, path, "cameras")
    report = load_file(empty_store, path, "cameras", lon_field="E", lat_field="N")
    assert report.written == 1
    assert by_code(all_features(empty_store, "cameras"))["C1"][0]["name"] == "东门"


def test_geopackage_with_several_layers_needs_source_layer(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(3)
    path = write_gpkg(tmp_path / "multi.gpkg", building_boxes(3), fields, names, layer="a")
    write_gpkg(path, building_boxes(2), [f[:2] for f in fields], names, layer="b", append=True)
    with pytest.raises(InvalidParameter, match="source_layer"):
        load_file(empty_store, path, "buildings")
    assert load_file(empty_store, path, "buildings", source_layer="b").written == 2


def test_unknown_file_type_is_unsupported(empty_store: SpatialStore, tmp_path: Path):
    path = tmp_path / "x.kml"
    path.write_text("<kml/>")
    with pytest.raises(UnsupportedFormat, match="unknown file type"):
        load_file(empty_store, path, "buildings")


# --- CRS ---------------------------------------------------------------------------


@pytest.mark.parametrize("epsg, prefix", [(4528, 40_000_000), (4549, 0)])
def test_gauss_kruger_buildings_land_at_the_right_lon_lat(empty_store: SpatialStore, tmp_path: Path,
                                                          epsg: int, prefix: int):
    east = prefix + np.array([500_000.0, 512_345.6, 487_654.3])
    north = np.array([3_465_000.0, 3_470_100.5, 3_480_250.0])
    squares = shapely.box(east, north, east + 20, north + 15)
    fields, names = building_fields(3)
    path = write_gpkg(tmp_path / f"gk{epsg}.gpkg", squares, fields, names, crs=f"EPSG:{epsg}")
    report = load_file(empty_store, path, "buildings")
    assert report.source_crs == f"EPSG:{epsg}"
    ref = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    feats = by_code(all_features(empty_store, "buildings"))
    for i in range(3):
        lon, lat = ref.transform(east[i], north[i])
        corner = shapely.get_coordinates(feats[f"B{i:04d}"][1])
        nearest = min(metres_between((lon, lat), tuple(c)) for c in corner)
        assert nearest < 1.0
        assert 119 < lon < 122 and 31 < lat < 32


def test_crs_argument_overrides_a_file_without_crs(empty_store: SpatialStore, tmp_path: Path):
    path = tmp_path / "gk.csv"
    path.write_text("code,name,kind,x,y\nD9,gauge,water_level,40512345.6,3470100.5\n")
    with pytest.raises(LoadFailed, match="EPSG:4528") as err:
        load_file(empty_store, path, "devices")
    assert err.value.code == "crs_mismatch"
    report = load_file(empty_store, path, "devices", crs="EPSG:4528")
    assert report.crs_origin == "argument"
    lon, lat = Transformer.from_crs("EPSG:4528", "EPSG:4326", always_xy=True).transform(40512345.6, 3470100.5)
    geom = by_code(all_features(empty_store, "devices"))["D9"][1]
    assert metres_between((lon, lat), (geom.x, geom.y)) < 1.0


def test_projected_metres_declared_as_lon_lat_are_refused_with_the_likely_crs(empty_store: SpatialStore,
                                                                             tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    version = empty_store.version("buildings")
    feats = [gj_feature({"code": "X1", "use": "r", "floors": 1, "height_m": 3.0},
                        shapely.box(40_500_000, 3_470_000, 40_500_020, 3_470_020))]
    with pytest.raises(LoadFailed) as err:
        load_file(empty_store, write_geojson(tmp_path / "bad.geojson", feature_collection(feats)), "buildings")
    assert "EPSG:4326" in err.value.message and "zone 40" in err.value.message and "EPSG:4528" in err.value.message
    assert empty_store.summary("buildings").count == 5 and empty_store.version("buildings") == version


def test_zone_prefixed_coordinates_declared_without_prefix_are_refused(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(2)
    squares = shapely.box([40_500_000.0, 40_501_000.0], 3_470_000, [40_500_020.0, 40_501_020.0], 3_470_020)
    path = write_gpkg(tmp_path / "wrong.gpkg", squares, fields, names, crs="EPSG:4549")
    with pytest.raises(LoadFailed, match="EPSG:4528"):
        load_file(empty_store, path, "buildings")


def test_geojson_crs_member_is_used(empty_store: SpatialStore, tmp_path: Path):
    feats = [gj_feature({"code": "P1", "kind": "valve", "utility": "water"}, shapely.Point(500_000, 3_470_000))]
    fc = feature_collection(feats, crs="urn:ogc:def:crs:EPSG::4549")
    report = load_file(empty_store, write_geojson(tmp_path / "n.geojson", fc), "pipe_nodes")
    assert report.source_crs == "EPSG:4549"
    geom = by_code(all_features(empty_store, "pipe_nodes"))["P1"][1]
    assert geom.x == pytest.approx(120.0, abs=1e-6)


# --- mapping and conversion ----------------------------------------------------------


def test_mapping_and_case_insensitive_names(empty_store: SpatialStore, tmp_path: Path):
    geoms = building_boxes(4)
    fields = [np.array([f"JZ{i}" for i in range(4)], dtype=object), np.full(4, "residential", dtype=object),
              np.array(["3", "4", "5", "6"], dtype=object), np.array([9.0, 12, 15, 18]),
              np.array(["x"] * 4, dtype=object)]
    path = write_gpkg(tmp_path / "m.gpkg", geoms, fields, ["JZBM", "USE", "CS", "Height_M", "备注"])
    report = load_file(empty_store, path, "buildings", mapping={"JZBM": "code", "cs": "floors"})
    assert report.field_mapping == {"JZBM": "code", "CS": "floors", "USE": "use", "Height_M": "height_m"}
    assert report.skipped_fields == ["备注"]
    props = by_code(all_features(empty_store, "buildings"))["JZ2"][0]
    assert props["floors"] == 5 and props["height_m"] == 15.0


def test_missing_required_column_is_named(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(2)
    path = write_gpkg(tmp_path / "nf.gpkg", building_boxes(2), fields[:2], names[:2])
    with pytest.raises(LoadFailed, match="floors, height_m"):
        load_file(empty_store, path, "buildings")
    with pytest.raises(InvalidParameter, match="not a column"):
        load_file(empty_store, path, "buildings", mapping={"use": "storeys"})


def test_bad_values_are_reported_by_row_and_nothing_is_written(empty_store: SpatialStore, tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "code,utility,material,diameter_mm,gravity,wkt\n"
        'L1,water,PE,200,yes,"LINESTRING (120.6 31.3, 120.61 31.3)"\n'
        'L2,water,PE,wide,no,"LINESTRING (120.6 31.3, 120.61 31.3)"\n'
        'L3,water,PE,300,maybe,"LINESTRING (120.6 31.3, 120.61 31.3)"\n'
        'L4,,PE,300,1,"LINESTRING (120.6 31.3, 120.61 31.3)"\n'
    )
    with pytest.raises(LoadFailed) as err:
        load_file(empty_store, path, "pipelines")
    detail = err.value.detail
    assert detail["rejected_count"] == 3
    reasons = {r["row"]: r["reason"] for r in detail["rejected"]}
    assert "diameter_mm" in reasons[2] and "'wide'" in reasons[2]
    assert "gravity" in reasons[3] and "utility" in reasons[4]
    assert empty_store.summary("pipelines").count == 0
    report = load_file(empty_store, path, "pipelines", max_rejects=3)
    assert (report.written, report.rejected_count) == (1, 3)
    assert by_code(all_features(empty_store, "pipelines"))["L1"][0]["gravity"] is True


# --- geometry policy -----------------------------------------------------------------

BOWTIE = shapely.Polygon([(120.60, 31.30), (120.61, 31.31), (120.61, 31.30), (120.60, 31.31), (120.60, 31.30)])


def _bowtie_file(tmp_path: Path) -> Path:
    fields, names = building_fields(3)
    geoms = building_boxes(3)
    geoms[1] = BOWTIE
    return write_gpkg(tmp_path / "bowtie.gpkg", geoms, fields, names)


def test_bowtie_polygon_is_repaired_and_reported(empty_store: SpatialStore, tmp_path: Path):
    report = load_file(empty_store, _bowtie_file(tmp_path), "buildings")
    assert report.written == 3 and report.repaired_count == 1
    assert report.repaired[0]["row"] == 2 and "Self-intersection" in report.repaired[0]["reason"]
    geom = by_code(all_features(empty_store, "buildings"))["B0001"][1]
    assert geom.is_valid and len(geom.geoms) == 2 and geom.area == pytest.approx(2 * 0.01 * 0.005 / 2)


def test_bowtie_polygon_is_refused_on_request(empty_store: SpatialStore, tmp_path: Path):
    with pytest.raises(LoadFailed, match="row 2: invalid geometry: Self-intersection") as err:
        load_file(empty_store, _bowtie_file(tmp_path), "buildings", on_invalid="refuse")
    assert err.value.detail["rejected_count"] == 1
    assert empty_store.summary("buildings").count == 0


def test_wrong_geometry_type_is_a_row_error(empty_store: SpatialStore, tmp_path: Path):
    feats = [gj_feature({"code": "B1", "use": "r", "floors": 1, "height_m": 3}, shapely.Point(120.6, 31.3))]
    with pytest.raises(LoadFailed, match="Point cannot be stored in a MultiPolygon"):
        load_file(empty_store, write_geojson(tmp_path / "pt.geojson", feature_collection(feats)), "buildings")


# --- all or nothing --------------------------------------------------------------------


def test_failing_row_mid_file_leaves_layer_unchanged(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    before = (empty_store.summary("buildings").count, empty_store.version("buildings"))
    fields, names = building_fields(100)
    fields[2] = fields[2].astype(object)
    fields[2][49] = "five"
    path = write_gpkg(tmp_path / "mid.gpkg", building_boxes(100), fields, names)
    with pytest.raises(LoadFailed, match="1 of 100 rows rejected") as err:
        load_file(empty_store, path, "buildings", mode="replace")
    assert err.value.detail["rejected"] == [{"row": 50, "reason": "floors: 'five' is not an integer"}]
    assert (empty_store.summary("buildings").count, empty_store.version("buildings")) == before
    assert all(code.startswith("OLD") for code in by_code(all_features(empty_store, "buildings")))


def test_duplicate_codes_are_rejected_before_writing(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    fields, names = building_fields(3)
    fields[0] = np.array(["N1", "OLD2", "N1"], dtype=object)
    path = write_gpkg(tmp_path / "dup.gpkg", building_boxes(3), fields, names)
    with pytest.raises(LoadFailed) as err:
        load_file(empty_store, path, "buildings")
    reasons = {r["row"]: r["reason"] for r in err.value.detail["rejected"]}
    assert "already exists" in reasons[2] and "duplicate code 'N1' (also row 1)" in reasons[3]


def test_database_error_mid_load_rolls_back_a_replace(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    before = (empty_store.summary("buildings").count, empty_store.version("buildings"))
    fields, names = building_fields(4)
    fields.append(np.array([1001, 1002, 1002, 1003]))  # explicit ids, one repeated: the database refuses
    path = write_gpkg(tmp_path / "ids.gpkg", building_boxes(4), fields, names + ["fid_src"])
    with pytest.raises(LoadFailed, match="database refused"):
        load_file(empty_store, path, "buildings", mode="replace", mapping={"fid_src": "id"})
    assert (empty_store.summary("buildings").count, empty_store.version("buildings")) == before


def test_truncated_geopackage_is_refused_and_nothing_written(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    before = (empty_store.summary("buildings").count, empty_store.version("buildings"))
    fields, names = building_fields(2000)
    path = write_gpkg(tmp_path / "full.gpkg", building_boxes(2000), fields, names)
    data = path.read_bytes()
    cut = tmp_path / "cut.gpkg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises((UnsupportedFormat, LoadFailed), match="truncated, corrupt"):
        load_file(empty_store, cut, "buildings", mode="replace")
    assert (empty_store.summary("buildings").count, empty_store.version("buildings")) == before


def test_truncated_geojson_is_refused_and_nothing_written(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    before = (empty_store.summary("buildings").count, empty_store.version("buildings"))
    feats = [gj_feature({"code": f"T{i}", "use": "r", "floors": 1, "height_m": 3.0}, g)
             for i, g in enumerate(building_boxes(50))]
    text = json.dumps(feature_collection(feats))
    cut = tmp_path / "cut.geojson"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(UnsupportedFormat, match="truncated, corrupt"):
        load_file(empty_store, cut, "buildings")
    assert (empty_store.summary("buildings").count, empty_store.version("buildings")) == before


def test_replace_with_an_empty_file_is_refused(empty_store: SpatialStore, tmp_path: Path):
    seed_buildings(empty_store, tmp_path)
    path = write_geojson(tmp_path / "empty.geojson", feature_collection([]))
    with pytest.raises(LoadFailed, match="no features"):
        load_file(empty_store, path, "buildings", mode="replace")
    assert empty_store.summary("buildings").count == 5


def test_shapefile_without_code_page_reads_gbk_text(empty_store: SpatialStore, tmp_path: Path):
    fields, names = building_fields(2)
    shp = tmp_path / "gbk.shp"
    pyogrio.raw.write(str(shp), shapely.to_wkb(building_boxes(2)), fields, names, driver="ESRI Shapefile",
                      crs="EPSG:4490", geometry_type="Polygon", encoding="GBK")
    (tmp_path / "gbk.cpg").unlink(missing_ok=True)
    dbf = bytearray((tmp_path / "gbk.dbf").read_bytes())
    dbf[29] = 0  # no code page mark either, as many Chinese shapefiles are delivered
    (tmp_path / "gbk.dbf").write_bytes(bytes(dbf))
    load_file(empty_store, shp, "buildings")
    assert by_code(all_features(empty_store, "buildings"))["B0001"][0]["address"] == "人民路1号"
