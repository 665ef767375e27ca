"""Loading vector files into a layer: all or nothing, with a report.

:func:`load_file` reads a GeoJSON, GeoPackage, Shapefile (``.shp`` or a ``.zip``
holding one) or CSV with lon/lat columns; takes the source CRS from the file or
``crs=``; transforms to EPSG:4326; maps and converts attributes; checks and
repairs geometries; and writes everything in one transaction. Any rejected row
fails the whole load (unless ``max_rejects`` allows skipping some), and a failed
load leaves the layer exactly as it was.

Example::

    report = load_file(store, "buildings.gpkg", "buildings", crs="EPSG:4528",
                       mapping={"JZMC": "name", "CS": "floors"})
    print(report.written, report.repaired_count)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from twin.catalog import LayerSpec, get_layer
from twin.errors import InvalidGeometry, InvalidParameter, LoadFailed
from twin.geometry import coerce_to_type, repair
from twin.io_formats import SourceData, read_source
from twin.load_crs import SourceCRS, resolve_source_crs, to_wgs84_checked
from twin.load_fields import FieldPlan, convert_column, null_mask, plan_fields


def _driver_errors() -> tuple[type[BaseException], ...]:
    """SQLAlchemy's wrapped errors plus the raw driver errors COPY raises outside SQLAlchemy."""
    errors: list[type[BaseException]] = [DBAPIError]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # SpatiaLite-only installs
        pass
    return tuple(errors)


_DRIVER_ERRORS = _driver_errors()

#: How many rejected / repaired rows a report and an error detail list in full.
MAX_LISTED = 100

_TYPE_IDS = {"Point": 0, "LineString": 1, "Polygon": 3, "MultiPoint": 4, "MultiLineString": 5, "MultiPolygon": 6}


@dataclass
class LoadReport:
    """What a load did. Row numbers are 1-based positions of the features in the source."""

    layer: str
    path: str
    format: str
    mode: str
    source_layer: str | None
    source_crs: str
    crs_origin: str  # "argument" | "file" | "assumed" (no CRS in the file: lon/lat WGS84)
    read: int
    written: int
    #: rows a ``replace`` deleted before writing (0 for ``append``): what the load replaced
    deleted: int = 0
    repaired_count: int = 0
    repaired: list[dict[str, Any]] = field(default_factory=list)  # first MAX_LISTED: {"row", "reason"}
    rejected_count: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # first MAX_LISTED: {"row", "reason"}
    field_mapping: dict[str, str] = field(default_factory=dict)  # source field → column
    skipped_fields: list[str] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # column → value used for every row
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RowErrors:
    """Reasons per 0-based row; several checks may add to the same row."""

    def __init__(self, n: int):
        self.n = n
        self.reasons: dict[int, list[str]] = {}

    def add(self, i: int, reason: str) -> None:
        self.reasons.setdefault(int(i), []).append(reason)

    def add_many(self, errors: dict[int, str]) -> None:
        for i, reason in errors.items():
            self.add(i, reason)

    def mask(self) -> np.ndarray:
        m = np.zeros(self.n, dtype=bool)
        if self.reasons:
            m[list(self.reasons)] = True
        return m

    def listing(self, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
        return [{"row": i + 1, "reason": "; ".join(self.reasons[i])} for i in sorted(self.reasons)[:limit]]


def load_file(
    store: Any,
    path: str | Path,
    layer: str,
    *,
    crs: str | None = None,
    mapping: dict[str, str] | None = None,
    mode: str = "append",
    on_invalid: str = "repair",
    source_layer: str | None = None,
    lon_field: str | None = None,
    lat_field: str | None = None,
    max_rejects: int = 0,
) -> LoadReport:
    """Load ``path`` into ``layer`` of ``store`` in one transaction and report what happened.

    ``crs`` overrides the file's CRS (``EPSG:4528``, ``4549``, an OGC URI…);
    ``mapping`` renames source fields to layer columns; ``mode`` is ``append``
    or ``replace`` (empty the layer first, in the same transaction);
    ``on_invalid`` is ``repair`` (fix invalid geometries and report them) or
    ``refuse`` (reject those rows); ``max_rejects`` rows may be rejected and
    skipped before the whole load fails. A replace that would accept no row at
    all is refused (it would only empty the layer); after a replace the layer
    holds exactly the accepted rows, and the report says how many rows it
    deleted (``deleted``) and wrote (``written``). Raises :class:`LoadFailed` (nothing
    written), :class:`UnsupportedFormat` or :class:`InvalidParameter`.
    """
    t0 = time.perf_counter()
    spec = get_layer(layer)
    if mode not in ("append", "replace"):
        raise InvalidParameter(f"mode must be 'append' or 'replace', not {mode!r}")
    if on_invalid not in ("repair", "refuse"):
        raise InvalidParameter(f"on_invalid must be 'repair' or 'refuse', not {on_invalid!r}")
    if max_rejects < 0:
        raise InvalidParameter("max_rejects must be 0 or more")
    p = Path(path)
    src = read_source(p, source_layer=source_layer, lon_field=lon_field, lat_field=lat_field)
    if src.count == 0 and mode == "replace":
        raise LoadFailed(f"{p.name!r} has no features; refusing to replace layer {spec.id!r} with nothing")
    plan = plan_fields(list(src.fields), spec, mapping)
    if plan.missing_required:
        raise LoadFailed(
            f"required columns of layer {spec.id!r} have no source field: {', '.join(plan.missing_required)}; "
            "map fields to them with mapping= (--map SRC=DST)",
            detail={"missing_columns": plan.missing_required, "source_fields": list(src.fields),
                    "matched": plan.matches},
        )
    source_crs = resolve_source_crs(src.crs, crs, src.format)
    errors = _RowErrors(src.count)
    errors.add_many(src.row_errors)
    repaired: list[dict[str, Any]] = []
    geoms = _prepare_geometries(src, spec, source_crs, on_invalid, errors, repaired)
    columns = _convert_fields(src, spec, plan, errors)
    _check_codes(store, spec, columns.get("code"), mode, errors)

    bad = errors.mask()
    rejected_count = int(bad.sum())
    rejected = errors.listing()
    if rejected_count > max_rejects:
        allowed = f" (max_rejects={max_rejects})" if max_rejects else ""
        first = rejected[0]
        raise LoadFailed(
            f"{rejected_count} of {src.count} rows rejected{allowed}; nothing was written. "
            f"First: row {first['row']}: {first['reason']}",
            detail={"rejected": rejected, "rejected_count": rejected_count, "read": src.count},
        )
    keep = np.flatnonzero(~bad)
    if mode == "replace" and len(keep) == 0:
        # max_rejects let every row be skipped: a replace would only empty the layer
        first = rejected[0] if rejected else {"row": None, "reason": "no rows"}
        raise LoadFailed(
            f"all {src.count} rows rejected; refusing to replace layer {spec.id!r} with nothing "
            f"(nothing was written). First: row {first['row']}: {first['reason']}",
            detail={"rejected": rejected, "rejected_count": rejected_count, "read": src.count, "accepted": 0},
        )
    rows = _rows(columns, plan.defaults, geoms, keep)
    try:
        result = store.write(spec.id, rows, mode=mode)
    except _DRIVER_ERRORS as exc:
        orig = getattr(exc, "orig", None) or exc
        msg = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        raise LoadFailed(f"the database refused the load ({msg}); nothing was written",
                         detail={"database_error": str(orig)}) from exc
    except InvalidGeometry as exc:
        raise LoadFailed(f"{exc.message}; nothing was written") from exc
    return LoadReport(
        layer=spec.id, path=str(p), format=src.format, mode=mode, source_layer=src.layer_name,
        source_crs=source_crs.label, crs_origin=source_crs.origin, read=src.count, written=result.written,
        deleted=result.deleted,
        repaired_count=len(repaired), repaired=repaired[:MAX_LISTED], rejected_count=rejected_count,
        rejected=rejected, field_mapping=plan.matches, skipped_fields=plan.skipped + list(src.geometry_fields),
        defaults=plan.defaults, seconds=round(time.perf_counter() - t0, 3),
    )


def _prepare_geometries(
    src: SourceData, spec: LayerSpec, source_crs: SourceCRS, on_invalid: str, errors: _RowErrors,
    repaired: list[dict[str, Any]],
) -> np.ndarray:
    """Lon/lat geometries of the layer's type, one per source row (``None`` where the row is rejected)."""
    geoms = np.asarray(src.geometries, dtype=object)
    out = np.full(len(geoms), None, dtype=object)
    missing = shapely.is_missing(geoms)
    missing[~missing] = shapely.is_empty(geoms[~missing])
    for i in np.flatnonzero(missing):
        errors.add(int(i), "no geometry (missing, empty or unreadable)")
    idx = np.flatnonzero(~missing)
    if len(idx) == 0:
        return out
    g = shapely.force_2d(geoms[idx])
    g, implausible = to_wgs84_checked(g, source_crs)
    for i in idx[implausible]:
        errors.add(i, f"coordinates outside the area of use of {source_crs.label}")
    valid = shapely.is_valid(g) | implausible
    for k in np.flatnonzero(~valid):
        i = idx[k]
        if on_invalid == "refuse":
            errors.add(i, f"invalid geometry: {shapely.is_valid_reason(g[k])}")
            continue
        fixed, reason = repair(g[k])
        if fixed is None:
            errors.add(i, reason or "invalid geometry")
        else:
            g[k] = fixed
            repaired.append({"row": int(i) + 1, "reason": reason})
    g = _coerce_bulk(g, spec.geometry_type)
    want = _TYPE_IDS[spec.geometry_type]
    types = shapely.get_type_id(g)
    for k in np.flatnonzero(types != want):
        if int(idx[k]) in errors.reasons:
            continue
        try:
            g[k] = coerce_to_type(g[k], spec.geometry_type)
        except InvalidGeometry as exc:
            errors.add(idx[k], exc.message)
    out[idx] = g
    return out


def _coerce_bulk(g: np.ndarray, geometry_type: str) -> np.ndarray:
    """Vectorised single → multi promotion and one-part multi → single demotion; the rest is left as is."""
    want = _TYPE_IDS[geometry_type]
    types = shapely.get_type_id(g)
    if geometry_type.startswith("Multi"):
        single = np.flatnonzero(types == want - 3)
        if len(single):
            make = {4: shapely.multipoints, 5: shapely.multilinestrings, 6: shapely.multipolygons}[want]
            g[single] = make(g[single], indices=np.arange(len(single)))
    else:
        multi = np.flatnonzero(types == want + 3)
        if len(multi):
            one = multi[shapely.get_num_geometries(g[multi]) == 1]
            g[one] = shapely.get_geometry(g[one], 0)
    return g


def _convert_fields(src: SourceData, spec: LayerSpec, plan: FieldPlan, errors: _RowErrors) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for src_name, col_name in plan.matches.items():
        col = spec.table.c[col_name]
        values, errs = convert_column(src.fields[src_name], col)
        errors.add_many(errs)
        if not col.nullable and col_name != "id":
            for i in np.flatnonzero(null_mask(values)):
                if int(i) not in errs:
                    errors.add(int(i), f"required column {col_name!r} (from {src_name!r}) is empty")
        columns[col_name] = values
    return columns


def _check_codes(store: Any, spec: LayerSpec, codes: list[Any] | None, mode: str, errors: _RowErrors) -> None:
    """Codes are unique per layer: duplicates within the file, and (appending) codes already stored."""
    if codes is None:
        return
    first: dict[Any, int] = {}
    for i, c in enumerate(codes):
        if c is None:
            continue
        if c in first:
            errors.add(i, f"duplicate code {c!r} (also row {first[c] + 1})")
        else:
            first[c] = i
    if mode != "append" or not first:
        return
    tbl = spec.table
    with store.engine.connect() as conn:
        existing = set(conn.execute(select(tbl.c.code)).scalars())
    for c in existing.intersection(first):
        errors.add(first[c], f"code {c!r} already exists in layer {spec.id!r}")


def _rows(columns: dict[str, list[Any]], defaults: dict[str, Any], geoms: np.ndarray,
          keep: np.ndarray) -> list[dict[str, Any]]:
    names = list(columns) + list(defaults) + ["geom"]
    n = len(geoms)
    const = [[v] * n for v in defaults.values()]
    series = [*columns.values(), *const, list(geoms)]
    if len(keep) == n:
        return [dict(zip(names, vals, strict=True)) for vals in zip(*series, strict=True)]
    return [dict(zip(names, (s[i] for s in series), strict=True)) for i in keep.tolist()]


__all__ = ["LoadReport", "load_file", "MAX_LISTED"]
