"""MVT encoding in Python, for SpatiaLite (which has no ``ST_AsMVT``) and any other store.

Per layer: candidates from the store's spatial index (the dialect's bbox clause over
the buffered tile in lon/lat), then, vectorised over the whole batch with shapely
and numpy: lon/lat → Web Mercator → tile grid units (y down), size thresholds,
simplification, clipping to the buffered tile, and finally mapbox-vector-tile
writes the protobuf (rounding to the 4096 grid and fixing ring orientation).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import mapbox_vector_tile
import numpy as np
import shapely
from mapbox_vector_tile.encoder import on_invalid_geometry_make_valid
from sqlalchemy import select

from tiles.mvt import LayerPlan
from tiles.tms import BUFFER, EXTENT, MAX_LAT, Tile, tile_bounds, tile_bounds_lonlat

_R = 6378137.0


def _to_tile_units(geoms: np.ndarray, tile: Tile) -> np.ndarray:
    """Lon/lat geometries → tile grid coordinates (0..EXTENT, y down), vectorised."""
    minx, miny, maxx, maxy = tile_bounds(tile)
    sx = EXTENT / (maxx - minx)
    sy = EXTENT / (maxy - miny)

    def fn(coords: np.ndarray) -> np.ndarray:
        lon = coords[:, 0]
        lat = np.clip(coords[:, 1], -MAX_LAT, MAX_LAT)
        mx = np.radians(lon) * _R
        my = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * _R
        return np.column_stack(((mx - minx) * sx, (maxy - my) * sy))

    return shapely.transform(geoms, fn)


def _property(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class PythonTileEncoder:
    """Encodes tiles from any :class:`twin.store.SpatialStore` in Python."""

    def __init__(self, store):  # noqa: ANN001 - a SpatialStore
        self.store = store

    def close(self) -> None:
        pass

    def encode(self, tile: Tile, plans: Sequence[LayerPlan], feature_cap: int) -> bytes:
        layers = []
        with self.store.engine.connect() as conn:
            for plan in plans:
                layer = self._layer(conn, tile, plan, feature_cap)
                if layer is not None:
                    layers.append(layer)
        if not layers:
            return b""
        return mapbox_vector_tile.encode(
            layers,
            default_options={
                "extents": EXTENT,
                "y_coord_down": True,
                "on_invalid_geometry": on_invalid_geometry_make_valid,
            },
        )

    def _layer(self, conn, tile: Tile, plan: LayerPlan, feature_cap: int) -> dict | None:  # noqa: ANN001
        spec = plan.spec
        tbl = plan.source
        names = [n for n in spec.tile_properties if n in tbl.c]
        stmt = (
            select(tbl.c.id, *(tbl.c[n] for n in names), self.store.dialect.geometry_wkb(tbl))
            .where(self.store.dialect.bbox_clause(tbl, tile_bounds_lonlat(tile, plan.margin)))
            .limit(feature_cap)
        )
        if "zoom" in tbl.c:  # generalised per zoom (building blocks)
            stmt = stmt.where(tbl.c.zoom == tile.z)
        for col, value in plan.exclude:  # not drawn at this zoom (LayerSpec.tile_from_zoom)
            stmt = stmt.where(tbl.c[col].is_distinct_from(value))
        rows = conn.execute(stmt).all()
        if not rows:
            return None
        geoms = _to_tile_units(shapely.from_wkb([bytes(r[-1]) for r in rows]), tile)
        # thresholds are in 3857 units; one tile grid unit is (tile width / EXTENT) metres
        unit = (tile_bounds(tile)[2] - tile_bounds(tile)[0]) / EXTENT
        keep = np.ones(len(rows), dtype=bool)
        if plan.min_area > 0:
            keep &= shapely.area(geoms) >= plan.min_area / (unit * unit)
        if plan.min_length > 0:
            keep &= shapely.length(geoms) >= plan.min_length / unit
        if plan.simplify > 0:
            geoms = shapely.simplify(geoms, plan.simplify / unit, preserve_topology=True)
        geoms = shapely.clip_by_rect(geoms, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
        keep &= ~shapely.is_empty(geoms)
        features = []
        for i in np.flatnonzero(keep):
            row = rows[i]
            props = {n: _property(v) for n, v in zip(names, row[1:-1], strict=True) if v is not None}
            features.append({"id": int(row[0]), "geometry": geoms[i], "properties": props})
        if not features:
            return None
        return {"name": spec.id, "features": features}


__all__ = ["PythonTileEncoder"]
