"""Geometry literals in filters: from ``filter-crs`` to CRS84, and metric distances."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from twin.cql.tree import Op
from twin.crs import crs_uri, is_crs84
from twin.errors import InvalidParameter

# --- geometry literals: filter-crs and distances ------------------------------


@lru_cache(maxsize=64)
def _to_crs84(src: str) -> Transformer:
    return Transformer.from_crs(src, "OGC:CRS84", always_xy=False)


def _map_geometries(node: Any, src: CRS | None) -> Any:
    """Every geometry literal of the tree checked (finite coordinates) and moved to CRS84."""
    if isinstance(node, shapely.Geometry):
        g = node
        xyz = shapely.get_coordinates(g, include_z=True)  # z is NaN where there is none
        if not (np.isfinite(xyz[:, :2]).all() and not np.isinf(xyz[:, 2]).any()):
            raise InvalidParameter("filter: a geometry literal has a coordinate that is not a finite number")
        if src is not None and not is_crs84(src):
            t = _to_crs84(src.srs)
            g = shapely.transform(g, lambda xy: _stack(t.transform(xy[:, 0], xy[:, 1])))
            if not all(map(math.isfinite, g.bounds)):
                raise InvalidParameter(f"a geometry in the filter lies outside the area of use of {crs_uri(src)}")
        return g
    if isinstance(node, Op):
        return Op(node.op, tuple(_map_geometries(a, src) for a in node.args))
    if isinstance(node, tuple):
        return tuple(_map_geometries(a, src) for a in node)
    return node


def _stack(xy: tuple[Any, Any]) -> Any:
    return np.column_stack(xy)
