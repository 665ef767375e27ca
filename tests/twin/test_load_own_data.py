"""A town's own data in (issue 12): defaults, codes, derivations, presets, OSM PBF, GBK survey shapefile, DXF, DEM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st
from pyproj import Transformer

from twin.errors import InvalidParameter, LoadFailed
from twin.load_rules import chinese_number, parse_diameter, parse_length, parse_levels
from twin.loader import load_file, load_preset
from twin.store import FeatureQuery, SpatialStore

LON, LAT = 120.62, 31.30  # Suzhou: CGCS2000 Gauss–Krüger zone 40 (EPSG:4528)


def rows(store: SpatialStore, layer: str) -> dict[str, dict]:
    page = store.query(FeatureQuery(layer=layer, limit=10_000))
    return {p["code"]: {**p, "_geom": g} for p, g in zip(page.properties, page.geometries, strict=True)}


# --- parsers (property-based) ---------------------------------------------------------

_CN = "零一二三四五六七八九"


def _to_chinese(n: int) -> str:
    if n < 10:
        return _CN[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _CN[tens]) + "十" + (_CN[ones] if ones else "")


@given(st.decimals(min_value=0, max_value=1000, places=2), st.sampled_from(["", " ", "  "]),
       st.sampled_from(["", "m", "M", "米", "metres"]))
def test_parse_length_reads_metres_with_or_without_a_unit(x, space, unit):
    assert parse_length(f"{x}{space}{unit}") == pytest.approx(float(x))


@given(st.integers(min_value=1, max_value=300))
def test_parse_length_feet_and_centimetres(n):
    assert parse_length(f"{n} ft") == pytest.approx(n * 0.3048)
    assert parse_length(f"{n}cm") == pytest.approx(n / 100)


@given(st.text(alphabet="abcxyz!?#", min_size=1, max_size=8))
def test_parse_length_refuses_words(s):
    assert parse_length(s) is None


@given(st.integers(min_value=1, max_value=99))
def test_parse_levels_digits_chinese_and_suffixes(n):
    assert parse_levels(str(n)) == n
    assert parse_levels(f"{n}.0") == n
    assert parse_levels(f"{n}层") == n
    assert parse_levels(f"{n}F") == n
    assert parse_levels(_to_chinese(n)) == n
    assert parse_levels(_to_chinese(n) + "层") == n
    assert chinese_number(_to_chinese(n)) == n


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=50))
def test_parse_levels_takes_the_larger_of_osm_alternatives(a, b):
    assert parse_levels(f"{a};{b}") == max(a, b)


@given(st.one_of(st.integers(max_value=0), st.text(alphabet="abc-", min_size=1, max_size=5)))
def test_parse_levels_refuses_nonsense(v):
    assert parse_levels(v if isinstance(v, int) else v) is None


@given(st.integers(min_value=15, max_value=3000), st.sampled_from(["DN", "Φ", "De", ""]), st.sampled_from(["", "mm"]))
def test_parse_diameter(n, prefix, unit):
    assert parse_diameter(f"{prefix}{n}{unit}") == n
    assert parse_diameter(f"{n}X{n // 2 + 1}") == n


@given(st.one_of(st.text(max_size=30), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()))
def test_parsers_never_raise_and_return_finite_positive_numbers_or_none(v):
    for parse in (parse_length, parse_levels, parse_diameter):
        out = parse(v)
        assert out is None or (isinstance(out, (int, float)) and out == out and abs(out) != float("inf"))
    lv = parse_levels(v)
    assert lv is None or (isinstance(lv, int) and 0 < lv < 1000)


@given(st.lists(st.one_of(st.none(), st.text(max_size=8), st.integers(-10**6, 10**6)), min_size=1, max_size=20),
       st.sampled_from(["C-{n}", "{f}", "X{f}-{n:04d}", "{f:>5}", "{id}"]))
def test_code_patterns_fill_every_row_or_say_why(values, pattern):
    from twin.load_rules import FillCounts, make_codes

    fields = {"f": np.array(values, dtype=object)}
    codes: list = [None] * len(values)
    errors = make_codes(pattern, None, fields, len(values), 0, codes, FillCounts())
    for i, c in enumerate(codes):
        assert (c is None) == (i in errors)
        assert c is None or isinstance(c, str)


# --- defaults, codes, derivations -------------------------------------------------------


def _box(i: int) -> shapely.Polygon:
    x, y = LON + i * 0.0005, LAT
    return shapely.box(x, y, x + 0.0002, y + 0.0002)


def write_geojson(path: Path, features: list[dict]) -> Path:
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": shapely.geometry.mapping(_box(i))}
        for i, props in enumerate(features)]}
    path.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    return path


def test_defaults_codes_and_height_floor_derivation(empty_store: SpatialStore, tmp_path: Path):
    path = write_geojson(tmp_path / "city.geojson", [
        {"name": "一号楼", "height": "12 m"},
        {"name": "二号楼", "building:levels": "三层"},
        {"name": "三号楼", "height": "20", "building:levels": "6"},
        {"name": "四号楼"},
    ])
    with pytest.raises(LoadFailed, match="use, floors, height_m") as err:
        load_file(empty_store, path, "buildings")
    assert "--set" in err.value.message
    report = load_file(empty_store, path, "buildings",
                       mapping={"height": "height_m", "building:levels": "floors"},
                       defaults={"use": "unknown", "floors": "2"}, code_pattern="B-{n:06d}")
    assert report.written == 4
    got = rows(empty_store, "buildings")
    assert sorted(got) == ["B-000001", "B-000002", "B-000003", "B-000004"]
    assert (got["B-000001"]["height_m"], got["B-000001"]["floors"]) == (12.0, 4)  # 12 m / 3 m
    assert (got["B-000002"]["height_m"], got["B-000002"]["floors"]) == (9.0, 3)  # 三层 × 3 m
    assert (got["B-000003"]["height_m"], got["B-000003"]["floors"]) == (20.0, 6)  # both given: kept
    assert (got["B-000004"]["height_m"], got["B-000004"]["floors"]) == (6.0, 2)  # defaulted floors × 3 m
    assert {g["use"] for g in got.values()} == {"unknown"}
    assert report.derived == {"floors": 1, "height_m": 2, "code": 4}
    assert report.defaulted == {"use": 4, "floors": 1}
    assert report.converted == {"height_m": 1, "floors": 1}


def test_storey_height_is_a_setting(empty_store: SpatialStore, tmp_path: Path, monkeypatch):
    from twin.settings import get_settings

    monkeypatch.setenv("TWIN_STOREY_HEIGHT_M", "3.5")
    get_settings.cache_clear()
    try:
        path = write_geojson(tmp_path / "b.geojson", [{"id": 7, "levels": 4}])
        load_file(empty_store, path, "buildings", mapping={"levels": "floors"}, defaults={"use": "residential"},
                  code_pattern="B-{id}")
    finally:
        get_settings.cache_clear()
    assert rows(empty_store, "buildings")["B-7"]["height_m"] == 14.0


def test_bad_defaults_and_patterns_are_4xx_and_write_nothing(empty_store: SpatialStore, tmp_path: Path):
    path = write_geojson(tmp_path / "b.geojson", [{"h": 10}])
    base = {"mapping": {"h": "height_m"}}
    with pytest.raises(InvalidParameter, match="not a column"):
        load_file(empty_store, path, "buildings", defaults={"colour": "red"}, code_pattern="B{n}", **base)
    with pytest.raises(InvalidParameter, match="does not fit"):
        load_file(empty_store, path, "buildings", defaults={"use": "x", "floors": "many"}, code_pattern="B{n}", **base)
    with pytest.raises(InvalidParameter, match="names field 'nope'"):
        load_file(empty_store, path, "buildings", defaults={"use": "x"}, code_pattern="B-{nope}", **base)
    with pytest.raises(InvalidParameter, match="only plain field names"):
        load_file(empty_store, path, "buildings", defaults={"use": "x"}, code_pattern="{h.__class__}", **base)
    with pytest.raises(InvalidParameter, match="not both"):
        load_file(empty_store, path, "buildings", defaults={"use": "x"}, code_pattern="B{n}", code_from="h", **base)
    assert empty_store.summary("buildings").count == 0


# --- OpenStreetMap PBF --------------------------------------------------------------------

OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="twin-test">
 {nodes}
 <way id="10" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>
  <tag k="building" v="apartments"/><tag k="building:levels" v="5"/><tag k="name" v="幸福小区1栋"/></way>
 <way id="11" version="1"><nd ref="5"/><nd ref="6"/><nd ref="7"/><nd ref="8"/><nd ref="5"/>
  <tag k="building" v="yes"/><tag k="height" v="12.5 m"/></way>
 <way id="12" version="1"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="12"/><nd ref="9"/>
  <tag k="building" v="school"/></way>
 <way id="20" version="1"><nd ref="13"/><nd ref="14"/><tag k="highway" v="primary"/><tag k="name" v="人民路"/>
  <tag k="lanes" v="4"/></way>
 <way id="21" version="1"><nd ref="14"/><nd ref="15"/><tag k="highway" v="residential"/></way>
 <way id="30" version="1"><nd ref="16"/><nd ref="17"/><nd ref="18"/><nd ref="19"/><nd ref="16"/>
  <tag k="landuse" v="farmland"/><tag k="crop" v="rice"/></way>
 <way id="31" version="1"><nd ref="20"/><nd ref="21"/><nd ref="22"/><nd ref="23"/><nd ref="20"/>
  <tag k="landuse" v="forest"/></way>
</osm>
"""


def make_pbf(tmp_path: Path) -> Path:
    nodes = []
    nid = 0
    for k in range(3):  # three buildings
        for dx, dy in ((0, 0), (2, 0), (2, 2), (0, 2)):
            nid += 1
            nodes.append((nid, LAT + dy * 1e-4, LON + k * 5e-4 + dx * 1e-4))
    for k in range(3):  # road nodes
        nid += 1
        nodes.append((nid, LAT + 1e-3, LON + k * 1e-3))
    for base in (2e-3, 4e-3):  # farmland, forest
        for dx, dy in ((0, 0), (5, 0), (5, 5), (0, 5)):
            nid += 1
            nodes.append((nid, LAT + base + dy * 1e-4, LON + dx * 1e-4))
    xml = OSM_XML.format(nodes="\n ".join(f'<node id="{i}" version="1" lat="{la:.7f}" lon="{lo:.7f}"/>'
                                           for i, la, lo in nodes))
    src = tmp_path / "extract.osm"
    src.write_text(xml, encoding="utf-8")
    out = tmp_path / "extract.osm.pbf"
    subprocess.run(["osmium", "cat", str(src), "-o", str(out), "--overwrite"], check=True, capture_output=True)
    return out


def test_osm_pbf_buildings_roads_and_farmland_in_one_run(empty_store: SpatialStore, tmp_path: Path):
    pbf = make_pbf(tmp_path)
    reports = {r.layer: r for r in load_preset(empty_store, pbf, "osm")}
    assert {k: r.written for k, r in reports.items()} == {"buildings": 3, "roads": 2, "farmland": 1}
    b = rows(empty_store, "buildings")
    assert set(b) == {"osm-w10", "osm-w11", "osm-w12"}
    assert (b["osm-w10"]["floors"], b["osm-w10"]["height_m"], b["osm-w10"]["use"]) == (5, 15.0, "residential")
    assert (b["osm-w11"]["floors"], b["osm-w11"]["height_m"], b["osm-w11"]["use"]) == (4, 12.5, "unknown")
    assert (b["osm-w12"]["floors"], b["osm-w12"]["height_m"], b["osm-w12"]["use"]) == (1, 3.0, "public")
    assert b["osm-w10"]["name"] == "幸福小区1栋"
    assert reports["buildings"].derived == {"floors": 1, "height_m": 2, "code": 3}
    assert reports["buildings"].defaulted == {"floors": 1}
    r = rows(empty_store, "roads")
    assert (r["osm-w20"]["road_class"], r["osm-w20"]["lanes"], r["osm-w20"]["name"]) == ("arterial", 4, "人民路")
    assert r["osm-w21"]["road_class"] == "local"
    f = rows(empty_store, "farmland")
    assert f["osm-w30"]["crop"] == "rice" and 2_000 < f["osm-w30"]["area_m2"] < 3_000  # ~48 m × 55 m
    assert reports["farmland"].derived["area_m2"] == 1


def test_osm_replace_leaves_a_layer_the_extract_has_nothing_for(empty_store: SpatialStore, tmp_path: Path):
    pbf = make_pbf(tmp_path)
    load_preset(empty_store, pbf, "osm")
    xml = (tmp_path / "extract.osm").read_text().replace('v="farmland"', 'v="meadow"')
    (tmp_path / "extract.osm").write_text(xml)
    subprocess.run(["osmium", "cat", str(tmp_path / "extract.osm"), "-o", str(pbf), "--overwrite"], check=True)
    reports = {r.layer: r for r in load_preset(empty_store, pbf, "osm", mode="replace")}
    assert (reports["farmland"].read, reports["farmland"].deleted) == (0, 0)
    assert (reports["buildings"].deleted, reports["buildings"].written) == (3, 3)
    assert empty_store.summary("farmland").count == 1


def test_a_failing_osm_target_writes_no_layer(empty_store: SpatialStore, tmp_path: Path):
    pbf = make_pbf(tmp_path)
    load_preset(empty_store, pbf, "osm", layers=["roads"])
    with pytest.raises(LoadFailed, match="already exists"):
        load_preset(empty_store, pbf, "osm")  # buildings load fine, then roads collide: all rolled back
    assert empty_store.summary("buildings").count == 0
    assert empty_store.summary("roads").count == 2


# --- survey shapefile with GBK text through cjj61 -------------------------------------------


def write_gbk_survey(tmp_path: Path) -> Path:
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4528", always_xy=True)  # CGCS2000 GK zone 40 (prefixed)
    lons = LON + np.array([0.0, 0.001, 0.002])
    x, y = to_gk.transform(lons, np.full(3, LAT))
    lines = [shapely.LineString([(x[i], y[i]), (x[i + 1], y[i + 1])]) for i in range(2)]
    fields = [np.array(v, dtype=object) for v in (
        ["PE", "钢"], ["DN110", "Φ200"], ["1.2", "1.5"], ["1.3", "1.6"], ["苏州港华燃气", "苏州港华燃气"],
        ["RQ", "RQ"], ["RQ1", "RQ2"], ["RQ2", "RQ3"])]
    fields.append(np.array([2008, 2015], dtype=np.int32))
    names = ["CZ", "GJ", "QDMS", "ZDMS", "QSDW", "GXLB", "QDDH", "ZDDH", "MSNY"]
    path = tmp_path / "RQ_LINE.shp"
    pyogrio.raw.write(str(path), shapely.to_wkb(np.array(lines, dtype=object)), field_data=fields, fields=names,
                      geometry_type="LineString", crs="EPSG:4528", driver="ESRI Shapefile", encoding="GBK")
    (tmp_path / "RQ_LINE.cpg").unlink(missing_ok=True)  # survey deliverables often have none
    return path


def test_gbk_survey_shapefile_through_cjj61(empty_store: SpatialStore, tmp_path: Path):
    path = write_gbk_survey(tmp_path)
    report = load_file(empty_store, path, "pipelines", preset="cjj61", encoding="GBK",
                       code_pattern="{QDDH}-{ZDDH}")
    assert report.written == 2 and report.source_crs == "EPSG:4528"
    got = rows(empty_store, "pipelines")
    p = got["RQ1-RQ2"]
    assert (p["material"], p["diameter_mm"], p["owner"], p["utility"], p["year_laid"]) == (
        "PE", 110.0, "苏州港华燃气", "gas", 2008)
    assert (p["start_depth_m"], p["end_depth_m"], p["start_node_code"]) == (1.2, 1.3, "RQ1")
    assert got["RQ2-RQ3"]["diameter_mm"] == 200.0 and got["RQ2-RQ3"]["material"] == "钢"
    assert 90 < p["length_m"] < 100  # 0.001° of longitude at 31.3° N ≈ 95.2 m
    assert report.derived == {"length_m": 2, "code": 2}
    assert report.converted == {"diameter_mm": 2}


# --- DXF with a layer filter and a CRS ---------------------------------------------------------


def write_dxf(tmp_path: Path) -> Path:
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4528", always_xy=True)
    x0, y0 = to_gk.transform(LON, LAT)
    x1, y1 = to_gk.transform(LON + 0.001, LAT)

    def line(layer: str, a: tuple[float, float], b: tuple[float, float]) -> str:
        return (f"0\nLINE\n8\n{layer}\n10\n{a[0]:.3f}\n20\n{a[1]:.3f}\n30\n0.0\n"
                f"11\n{b[0]:.3f}\n21\n{b[1]:.3f}\n31\n0.0\n")

    body = line("GAS", (x0, y0), (x1, y1)) + line("GAS", (x1, y1), (x1, y1 + 50)) + line("TEXT_FRAME", (x0, y0), (x1, y0 + 5))
    path = tmp_path / "survey.dxf"
    path.write_text(f"0\nSECTION\n2\nENTITIES\n{body}0\nENDSEC\n0\nEOF\n", encoding="ascii")
    return path


def test_dxf_layer_filter_and_crs(empty_store: SpatialStore, tmp_path: Path):
    path = write_dxf(tmp_path)
    report = load_file(empty_store, path, "pipelines", crs="EPSG:4528", where="Layer = 'GAS'",
                       defaults={"utility": "gas", "material": "PE", "diameter_mm": "DN160"},
                       code_pattern="GAS-{n}")
    assert report.written == 2 and report.read == 2 and report.crs_origin == "argument"
    got = rows(empty_store, "pipelines")
    assert sorted(got) == ["GAS-1", "GAS-2"]
    assert got["GAS-1"]["diameter_mm"] == 160.0
    assert got["GAS-2"]["length_m"] == pytest.approx(50, abs=0.5)
    lon, lat = got["GAS-1"]["_geom"].coords[0]
    assert lon == pytest.approx(LON, abs=1e-6) and lat == pytest.approx(LAT, abs=1e-6)
    with pytest.raises(InvalidParameter, match="filter"):
        load_file(empty_store, path, "pipelines", crs="EPSG:4528", where="Layer = = 'GAS'",
                  defaults={"utility": "gas", "material": "PE", "diameter_mm": "160"}, code_pattern="X-{n}")


# --- streaming -------------------------------------------------------------------------------


def test_streamed_batches_and_a_late_bad_row_writes_nothing(empty_store: SpatialStore, tmp_path: Path, monkeypatch):
    from twin.settings import get_settings

    n = 450
    geoms = shapely.to_wkb(np.array([shapely.multipolygons([_box(i)]) for i in range(n)], dtype=object))
    heights = np.array([f"{10 + i % 7} m" for i in range(n)], dtype=object)
    path = tmp_path / "many.gpkg"
    pyogrio.raw.write(str(path), geoms, field_data=[heights], fields=["height"], geometry_type="MultiPolygon",
                      crs="EPSG:4326", driver="GPKG")
    monkeypatch.setenv("TWIN_LOAD_BATCH_ROWS", "100")
    get_settings.cache_clear()
    seen: list[tuple[int, int | None]] = []
    try:
        report = load_file(empty_store, path, "buildings", mapping={"height": "height_m"},
                           defaults={"use": "unknown"}, code_pattern="S-{n}", progress=lambda d, t: seen.append((d, t)))
        assert report.written == n and seen == [(100, n), (200, n), (300, n), (400, n), (450, n)]
        assert report.derived["floors"] == n and report.converted["height_m"] == n
        heights[420] = "tall"
        bad = tmp_path / "bad.gpkg"
        pyogrio.raw.write(str(bad), geoms, field_data=[heights], fields=["height"], geometry_type="MultiPolygon",
                          crs="EPSG:4326", driver="GPKG")
        with pytest.raises(LoadFailed, match="row 421"):
            load_file(empty_store, bad, "buildings", mapping={"height": "height_m"}, mode="replace",
                      defaults={"use": "unknown"}, code_pattern="T-{n}")
    finally:
        get_settings.cache_clear()
    assert set(rows(empty_store, "buildings")) == {f"S-{i}" for i in range(1, n + 1)}


# --- rasters ---------------------------------------------------------------------------------


def write_gk_dem(path: Path, nodata: float | None = -9999.0, crs: str | None = "EPSG:4528") -> Path:
    import rasterio
    from rasterio.transform import from_origin

    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:4528", always_xy=True).transform(LON, LAT)
    data = (20 + np.add.outer(np.arange(64), np.arange(64)) * 0.1).astype("float32")
    data[0, 0] = -9999.0
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
                       crs=crs, transform=from_origin(x0, y0, 10, 10), nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def test_dem_in_gauss_kruger_becomes_a_web_mercator_cog(tmp_path: Path):
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    from twin.raster_load import load_raster

    dem = write_gk_dem(tmp_path / "dem_gk.tif")
    report = load_raster(dem, "dem", tmp_path / "rasters")
    assert report.source_crs == "EPSG:4528" and report.nodata == -9999.0
    out = tmp_path / "rasters" / "dem.tif"
    valid, errors, _warnings = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as r:
        assert r.crs.to_epsg() == 3857 and r.nodata == -9999.0
        band = r.read(1, masked=True)
        assert 19.9 < float(band.min()) and float(band.max()) < 32.7
    w, s, e, n = report.bounds_wgs84
    assert w == pytest.approx(LON, abs=1e-3) and n == pytest.approx(LAT, abs=1e-3)


def test_raster_without_crs_or_in_the_wrong_crs_is_refused(tmp_path: Path):
    from twin.raster_load import load_raster

    dem = write_gk_dem(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(InvalidParameter, match="no CRS"):
        load_raster(dem, "dem", tmp_path / "rasters")
    with pytest.raises(InvalidParameter, match="not a place on Earth"):
        load_raster(write_gk_dem(tmp_path / "gk.tif"), "dem", tmp_path / "rasters", crs="EPSG:4326")
    with pytest.raises(InvalidParameter, match="3 \\(RGB\\)"):
        load_raster(write_gk_dem(tmp_path / "gk2.tif"), "ortho", tmp_path / "rasters")
    assert not (tmp_path / "rasters" / "dem.tif").exists()
    report = load_raster(dem, "dem", tmp_path / "rasters", crs="EPSG:4528")
    assert report.crs_origin == "argument"


def test_rgb_ortho_in_gauss_kruger_without_prefix(tmp_path: Path):
    import rasterio
    from rasterio.transform import from_origin
    from rio_cogeo.cogeo import cog_validate

    from twin.raster_load import load_raster

    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True).transform(LON, LAT)
    src = tmp_path / "ortho_gk.tif"
    rgb = np.stack([np.full((48, 48), v, dtype="uint8") for v in (200, 120, 40)])
    with rasterio.open(src, "w", driver="GTiff", width=48, height=48, count=3, dtype="uint8", crs="EPSG:4549",
                       transform=from_origin(x0, y0, 0.5, 0.5)) as dst:
        dst.write(rgb)
    report = load_raster(src, "ortho", tmp_path / "rasters")
    assert report.bands == 3 and report.source_crs == "EPSG:4549"
    out = tmp_path / "rasters" / "ortho.tif"
    assert cog_validate(str(out))[0]
    with rasterio.open(out) as r:
        assert r.crs.to_epsg() == 3857
        mid = r.read(window=((r.height // 2, r.height // 2 + 1), (r.width // 2, r.width // 2 + 1)))
        assert mid[:, 0, 0].tolist() == [200, 120, 40]
    with pytest.raises(InvalidParameter, match="--mode replace"):
        load_raster(src, "ortho", tmp_path / "rasters", replace=False)


def test_gbk_survey_without_cpg_or_encoding_is_still_read_right(empty_store: SpatialStore, tmp_path: Path):
    path = write_gbk_survey(tmp_path)
    report = load_file(empty_store, path, "pipelines", preset="cjj61", code_pattern="{QDDH}-{ZDDH}")
    assert report.written == 2
    assert rows(empty_store, "pipelines")["RQ2-RQ3"]["owner"] == "苏州港华燃气"
    with pytest.raises(InvalidParameter, match="unknown text encoding"):
        load_file(empty_store, path, "pipelines", preset="cjj61", encoding="KLINGON", code_pattern="{n}")
