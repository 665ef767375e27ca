"""Hypothesis strategies for grammar-shaped CQL2 filters, in cql2-text and cql2-json.

Properties real and made up; literals including huge integers, nan/inf, Unicode, dates
and geometries with wild coordinates; deep nesting; long chains; random mutations. Used
by the HTTP fuzz test (both backends) and the parser/compiler fuzz test (no database).
"""

from __future__ import annotations

import datetime as dt
import json
import math

from hypothesis import strategies as st

LAYERS = ["buildings", "events"]
PROPS = ["floors", "height_m", "name", "address", "use", "code", "year_built", "households", "geom",
         "reported_at", "closed_at", "status", "title", "id", "metrics"]
SPECIAL_INTS = [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 10**308,
                10**309, 10**400]

idents = st.one_of(st.sampled_from(PROPS), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True))
ints = st.one_of(st.integers(-10, 10), st.integers(), st.sampled_from(SPECIAL_INTS))
floats = st.floats(allow_nan=True, allow_infinity=True)
unicode = st.one_of(st.text(st.characters(codec="utf-8"), max_size=12),
                    st.sampled_from(["a\x00b", "École Ａ座", "x\\", "\\", "'", "%_\\%", "ΟΔΟΣ", "2026-09-29",
                                     "2026-09-29T06:00:00Z", "9999-12-31", "0001-01-01T00:00:00+14:00"]))
coords = st.one_of(st.floats(-180, 180), st.floats(-1e6, 1e6), floats,
                   st.sampled_from([90.0, -90.0, 180.0, -180.0, 100.0, 1e308]))


def _num(v: float | int) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return {"inf": "1e999", "-inf": "-1e999"}.get(repr(v), "nan")
    return repr(v)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# --- cql2-text ------------------------------------------------------------------

t_number = st.one_of(ints, floats).map(_num)
t_string = unicode.map(_quote)
t_date = st.one_of(st.dates().map(dt.date.isoformat), unicode).map(lambda s: f"DATE({_quote(s)})")
t_timestamp = st.builds(
    lambda d, m: d.replace(tzinfo=dt.timezone(dt.timedelta(minutes=m))).isoformat(),
    st.datetimes(), st.integers(-14 * 60, 14 * 60)).map(lambda s: f"TIMESTAMP({_quote(s)})")
t_instant = st.one_of(t_date, t_timestamp, st.just("'..'"))
t_interval = st.tuples(t_instant, t_instant).map(lambda p: f"INTERVAL({p[0]}, {p[1]})")
t_point = st.tuples(coords, coords).map(lambda p: f"POINT({_num(p[0])} {_num(p[1])})")
t_geometry = st.one_of(
    t_point,
    st.lists(st.tuples(coords, coords), min_size=1, max_size=5).map(
        lambda ps: "LINESTRING(" + ", ".join(f"{_num(x)} {_num(y)}" for x, y in ps) + ")"),
    st.lists(st.tuples(coords, coords), min_size=3, max_size=5).map(
        lambda ps: "POLYGON((" + ", ".join(f"{_num(x)} {_num(y)}" for x, y in [*ps, ps[0]]) + "))"),
    st.tuples(coords, coords, coords, coords).map(lambda b: "BBOX(" + ", ".join(map(_num, b)) + ")"),
    st.just("POINT EMPTY"), st.just("GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(0 0, 1 1))"),
)
t_scalar = st.recursive(
    st.one_of(idents, t_number, t_string, st.sampled_from(["TRUE", "FALSE"]), t_date, t_timestamp,
              idents.map(lambda p: f"CASEI({p})"), t_string.map(lambda s: f"CASEI({s})")),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda s: f"({s})"), inner.map(lambda s: f"-{s}")),
    max_leaves=4)
t_predicate = st.one_of(
    st.tuples(t_scalar, st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "!="]), t_scalar).map(" ".join),
    st.tuples(t_scalar, st.sampled_from(["LIKE", "NOT LIKE"]),
              st.one_of(t_string, t_string.map(lambda s: f"CASEI({s})"))).map(" ".join),
    st.tuples(t_scalar, st.lists(t_scalar, min_size=1, max_size=4)).map(
        lambda t: f"{t[0]} IN ({', '.join(t[1])})"),
    st.tuples(t_scalar, t_scalar, t_scalar).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
    idents.map(lambda p: f"{p} IS NULL"), idents.map(lambda p: f"{p} IS NOT NULL"),
    st.tuples(st.sampled_from(["S_INTERSECTS", "S_WITHIN", "S_CONTAINS", "S_DISJOINT", "S_EQUALS", "S_TOUCHES"]),
              idents, t_geometry).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    st.tuples(idents, t_geometry, st.one_of(ints, floats).map(_num),
              st.sampled_from(["meters", "kilometers", "km", "feet"])).map(
        lambda t: f"S_DWITHIN({t[0]}, {t[1]}, {t[2]}, {t[3]})"),
    st.tuples(st.sampled_from(["T_BEFORE", "T_AFTER", "T_EQUALS", "T_DURING", "T_INTERSECTS", "T_DISJOINT"]),
              idents, st.one_of(t_instant, t_interval)).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    st.sampled_from(["TRUE", "FALSE"]),
)
# well-typed predicates on real properties, so many filters reach the database
t_typed = st.one_of(
    st.tuples(st.sampled_from(["floors", "height_m", "year_built", "households"]),
              st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), t_number).map(" ".join),
    st.tuples(st.sampled_from(["name", "address", "use", "code", "status", "title"]),
              st.sampled_from(["=", "<>", "<", ">=", "LIKE"]), t_string).map(" ".join),
    st.tuples(st.sampled_from(["name", "address"]), t_string).map(lambda t: f"CASEI({t[0]}) LIKE CASEI({t[1]})"),
    st.tuples(st.sampled_from(["reported_at", "closed_at"]), st.sampled_from(["=", "<", ">=", "<>"]),
              st.one_of(t_date, t_timestamp)).map(" ".join),
    st.tuples(st.sampled_from(["floors", "year_built"]), st.lists(t_number, min_size=1, max_size=5)).map(
        lambda t: f"{t[0]} IN ({', '.join(t[1])})"),
    st.tuples(t_point, st.one_of(ints, floats).map(_num)).map(lambda t: f"S_DWITHIN(geom, {t[0]}, {t[1]}, km)"),
)
t_condition = st.recursive(
    st.one_of(t_predicate, t_typed),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR", "and", "or"]), inner).map(" ".join),
        inner.map(lambda s: f"NOT {s}"), inner.map(lambda s: f"({s})")),
    max_leaves=6)
t_deep = st.tuples(st.sampled_from(["NOT ", "(", "-", "CASEI(", "+"]), st.integers(0, 400), t_condition).map(
    lambda t: t[0] * t[1] + t[2] + (")" * t[1] if t[0] in ("(", "CASEI(") else ""))
t_chain = st.tuples(t_predicate, st.sampled_from([" OR ", " AND ", " + "]), st.integers(2, 700)).map(
    lambda t: t[1].join([t[0]] * t[2]))
t_mutated = st.tuples(t_condition, st.integers(0, 60), st.text("()'\",-+*/=<>\\ NOTANDOReE.0123456789", max_size=4)
                      ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])
text_filters = st.one_of(t_condition, t_condition, t_deep, t_chain, t_mutated)

# --- cql2-json ------------------------------------------------------------------

j_number = st.one_of(ints, floats)
j_prop = idents.map(lambda p: {"property": p})
j_instant = st.one_of(st.dates().map(lambda d: {"date": d.isoformat()}), unicode.map(lambda s: {"timestamp": s}),
                      st.datetimes().map(lambda d: {"timestamp": d.isoformat() + "Z"}), st.just(".."))
j_geometry = st.one_of(
    st.tuples(coords, coords).map(lambda p: {"type": "Point", "coordinates": list(p)}),
    st.lists(st.tuples(coords, coords).map(list), min_size=2, max_size=4).map(
        lambda ps: {"type": "LineString", "coordinates": ps}),
    st.lists(coords, min_size=3, max_size=7).map(lambda b: {"bbox": b}),
    st.just({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}),
    st.just({"type": "Point", "coordinates": []}), st.just({"type": "Nope", "coordinates": [1, 2]}),
)
j_scalar = st.recursive(
    st.one_of(j_prop, j_number, unicode, st.booleans(), j_instant, st.none(),
              j_prop.map(lambda p: {"op": "casei", "args": [p]})),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from("+-*/"), inner, inner).map(lambda t: {"op": t[0], "args": [t[1], t[2]]}),
        st.lists(inner, max_size=3)),
    max_leaves=4)
j_predicate = st.one_of(
    st.tuples(st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "!=", "like", "between", "in", "isNull"]),
              st.lists(j_scalar, max_size=3)).map(lambda t: {"op": t[0], "args": t[1]}),
    st.tuples(st.sampled_from(["s_intersects", "s_within", "s_dwithin", "S_DISJOINT"]), j_prop, j_geometry,
              j_number).map(lambda t: {"op": t[0], "args": [t[1], t[2], t[3]][: 3 if t[0] == "s_dwithin" else 2]}),
    st.tuples(st.sampled_from(["t_before", "t_after", "t_during", "t_intersects"]), j_prop,
              st.one_of(j_instant, st.tuples(j_instant, j_instant).map(lambda p: {"interval": list(p)}))).map(
        lambda t: {"op": t[0], "args": [t[1], t[2]]}),
)
j_typed = st.one_of(
    st.tuples(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
              st.sampled_from(["floors", "height_m", "year_built"]), j_number).map(
        lambda t: {"op": t[0], "args": [{"property": t[1]}, t[2]]}),
    st.tuples(st.sampled_from(["=", "like", ">"]), st.sampled_from(["name", "address", "status"]), unicode).map(
        lambda t: {"op": t[0], "args": [{"property": t[1]}, t[2]]}),
    st.tuples(st.sampled_from(["floors", "year_built"]), st.lists(j_number, min_size=1, max_size=4)).map(
        lambda t: {"op": "in", "args": [{"property": t[0]}, t[1]]}),
    st.tuples(st.sampled_from(["t_before", "t_after", "t_intersects", "t_disjoint"]), j_instant).map(
        lambda t: {"op": t[0], "args": [{"property": "reported_at"}, t[1]]}),
    st.tuples(j_geometry, j_number).map(lambda t: {"op": "s_dwithin", "args": [{"property": "geom"}, t[0], t[1]]}),
    st.tuples(st.sampled_from(["s_intersects", "s_within", "s_disjoint"]), j_geometry).map(
        lambda t: {"op": t[0], "args": [{"property": "geom"}, t[1]]}),
)
j_condition = st.recursive(
    st.one_of(j_predicate, j_typed),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["and", "or", "AND"]), st.lists(inner, min_size=1, max_size=4)).map(
            lambda t: {"op": t[0], "args": t[1]}),
        inner.map(lambda c: {"op": "not", "args": [c]}), inner.map(lambda c: {"op": "not", "args": c})),
    max_leaves=6)
json_filters = st.one_of(
    j_condition.map(json.dumps), j_condition.map(json.dumps),
    st.tuples(st.sampled_from(['{"op":"not","args":[', "[", '{"a":', '{"op":"+","args":[1,']),
              st.integers(0, 3000)).map(lambda t: t[0] * t[1]),
    st.tuples(j_predicate, st.integers(2, 600)).map(lambda t: json.dumps({"op": "or", "args": [t[0]] * t[1]})),
    st.tuples(j_condition.map(json.dumps), st.integers(0, 40), st.text('{}[]",:0123456789.eE-', max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]),
)
