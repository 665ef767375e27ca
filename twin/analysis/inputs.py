"""Checking what a user sends to an analysis: GeoJSON geometries and distances.

Every function raises a :mod:`twin.errors` exception that says what was wrong
(``InvalidGeometry`` → 422, ``InvalidParameter``/``LimitExceeded`` → 400), so bad input
never reaches shapely or the database as a crash.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.validation import explain_validity

from twin.errors import InvalidGeometry, InvalidParameter, LimitExceeded

GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


def parse_geometry(obj: Any, *, max_vertices: int = 20_000, kinds: tuple[str, ...] = GEOMETRY_TYPES,
                   what: str = "geometry") -> shapely.Geometry:
    """A shapely geometry (lon/lat, CRS84) from a GeoJSON geometry object.

    Refuses: anything not a GeoJSON geometry of one of ``kinds``, empty geometries,
    non-finite or out-of-range coordinates, more than ``max_vertices`` vertices,
    lines without two distinct points, and invalid polygons (self-intersections, with
    the reason and place shapely gives).
    """
    if not isinstance(obj, dict) or "type" not in obj:
        raise InvalidGeometry(f"{what} must be a GeoJSON geometry object with a 'type'")
    if obj.get("type") not in kinds:
        raise InvalidGeometry(f"{what} type {obj.get('type')!r} is not accepted here", detail={"accepted": list(kinds)})
    point = _plain_point(obj)
    if point is not None:  # the commonest input, checked without the general machinery below
        return point
    try:
        geom = shapely.from_geojson(orjson.dumps(obj))
    except (shapely.errors.GEOSException, ValueError, TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidGeometry(f"{what} is not valid GeoJSON", detail=str(exc)) from None
    if geom is None or geom.is_empty:
        raise InvalidGeometry(f"{what} is empty")
    coords = shapely.get_coordinates(geom)
    if len(coords) > max_vertices:
        raise LimitExceeded(f"{what} has {len(coords)} vertices; at most {max_vertices} allowed",
                            detail={"max_vertices": max_vertices})
    if not np.all(np.isfinite(coords)):
        raise InvalidGeometry(f"{what} has non-finite coordinates")
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise InvalidGeometry(f"{what} coordinates must be longitude, latitude in degrees (CRS84)")
    if geom.geom_type in ("LineString", "MultiLineString"):
        for part in shapely.get_parts(geom):
            if len(np.unique(shapely.get_coordinates(part), axis=0)) < 2:
                raise InvalidGeometry(f"{what}: a line needs at least two distinct points")
    if not geom.is_valid:
        raise InvalidGeometry(f"{what} is not a valid geometry: {explain_validity(geom)}",
                              detail={"reason": explain_validity(geom)})
    return geom


def _plain_point(obj: dict[str, Any]) -> shapely.Point | None:
    """A GeoJSON Point of two finite in-range numbers as a shapely point; ``None`` for anything else
    (which then takes the general path and its error messages)."""
    xy = plain_point_xy(obj)
    return None if xy is None else shapely.Point(*xy)


def plain_point_xy(obj: Any) -> tuple[float, float] | None:
    """``(lon, lat)`` of a GeoJSON Point of two finite in-range numbers; ``None`` for anything else
    (:func:`parse_geometry` then says what is wrong with it). The commonest analysis input, checked
    without making a geometry: a small buffer costs little more than its one indexed query."""
    if type(obj) is not dict or obj.get("type") != "Point" or len(obj) != 2:
        return None
    c = obj.get("coordinates")
    if type(c) is not list or len(c) != 2:
        return None
    x, y = c
    if type(x) not in (float, int) or type(y) not in (float, int):
        return None
    try:
        x, y = float(x), float(y)
    except OverflowError:
        return None
    if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90):
        return None
    return x, y


def check_distance(value: Any, *, maximum: float, what: str = "distance", allow_zero: bool = True) -> float:
    """A distance in metres: a finite number, not negative, at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{what} must be a number of metres, not {value!r}")
    d = float(value)
    if not math.isfinite(d):
        raise InvalidParameter(f"{what} must be a finite number of metres")
    if d < 0 or (d == 0 and not allow_zero):
        raise InvalidParameter(f"{what} must be {'at least' if allow_zero else 'more than'} 0 m, not {d:g}")
    if d > maximum:
        raise LimitExceeded(f"{what} {d:g} m exceeds the maximum of {maximum:g} m", detail={"max_m": maximum})
    return d


def parse_point(text: str, what: str = "point") -> tuple[float, float]:
    """``lon,lat`` in degrees."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise InvalidParameter(f"{what} must be 'lon,lat', got {text!r}")
    try:
        lon, lat = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidParameter(f"{what} must be two numbers 'lon,lat', got {text!r}") from None
    return check_lonlat(lon, lat, what)


def check_lonlat(lon: float, lat: float, what: str = "point") -> tuple[float, float]:
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        raise InvalidParameter(f"{what} must be a longitude in [-180, 180] and latitude in [-90, 90]")
    return float(lon), float(lat)


__all__ = ["GEOMETRY_TYPES", "check_distance", "check_lonlat", "parse_geometry", "parse_point", "plain_point_xy"]
