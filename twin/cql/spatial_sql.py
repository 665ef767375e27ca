"""Spatial predicates in compiled filters: S_* functions with one geometry literal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shapely
from sqlalchemy import and_, func, literal

from twin.cql.dwithin import OutsideTheEarth, grown
from twin.cql.tree import UNITS_M, Prop, _is_number, describe
from twin.schema import SRID

if TYPE_CHECKING:
    from twin.cql.sql import _Compiler

GEOMETRY = "geometry"

_FUNCTIONS = {"s_intersects": func.ST_Intersects, "s_within": func.ST_Within, "s_contains": func.ST_Contains,
              "s_disjoint": func.ST_Disjoint, "s_touches": func.ST_Touches, "s_crosses": func.ST_Crosses,
              "s_overlaps": func.ST_Overlaps, "s_equals": func.ST_Equals}


def geometry(g: Any) -> Any:
    """A CRS84 geometry literal as a bound WKT parameter."""
    return func.ST_GeomFromText(literal(shapely.to_wkt(g, rounding_precision=-1)), SRID)


def spatial(c: _Compiler, op: str, a: tuple[Any, ...]) -> Any:
    geoms = []
    for v in a[:2]:
        if isinstance(v, Prop):
            t = c.prop(v)
            if t.kind != GEOMETRY:
                raise c.fail(f"{op.upper()} needs the geometry property 'geom', not {describe(v)}")
            geoms.append(("prop", t.sql))
        elif isinstance(v, shapely.Geometry):
            geoms.append(("lit", v))
        else:
            raise c.fail(f"{op.upper()} needs geometries, not {describe(v)}")
    kinds = [k for k, _ in geoms]
    if kinds.count("prop") != 1:
        raise c.fail(f"{op.upper()} needs the geometry property and one geometry literal")
    lit = next(g for k, g in geoms if k == "lit")
    if lit.is_empty:
        raise c.fail(f"{op.upper()} with an empty geometry")
    if op == "s_dwithin":
        dist = a[2]
        units = (a[3] if len(a) > 3 else "meters")
        if not _is_number(dist) or dist < 0:
            raise c.fail(f"S_DWITHIN distance must be a non-negative number, not {describe(dist)}")
        scale = UNITS_M.get(str(units).lower())
        if scale is None:
            raise c.fail(f"S_DWITHIN units {units!r} not supported; use meters or kilometers")
        try:
            lit = grown(lit, float(dist) * scale)
        except OutsideTheEarth as exc:
            raise c.fail(str(exc)) from None
        except shapely.errors.GEOSException as exc:  # a literal GEOS cannot grow (degenerate)
            raise c.fail(f"S_DWITHIN cannot grow this geometry by the distance: {exc}") from None
        op = "s_intersects"
        geoms = [("prop", c.tbl.c.geom), ("lit", lit)]
    args = [g if k == "prop" else geometry(g) for k, g in geoms]
    pred = c.predicate(_FUNCTIONS[op](*args))
    if op == "s_disjoint":
        return pred
    # every other predicate implies that the feature meets the literal's envelope: add the
    # dialect's index-backed bbox test so the spatial index narrows the scan first
    x0, y0, x1, y1 = lit.bounds
    eps = 1e-9
    return and_(c.dialect.bbox_clause(c.tbl, (x0 - eps, y0 - eps, x1 + eps, y1 + eps)), pred)
