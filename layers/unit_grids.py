"""Which unit grid (单元网格) a point lies in: how events are attributed to the grid that handles them."""

from __future__ import annotations

import shapely
from shapely.geometry import Point
from sqlalchemy import select
from sqlalchemy.engine import Connection

from twin.dialect import SpatialDialect
from twin.schema import Grid

#: half-size (degrees, ~1 mm) of the box that asks the spatial index for candidate grids
_EPS = 1e-8


def unit_grid_at(conn: Connection, dialect: SpatialDialect, lon: float, lat: float) -> str | None:
    """Code of the unit grid covering ``(lon, lat)``, or None outside every unit grid.

    The spatial index gives the candidates; shapely decides point-in-polygon (``covers``: a point
    on a shared edge belongs to the grid with the smallest code, so the answer is deterministic).
    """
    tbl = Grid.__table__
    rows = conn.execute(
        select(tbl.c.code, dialect.geometry_wkb(tbl))  # type: ignore[arg-type]
        .where(tbl.c.level == "unit", dialect.bbox_clause(tbl, (lon - _EPS, lat - _EPS, lon + _EPS, lat + _EPS)))
        .order_by(tbl.c.code)
    ).all()
    pt = Point(lon, lat)
    for code, wkb in rows:
        if shapely.from_wkb(bytes(wkb)).covers(pt):
            return str(code)
    return None


__all__ = ["unit_grid_at"]
