"""Geometry checks and coercion to a layer's stored geometry type.

Tables are typed (``MULTIPOLYGON``, ``LINESTRING``, ``POINT``) and SpatiaLite
enforces it, so every writer passes geometries through :func:`coerce_to_type`.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.errors import InvalidGeometry


def coerce_to_type(geom: BaseGeometry, geometry_type: str) -> BaseGeometry:
    """Return ``geom`` as ``geometry_type`` (Point, LineString, MultiPolygon, …).

    Single parts are promoted to multi; a multi geometry with one part is
    demoted to single; a Z dimension is dropped. Anything else is an
    :class:`InvalidGeometry` naming both types.
    """
    if geom is None or geom.is_empty:
        raise InvalidGeometry("empty geometry")
    if geom.has_z:
        geom = shapely.force_2d(geom)
    have = geom.geom_type
    want = geometry_type
    if have == want:
        return geom
    if want.startswith("Multi") and have == want[5:]:
        return getattr(shapely.geometry, want)([geom])
    if have == f"Multi{want}" and len(geom.geoms) == 1:
        return geom.geoms[0]
    if want == "LineString" and have == "MultiLineString":
        merged = shapely.line_merge(geom)
        if merged.geom_type == "LineString":
            return merged
    if want == "MultiPolygon" and have == "GeometryCollection":
        polys = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        if polys and len(polys) == len(geom.geoms):
            return shapely.geometry.MultiPolygon(
                [p for g in polys for p in (g.geoms if g.geom_type == "MultiPolygon" else [g])]
            )
    raise InvalidGeometry(f"a {have} cannot be stored in a {want} layer")


def coerce_array(geoms: list[BaseGeometry] | np.ndarray, geometry_type: str) -> list[BaseGeometry]:
    types = shapely.get_type_id(np.asarray(geoms, dtype=object))
    want_id = {"Point": 0, "LineString": 1, "Polygon": 3, "MultiPoint": 4, "MultiLineString": 5,
               "MultiPolygon": 6}[geometry_type]
    if np.all(types == want_id) and not np.any(shapely.has_z(np.asarray(geoms, dtype=object))):
        return list(geoms)
    return [coerce_to_type(g, geometry_type) for g in geoms]


def repair(geom: BaseGeometry) -> tuple[BaseGeometry | None, str | None]:
    """Make ``geom`` valid if it can be done without guessing; return (geometry, reason it was changed).

    Returns (None, reason) when repair leaves nothing of the input's dimension.
    """
    if geom.is_valid:
        return geom, None
    reason = shapely.is_valid_reason(geom)
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    dim = shapely.get_dimensions(geom)
    parts = [g for g in getattr(fixed, "geoms", [fixed]) if shapely.get_dimensions(g) == dim and not g.is_empty]
    if not parts:
        return None, f"invalid ({reason}) and collapses when repaired"
    if len(parts) == 1:
        return parts[0], f"repaired: {reason}"
    return shapely.union_all(parts), f"repaired: {reason}"
