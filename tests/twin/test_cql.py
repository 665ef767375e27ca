"""twin.cql: parsing CQL2 text/JSON and sortby, and the SQL it compiles to (no database needed)."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from sqlalchemy.dialects import postgresql, sqlite

from twin import cql
from twin.catalog import get_layer
from twin.dialect import PostgisDialect, SpatialiteDialect
from twin.errors import InvalidParameter
from twin.store import queryables


def sql(text: str, dialect=None, layer: str = "buildings", lang: str = "cql2-text") -> str:
    spec = get_layer(layer)
    d = dialect or PostgisDialect()
    expr = cql.to_sql(cql.parse(text, lang), spec.table, queryables(spec), d, layer)
    return str(expr.compile(dialect=postgresql.dialect() if d.name == "postgis" else sqlite.dialect()))


def test_precedence_and_not_of_a_group():
    t = cql.parse("a1 = 1 OR b1 = 2 AND NOT (c1 = 3 OR d1 = 4)").tree
    assert t.op == "or" and t.args[1].op == "and" and t.args[1].args[1].op == "not"
    assert t.args[1].args[1].args[0].op == "or"


def test_literals():
    t = cql.parse("reported_at > TIMESTAMP('2026-10-01T08:00:00+08:00')").tree
    assert t.args[1] == dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    assert cql.parse("name = 'it''s'").tree.args[1] == "it's"
    assert cql.parse("x1 = -2.5e1").tree.args[1] == -25.0
    g = cql.parse("S_INTERSECTS(geom, BBOX(1, 2, 3, 4))").tree.args[1]
    assert g.equals(shapely.box(1, 2, 3, 4))


def test_text_and_json_give_the_same_sql():
    text = "floors >= 4 AND (use IN ('a', 'b') OR name IS NULL) AND height_m BETWEEN 1 AND 9"
    js = ('{"op": "and", "args": [{"op": ">=", "args": [{"property": "floors"}, 4]}, {"op": "or", "args": ['
          '{"op": "in", "args": [{"property": "use"}, ["a", "b"]]}, {"op": "isNull", "args": [{"property": "name"}]}]},'
          '{"op": "between", "args": [{"property": "height_m"}, 1, 9]}]}')
    assert sql(text) == sql(js, lang="cql2-json")


def test_values_are_bound_parameters_never_inlined():
    out = sql("name = 'x''; DROP TABLE buildings; --' AND floors = 3")
    assert "DROP" not in out and "%(param_1)s" in out


def test_spatialite_spatial_predicates_compare_with_one_and_use_the_rtree():
    out = sql("S_WITHIN(geom, POLYGON((0 0, 1 0, 1 1, 0 0)))", SpatialiteDialect())
    assert "idx_buildings_geom" in out and "ST_Within(buildings.geom, ST_GeomFromText(?, ?)) = ?" in out
    assert "GLOB" in sql("code LIKE 'a%'", SpatialiteDialect())
    assert "LIKE" in sql("code LIKE 'a%'")


def test_filter_crs_transforms_geometry_literals_to_crs84():
    t = cql.parse("S_INTERSECTS(geom, POINT(13458000 3724000))", crs="EPSG:3857").tree
    p = t.args[1]
    assert p.x == pytest.approx(120.895, abs=1e-3) and p.y == pytest.approx(31.7, abs=1e-2)
    t = cql.parse("S_INTERSECTS(geom, POINT(31.7 120.9))", crs="EPSG:4326").tree  # lat, lon
    assert (t.args[1].x, t.args[1].y) == (pytest.approx(120.9), pytest.approx(31.7))


def test_sortby():
    assert cql.parse_sortby("+floors, -height_m,use") == (
        cql.SortKey("floors"), cql.SortKey("height_m", True), cql.SortKey("use"))
    assert cql.parse_sortby(" floors") == (cql.SortKey("floors"),)  # '+' decoded as a space


@pytest.mark.parametrize("text,needle", [
    ("floors = ", "position"),
    ("floors = 1 floors", "expected AND, OR"),
    ("floors == 1", "position"),
    ("floors @ 1", "unexpected character '@'"),
    ("TIMESTAMP('yesterday') < reported_at", "not an RFC 3339"),
    ("ACCENTI(name) = 'a'", "ACCENTI is not supported"),
])
def test_syntax_errors_say_where(text, needle):
    with pytest.raises(InvalidParameter) as exc:
        cql.parse(text)
    assert needle in exc.value.message


@pytest.mark.parametrize("text,needle", [
    ("floors = 'abc'", "cannot be compared with number property 'floors'"),
    ("geom = 1", "cannot be compared with geometry property"),
    ("is_permanent_basic = 1", "boolean"),
    ("unit_grid_codes = 'x'", "unknown"),
    ("1 = 1", "two literals"),
])
def test_type_errors(text, needle):
    layer = "farmland" if "permanent" in text else "buildings"
    with pytest.raises(InvalidParameter) as exc:
        sql(text, layer=layer)
    assert needle in exc.value.message
