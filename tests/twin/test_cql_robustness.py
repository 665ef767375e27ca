"""Properties of the CQL2 pieces that take user input: parsers, compiler, ranges, CASEI, S_DWITHIN."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from sqlalchemy import BigInteger, Integer, SmallInteger, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from tests.gis_api.cql_strategies import json_filters, text_filters
from twin import cql
from twin.casei import casei
from twin.catalog import get_layer
from twin.cql.dwithin import MAX_DISTANCE_M, WORLD, OutsideTheEarth, grown
from twin.dialect import PostgisDialect, SpatialiteDialect
from twin.errors import InvalidParameter
from twin.int_range import INT16, INT32, INT64, integer_range, outside_sentinel
from twin.store import queryables

PARSE = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _compile_everywhere(text: str, lang: str) -> None:
    """Parse and compile for both dialects: only InvalidParameter may come out."""
    try:
        flt = cql.parse(text[:21_000], lang)
        for layer in ("buildings", "events"):
            spec = get_layer(layer)
            for d, sa in ((PostgisDialect(), postgresql.dialect()), (SpatialiteDialect(), sqlite.dialect())):
                try:
                    str(cql.to_sql(flt, spec.table, queryables(spec), d, layer).compile(dialect=sa))
                except InvalidParameter:
                    pass
    except InvalidParameter:
        pass


@PARSE
@given(text=text_filters)
def test_cql2_text_parser_and_compiler_raise_only_invalid_parameter(text):
    _compile_everywhere(text, "cql2-text")


@PARSE
@given(text=json_filters)
def test_cql2_json_parser_and_compiler_raise_only_invalid_parameter(text):
    _compile_everywhere(text, "cql2-json")


def test_and_or_chains_are_one_flat_node_in_both_languages():
    t = cql.parse(" OR ".join(["floors = 1"] * 300)).tree
    assert t.op == "or" and len(t.args) == 300
    doc = '{"op": "and", "args": [' + ", ".join(['{"op": "=", "args": [{"property": "floors"}, 1]}'] * 300) + "]}"
    t = cql.parse(doc, "cql2-json").tree
    assert t.op == "and" and len(t.args) == 300


# --- integer ranges --------------------------------------------------------------


def test_integer_ranges_per_backend():
    assert integer_range(Integer(), "postgresql") == integer_range(Integer(), "postgis") == INT32
    assert integer_range(BigInteger(), "postgis") == INT64
    assert integer_range(SmallInteger(), "postgresql") == INT16
    assert integer_range(Integer(), "sqlite") == integer_range(SmallInteger(), "spatialite") == INT64


@settings(max_examples=300, derandomize=True, database=None)
@given(bounds=st.sampled_from([INT16, INT32, INT64]), v=st.integers(), x=st.integers())
def test_outside_sentinel_compares_like_the_value(bounds, v, x):
    lo, hi = bounds
    x = min(max(x, lo), hi)  # any value the column can hold
    s = outside_sentinel(v, bounds)
    if lo <= v <= hi:
        assert s == float(v)
    else:
        assert (x < v, x == v, x > v) == (x < s, x == s, x > s)


# --- CASEI ------------------------------------------------------------------------


def test_casei_folds_full_unicode_lower_case_then_nfc():
    assert casei("École Ａ座") == "école ａ座"
    assert casei("E\u0301COLE") == "école"
    assert casei("ΟΔΟΣ") == "οδος"
    assert casei(None) is None


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(s=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20))
def test_casei_is_the_same_in_python_and_in_each_database(store, s):
    assert casei(casei(s)) == casei(s)
    with store.engine.connect() as conn:
        assert conn.execute(select(store.dialect.casei(literal(s)))).scalar_one() == casei(s)


# --- S_DWITHIN's grown literal ------------------------------------------------------

GEOD = Geod(ellps="WGS84")
_RNG = np.random.default_rng(7)
_LON = _RNG.uniform(-180, 180, 3000)
_LAT = np.degrees(np.arcsin(_RNG.uniform(-1, 1, 3000)))
_SAMPLES = shapely.points(_LON, _LAT)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(lon=st.floats(-180, 180), lat=st.floats(-90, 90), metres=st.floats(1, 2.2e7))
def test_grown_point_is_a_valid_geodesic_circle(lon, lat, metres):
    g = grown(shapely.Point(lon, lat), metres)
    assert g.is_valid and g.geom_type in ("Polygon", "MultiPolygon")
    x0, y0, x1, y1 = g.bounds
    assert -180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90
    dist = GEOD.inv(np.full(len(_LON), lon), np.full(len(_LAT), lat), _LON, _LAT)[2]
    inside = shapely.intersects(g, _SAMPLES)
    clear = np.abs(dist - metres) > 0.002 * metres + 50  # away from the edge (vertices, ellipsoid)
    assert np.array_equal(inside[clear], (dist <= metres)[clear])


def test_grown_edge_cases():
    assert grown(shapely.Point(1, 2), MAX_DISTANCE_M).equals(WORLD)
    assert grown(shapely.Point(1, 2), 0).equals(shapely.Point(1, 2))
    for wkt in ("LINESTRING(90 90, 90 90)", "LINESTRING(179 10, 179.9 10)", "POLYGON((100 10, 140 10, 140 50, 100 10))",
                "MULTIPOINT(0 90, 10 -90)"):
        g = grown(shapely.from_wkt(wkt), 100_000)
        assert g.is_valid and g.geom_type in ("Polygon", "MultiPolygon"), wkt
    with pytest.raises(OutsideTheEarth):
        grown(shapely.Point(0, 90.5), 10)
