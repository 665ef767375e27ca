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

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from twin.catalog import LayerSpec, get_layer
from twin.errors import InvalidGeometry, InvalidParameter, LoadFailed
from twin.geometry import coerce_to_type, repair
from twin.io_formats import SourceData, open_source
from twin.load_crs import SourceCRS, resolve_source_crs, to_wgs84_checked
from twin.load_fields import FieldPlan, convert_column, null_mask, plan_fields
from twin.load_presets import Target, get_preset
from twin.load_rules import (
    RULES,
    Context,
    FillCounts,
    apply_defaults,
    check_code_pattern,
    derive,
    make_codes,
    parse_column,
)
from twin.settings import TwinSettings, get_settings

#: ``progress(rows_read, total_or_None)`` after each batch
Progress = Callable[[int, int | None], None]


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
    defaults: dict[str, Any] = field(default_factory=dict)  # column → value that fills its empty cells
    derived: dict[str, int] = field(default_factory=dict)  # column → cells a rule made (height, code, length…)
    defaulted: dict[str, int] = field(default_factory=dict)  # column → cells filled from ``defaults``
    converted: dict[str, int] = field(default_factory=dict)  # column → text values read leniently ("12 m", "三层")
    converted_examples: list[dict[str, Any]] = field(default_factory=list)  # first 20: {"row","column","value","as"}
    preset: str | None = None
    where: str | None = None
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

    def listing(self, limit: int = MAX_LISTED, offset: int = 0) -> list[dict[str, Any]]:
        return [{"row": offset + i + 1, "reason": "; ".join(self.reasons[i])}
                for i in sorted(self.reasons)[: max(0, limit)]]


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
    defaults: dict[str, Any] | None = None,
    code_from: str | None = None,
    code_pattern: str | None = None,
    where: str | None = None,
    encoding: str | None = None,
    preset: str | None = None,
    progress: Progress | None = None,
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

    Filling gaps (see :mod:`twin.load_rules`): ``defaults`` (``{"use": "unknown"}``)
    fill empty cells, ``code_from`` (a source field) or ``code_pattern``
    (``"B-{n:06d}"``) make codes, and the layer's derivation rules (height ⇄
    floors, pipe length, parcel area) fill what they can; the report counts
    each in ``derived``/``defaulted``. ``preset`` names a load preset
    (:mod:`twin.load_presets`) whose target for ``layer`` supplies mapping,
    values, defaults and codes (the other arguments add to or override it).
    ``where`` filters features (OGR SQL), ``encoding`` overrides a Shapefile's
    text encoding; ``progress(done, total)`` is called after each batch.
    """
    if preset is not None:
        chosen = [t for t in get_preset(preset).targets if t.layer == layer]
        if not chosen:
            raise InvalidParameter(f"load preset {preset!r} has no target for layer {layer!r}",
                                   detail={"layers": [t.layer for t in get_preset(preset).targets]})
        target = replace(chosen[0])
        target.map = {**target.map, **(mapping or {})}
        target.set = {**target.set, **(defaults or {})}
        if source_layer is not None or where is not None:
            target.source_layer, target.where, target.lenient_map = source_layer, where, True
        if code_from is not None or code_pattern is not None:
            target.code_from, target.code_pattern = code_from, code_pattern
    else:
        target = Target(layer=layer, source_layer=source_layer, where=where, map=dict(mapping or {}),
                        set=dict(defaults or {}), code_from=code_from, code_pattern=code_pattern)
    opts = _Options(crs=crs, mode=mode, on_invalid=on_invalid, max_rejects=max_rejects, lon_field=lon_field,
                    lat_field=lat_field, encoding=encoding, progress=progress, preset=preset)
    _check_options(opts, target)
    with store.engine.begin() as conn:
        return _load_target(store, conn, Path(path), target, opts)


def load_preset(
    store: Any,
    path: str | Path,
    preset: str,
    *,
    layers: list[str] | None = None,
    crs: str | None = None,
    mode: str = "append",
    on_invalid: str = "repair",
    max_rejects: int = 0,
    encoding: str | None = None,
    progress: Progress | None = None,
) -> list[LoadReport]:
    """Load every target of ``preset`` that the file has (e.g. OSM buildings, roads, farmland) in ONE transaction.

    A target whose ``source_layer`` the file lacks is skipped, unless ``layers``
    names it (then the whole file feeds it); a target with no matching feature
    leaves its layer alone (even with ``mode="replace"``) and reports ``read=0``.
    Any failure writes nothing to any layer.
    """
    p = Path(path)
    spec_preset = get_preset(preset)
    have = _file_layers(p)
    targets = [t for t in spec_preset.targets if (layers is None or t.layer in layers)]
    if layers is None:
        targets = [t for t in targets if t.source_layer is None or t.source_layer in have]
    if not targets:
        raise InvalidParameter(f"{p.name!r} has none of the source layers of preset {preset!r}",
                               detail={"file_layers": have,
                                       "preset_layers": {t.layer: t.source_layer for t in spec_preset.targets}})
    opts = _Options(crs=crs, mode=mode, on_invalid=on_invalid, max_rejects=max_rejects, lon_field=None,
                    lat_field=None, encoding=encoding, progress=progress, preset=preset)
    for t in targets:
        _check_options(opts, t)
    with store.engine.begin() as conn:
        return [_load_target(store, conn, p, replace(t), opts, skip_empty=True) for t in targets]


def _file_layers(p: Path) -> list[str]:
    if p.suffix.lower() in (".csv", ".zip") or not p.exists():
        return []
    try:
        return [str(row[0]) for row in pyogrio.list_layers(str(p))]
    except Exception:  # unreadable: open_source says why when the load reads it
        return []


@dataclass
class _Options:
    crs: str | None
    mode: str
    on_invalid: str
    max_rejects: int
    lon_field: str | None
    lat_field: str | None
    encoding: str | None
    progress: Progress | None
    preset: str | None


def _check_options(opts: _Options, target: Target) -> None:
    get_layer(target.layer)
    if opts.mode not in ("append", "replace"):
        raise InvalidParameter(f"mode must be 'append' or 'replace', not {opts.mode!r}")
    if opts.on_invalid not in ("repair", "refuse"):
        raise InvalidParameter(f"on_invalid must be 'repair' or 'refuse', not {opts.on_invalid!r}")
    if opts.max_rejects < 0:
        raise InvalidParameter("max_rejects must be 0 or more")
    if target.code_from is not None and target.code_pattern is not None:
        raise InvalidParameter("give code_from or code_pattern, not both")


def _load_target(store: Any, conn: Any, p: Path, target: Target, opts: _Options,
                 skip_empty: bool = False) -> LoadReport:
    t0 = time.perf_counter()
    spec = get_layer(target.layer)
    mode = opts.mode
    source_layer, where = target.source_layer, target.where
    if target.lenient_map and source_layer is not None and source_layer not in _file_layers(p):
        source_layer, where = None, None  # e.g. the OSM preset on a GeoJSON export of buildings
    settings = get_settings()
    stream = open_source(p, source_layer=source_layer, lon_field=opts.lon_field, lat_field=opts.lat_field,
                         where=where, encoding=opts.encoding, batch_rows=settings.load_batch_rows)
    src = stream.first
    if src.count == 0 and skip_empty:
        # a preset target the file has nothing for (an extract without farmland): leave that layer alone
        return LoadReport(layer=spec.id, path=str(p), format=src.format, mode=mode, source_layer=src.layer_name,
                          source_crs="", crs_origin="", read=0, written=0, preset=opts.preset, where=where)
    if src.count == 0 and mode == "replace":
        raise LoadFailed(f"{p.name!r} has no features; refusing to replace layer {spec.id!r} with nothing")
    fields = list(src.fields)
    tag_keys = [k for k in target.map if k not in src.fields] if "other_tags" in src.fields else []
    mapping = {k: v for k, v in target.map.items() if not target.lenient_map or k in src.fields or k in tag_keys}
    plan = plan_fields(fields + tag_keys, spec, mapping)
    typed_defaults = {**plan.defaults, **_typed_defaults(spec, target.set)}
    rules = RULES.get(spec.id, {})
    covered = set(typed_defaults) | set(plan.matches.values())
    for _ in range(2):  # a rule covers its column when what it needs is there (height ⇄ floors)
        covered |= {r["column"] for r in rules.get("derive", []) if set(r.get("needs", [])) <= covered}
    if target.code_from is not None or target.code_pattern is not None:
        covered.add("code")
    missing = [c for c in plan.missing_required if c not in covered]
    if missing:
        raise LoadFailed(
            f"required columns of layer {spec.id!r} have no source field: {', '.join(missing)}; "
            "map fields to them with mapping= (--map SRC=DST), give a default with defaults= (--set COL=VALUE)"
            + (" or make codes with code_from=/code_pattern= (--code-from FIELD, --code-pattern 'B-{n:06d}')"
               if "code" in missing else ""),
            detail={"missing_columns": missing, "source_fields": fields, "matched": plan.matches},
        )
    if target.code_pattern is not None:
        check_code_pattern(target.code_pattern, fields)
    if target.code_from is not None and target.code_from.lower() not in {f.lower() for f in fields}:
        raise InvalidParameter(f"code_from names field {target.code_from!r}, which the file does not have",
                               detail={"source_fields": fields})
    source_crs = resolve_source_crs(src.crs, opts.crs, src.format)
    # an append checks each batch's codes against the stored ones through the unique index (not by
    # reading every stored code: that grew with the layer, 2 M codes for a city)
    check_stored = mode == "append" and "code" in spec.table.c
    seen: dict[Any, int] = {}
    deleted = 0
    if mode == "replace":
        deleted = store.write(spec.id, [], mode="replace", conn=conn).deleted
    read = written = rejected_count = repaired_count = 0
    rejected: list[dict[str, Any]] = []
    repaired: list[dict[str, Any]] = []
    counts = FillCounts()
    for batch in stream.batches():
        if tag_keys:
            _expand_tags(batch.fields, tag_keys)
        errors = _RowErrors(batch.count)
        errors.add_many(batch.row_errors)
        batch_repaired: list[dict[str, Any]] = []
        geoms = _prepare_geometries(batch, spec, source_crs, opts.on_invalid, errors, batch_repaired)
        repaired.extend({"row": r["row"] + batch.offset, "reason": r["reason"]}
                        for r in batch_repaired[: max(0, MAX_LISTED - len(repaired))])
        repaired_count += len(batch_repaired)
        columns = _fill_columns(batch, spec, plan, target, typed_defaults, geoms, errors, counts, settings)
        existing = _stored_codes(conn, spec, columns.get("code")) if check_stored else set()
        _check_codes(spec, columns.get("code"), seen, existing, batch.offset, errors)
        _check_required(spec, columns, errors)
        bad = errors.mask()
        rejected_count += int(bad.sum())
        rejected.extend(errors.listing(MAX_LISTED - len(rejected), offset=batch.offset))
        read += batch.count
        if rejected_count > opts.max_rejects:
            allowed = f" (max_rejects={opts.max_rejects})" if opts.max_rejects else ""
            first = rejected[0]
            so_far = "" if stream.total is None or read >= stream.total else f" (stopped after reading {read})"
            raise LoadFailed(
                f"{rejected_count} of {stream.total or read} rows rejected{allowed}{so_far}; nothing was "
                f"written. First: row {first['row']}: {first['reason']}",
                detail={"rejected": rejected, "rejected_count": rejected_count, "read": read, "layer": spec.id},
            )
        keep = np.flatnonzero(~bad)
        rows = _rows(columns, {}, geoms, keep)
        try:
            written += store.write(spec.id, rows, mode="append", conn=conn).written
        except _DRIVER_ERRORS as exc:
            orig = getattr(exc, "orig", None) or exc
            msg = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
            raise LoadFailed(f"the database refused the load ({msg}); nothing was written",
                             detail={"database_error": str(orig)}) from exc
        except InvalidGeometry as exc:
            raise LoadFailed(f"{exc.message}; nothing was written") from exc
        del rows, columns, geoms
        if opts.progress is not None:
            opts.progress(read, stream.total)
    if mode == "replace" and written == 0:
        # max_rejects let every row be skipped: a replace would only empty the layer
        first = rejected[0] if rejected else {"row": None, "reason": "no rows"}
        raise LoadFailed(
            f"all {read} rows rejected; refusing to replace layer {spec.id!r} with nothing "
            f"(nothing was written). First: row {first['row']}: {first['reason']}",
            detail={"rejected": rejected, "rejected_count": rejected_count, "read": read, "accepted": 0},
        )
    return LoadReport(
        layer=spec.id, path=str(p), format=src.format, mode=mode, source_layer=src.layer_name,
        source_crs=source_crs.label, crs_origin=source_crs.origin, read=read, written=written,
        deleted=deleted, repaired_count=repaired_count, repaired=repaired[:MAX_LISTED],
        rejected_count=rejected_count, rejected=rejected[:MAX_LISTED], field_mapping=plan.matches,
        skipped_fields=plan.skipped + list(src.geometry_fields), defaults=typed_defaults,
        derived=counts.derived, defaulted=counts.defaulted, converted=counts.converted,
        converted_examples=counts.converted_examples, preset=opts.preset, where=where,
        seconds=round(time.perf_counter() - t0, 3),
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


def _fill_columns(src: SourceData, spec: LayerSpec, plan: FieldPlan, target: Target, defaults: dict[str, Any],
                 geoms: np.ndarray, errors: _RowErrors, counts: FillCounts,
                 settings: TwinSettings) -> dict[str, list[Any]]:
    """Convert the mapped source fields, then derive, default and code what is still empty."""
    n = src.count
    parse = RULES.get(spec.id, {}).get("parse", {})
    columns: dict[str, list[Any]] = {}
    for src_name, col_name in plan.matches.items():
        raw = src.fields[src_name]
        if col_name in target.values:
            raw = _translate(raw, target.values[col_name])
        if col_name in parse:
            raw, rewritten = parse_column(raw, parse[col_name])
            if rewritten:
                counts.converted[col_name] = counts.converted.get(col_name, 0) + len(rewritten)
                room = max(0, 20 - len(counts.converted_examples))
                counts.converted_examples.extend(
                    {"row": src.offset + i + 1, "column": col_name, "value": str(src.fields[src_name][i])[:60],
                     "as": raw[i]} for i in rewritten[:room])
        values, errs = convert_column(raw, spec.table.c[col_name])
        errors.add_many(errs)
        columns[col_name] = values
    ctx = Context(columns, geoms, settings.storey_height_m, frozenset(plan.matches.values()))
    derive(spec.id, ctx, n, counts)
    if defaults:
        apply_defaults(defaults, columns, n, counts)
        derive(spec.id, ctx, n, counts)
    if target.code_from is not None or target.code_pattern is not None:
        codes = columns.setdefault("code", [None] * n)
        errors.add_many(make_codes(target.code_pattern, target.code_from, src.fields, n, src.offset, codes, counts))
    return columns


def _translate(values: np.ndarray, table: dict[str, Any]) -> np.ndarray:
    """Source values through a preset's value table (``"*"``: every other non-empty value)."""
    other = table.get("*")
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out[i] = None
            continue
        key = str(v).strip()
        out[i] = table[key] if key in table else (other if other is not None else v)
    return out


def _typed_defaults(spec: LayerSpec, given: dict[str, Any]) -> dict[str, Any]:
    """``{"use": "unknown", "floors": "1"}`` as column-typed values; a bad column or value is a 4xx."""
    out: dict[str, Any] = {}
    for col_name, value in given.items():
        if col_name not in spec.table.c or col_name in ("id", "geom"):
            raise InvalidParameter(f"default for {col_name!r}: not a column of layer {spec.id!r}",
                                   detail={"columns": [c.name for c in spec.property_columns]})
        arr = np.array([value], dtype=object)
        parse = RULES.get(spec.id, {}).get("parse", {}).get(col_name)
        if parse:
            arr, _bad = parse_column(arr, parse)
        values, errs = convert_column(arr, spec.table.c[col_name])
        if errs or values[0] is None:
            raise InvalidParameter(f"default {col_name}={value!r} does not fit the column"
                                   + (f": {errs[0]}" if errs else ""))
        out[col_name] = values[0]
    return out


_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')


def _expand_tags(fields: dict[str, np.ndarray], keys: list[str]) -> None:
    """OSM tags GDAL keeps in ``other_tags`` (``"building:levels"=>"5","height"=>"12 m"``) as fields of their own."""
    tags = fields["other_tags"]
    parsed = [dict(_HSTORE.findall(t)) if isinstance(t, str) else {} for t in tags]
    for k in keys:
        fields[k] = np.array([d.get(k) for d in parsed], dtype=object)


def _stored_codes(conn: Any, spec: LayerSpec, codes: list[Any] | None, chunk: int = 5_000) -> set[Any]:
    """The codes among ``codes`` that the layer already holds (index look-ups, ``chunk`` at a time)."""
    wanted = [str(c) for c in dict.fromkeys(codes or ()) if c is not None]
    col = spec.table.c.code
    found: set[Any] = set()
    for i in range(0, len(wanted), chunk):
        found.update(conn.execute(select(col).where(col.in_(wanted[i : i + chunk]))).scalars())
    return found


def _check_codes(spec: LayerSpec, codes: list[Any] | None, seen: dict[Any, int], existing: set[Any], offset: int,
                 errors: _RowErrors) -> None:
    """Codes are unique per layer: duplicates within the file (across batches), and codes already stored."""
    if codes is None:
        return
    for i, c in enumerate(codes):
        if c is None:
            continue
        if c in seen:
            errors.add(i, f"duplicate code {c!r} (also row {seen[c] + 1})")
        elif c in existing:
            errors.add(i, f"code {c!r} already exists in layer {spec.id!r}")
        else:
            seen[c] = offset + i


def _check_required(spec: LayerSpec, columns: dict[str, list[Any]], errors: _RowErrors) -> None:
    for col_name, values in columns.items():
        col = spec.table.c[col_name]
        if col.nullable or col_name == "id":
            continue
        for i in np.flatnonzero(null_mask(values)):
            if int(i) not in errors.reasons:
                errors.add(int(i), f"required column {col_name!r} is empty (the source has no value and no rule "
                                   "or default made one)")


def _rows(columns: dict[str, list[Any]], defaults: dict[str, Any], geoms: np.ndarray,
          keep: np.ndarray) -> list[dict[str, Any]]:
    names = list(columns) + list(defaults) + ["geom"]
    n = len(geoms)
    const = [[v] * n for v in defaults.values()]
    series = [*columns.values(), *const, list(geoms)]
    if len(keep) == n:
        return [dict(zip(names, vals, strict=True)) for vals in zip(*series, strict=True)]
    return [dict(zip(names, (s[i] for s in series), strict=True)) for i in keep.tolist()]


__all__ = ["LoadReport", "load_file", "load_preset", "MAX_LISTED", "Progress"]
