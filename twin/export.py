"""Exporting a layer to GeoJSON or GeoPackage, in EPSG:4326 or another CRS.

Fields keep their types (integer, real, boolean, date, datetime in UTC); JSON
columns are written as JSON text; the feature ``id`` is written as a field.
Files are written x = easting/longitude (the order GIS files use), so a file
exported with ``crs="EPSG:4528"`` loads back with :func:`twin.loader.load_file`
unchanged.

Example::

    n = export_layer(store, "buildings", "out/buildings.gpkg", bbox=(120.5, 31.2, 120.7, 31.4))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import shapely
from pyproj import Transformer
from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, select

from twin.catalog import get_layer
from twin.crs import is_crs84, parse_crs
from twin.errors import InvalidParameter, UnsupportedFormat

_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}
_FMT_NAMES = {"geojson": "GeoJSON", "json": "GeoJSON", "gpkg": "GPKG", "geopackage": "GPKG"}
_UTC_FLAG = 100  # GDAL's TZFlag for UTC


def export_layer(
    store: Any,
    layer: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    crs: str | None = None,
) -> int:
    """Write ``layer`` (optionally only features intersecting ``bbox``, lon/lat) to ``path``.

    ``fmt`` is ``geojson`` or ``gpkg`` (default: from the suffix, ``.geojson``/
    ``.json``/``.gpkg``); ``crs`` is the output CRS (default EPSG:4326). The file
    is written next to ``path`` and moved into place, so a failed export never
    leaves half a file. Returns the number of features written.
    """
    p = Path(path)
    driver = _driver(p, fmt)
    spec = get_layer(layer)
    tbl = spec.table
    cols = spec.property_columns
    stmt = select(tbl.c.id, *cols, store.dialect.geometry_wkb(tbl).label("wkb")).order_by(tbl.c.id)
    if bbox is not None:
        stmt = stmt.where(store.dialect.bbox_clause(tbl, tuple(float(v) for v in bbox)))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    n = len(rows)
    geoms = shapely.from_wkb([bytes(r[-1]) for r in rows]) if n else np.array([], dtype=object)
    out_crs = parse_crs(crs) if crs else None
    if out_crs is not None and not (is_crs84(out_crs) or out_crs.to_epsg() == 4326) and n:
        t = Transformer.from_crs("OGC:CRS84", out_crs, always_xy=True)
        geoms = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    crs_text = "EPSG:4326" if out_crs is None or is_crs84(out_crs) else _crs_text(out_crs)

    names = ["id"] + [c.name for c in cols]
    data: list[np.ndarray] = [np.array([r[0] for r in rows], dtype=np.int64)]
    masks: list[np.ndarray | None] = [None]
    tz: dict[str, np.ndarray] = {}
    for k, col in enumerate(cols, start=1):
        values = [r[k] for r in rows]
        arr, mask = _column_array(values, col)
        data.append(arr)
        masks.append(mask)
        if isinstance(col.type, DateTime):
            tz[col.name] = np.full(n, _UTC_FLAG, dtype=np.int32)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    if tmp.exists():
        tmp.unlink()
    try:
        pyogrio.raw.write(
            str(tmp), shapely.to_wkb(geoms) if n else np.array([], dtype=object), data, names,
            field_mask=masks, driver=driver, geometry_type=spec.geometry_type, crs=crs_text,
            layer=spec.id, gdal_tz_offsets=tz or None,
        )
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def _driver(p: Path, fmt: str | None) -> str:
    if fmt is not None:
        driver = _FMT_NAMES.get(fmt.lower())
        if driver is None:
            raise InvalidParameter(f"unknown export format {fmt!r}", detail={"supported": ["geojson", "gpkg"]})
        return driver
    driver = _DRIVERS.get(p.suffix.lower())
    if driver is None:
        raise UnsupportedFormat(
            f"cannot export to {p.name!r}: use .geojson, .json or .gpkg (or give fmt)",
            detail={"supported": sorted(_DRIVERS)},
        )
    return driver


def _crs_text(crs: Any) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_wkt()


def _column_array(values: list[Any], col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A typed numpy array for one column plus a null mask (``None`` when nothing is null)."""
    t = col.type
    null = np.fromiter((v is None for v in values), bool, len(values))
    mask = null if null.any() else None
    if isinstance(t, Boolean):
        return np.array([bool(v) if v is not None else False for v in values], dtype=bool), mask
    if isinstance(t, Integer):
        return np.array([v if v is not None else 0 for v in values], dtype=np.int64), mask
    if isinstance(t, Float):
        return np.array([v if v is not None else np.nan for v in values], dtype=np.float64), mask
    if isinstance(t, DateTime):
        iso = [None if v is None else _utc_naive(v) for v in values]
        return np.array(iso, dtype="datetime64[ms]"), mask
    if isinstance(t, Date):
        return np.array([v.isoformat() if v is not None else None for v in values], dtype="datetime64[D]"), mask
    if isinstance(t, JSON):
        return np.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], dtype=object), mask
    return np.array(values, dtype=object), mask


def _utc_naive(v: Any) -> str:
    import datetime as dt

    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return v.isoformat()


__all__ = ["export_layer"]
