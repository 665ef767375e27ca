"""Reading vector files into columns: GeoJSON, GeoPackage, Shapefile (also zipped), CSV, OSM, DXF.

A layer is read in batches of whole columns (no geopandas): one shapely geometry array
and one numpy array per attribute field, so the loader can check and convert
whole columns instead of looping over rows. Geometries are in the file's own CRS
(x = easting / longitude, as files store them).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from twin.errors import InvalidParameter, LoadFailed, UnsupportedFormat

#: File suffix → format name. ``.json`` is read as GeoJSON.
FORMATS = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".shp": "Shapefile",
    ".zip": "Shapefile",
    ".csv": "CSV",
    ".osm": "OSM",
    ".pbf": "OSM",  # extract.osm.pbf
    ".dxf": "DXF",
}

LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度", "东经")
LAT_NAMES = ("lat", "latitude", "y", "纬度", "北纬")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape")


@dataclass
class SourceData:
    """A whole source layer in columns.

    ``geometries`` is a shapely object array (``None`` where a feature has no
    readable geometry); ``fields`` maps source field name → numpy array;
    ``crs`` is the CRS the file declares (``None``: it declares none);
    ``row_errors`` are problems found while reading (0-based row → reason).
    """

    format: str
    layer_name: str | None
    geometries: np.ndarray
    fields: dict[str, np.ndarray]
    crs: str | None
    row_errors: dict[int, str] = field(default_factory=dict)
    geometry_fields: tuple[str, ...] = ()
    offset: int = 0  # row 0 of this batch is feature ``offset`` of the source

    @property
    def count(self) -> int:
        return len(self.geometries)


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFormat(
            f"cannot load {path.name!r}: unknown file type {path.suffix or '(no suffix)'!r}",
            detail={"supported": sorted(FORMATS)},
        )
    return fmt


def read_source(
    path: str | Path,
    *,
    source_layer: str | None = None,
    lon_field: str | None = None,
    lat_field: str | None = None,
    where: str | None = None,
    encoding: str | None = None,
) -> SourceData:
    """Read ``path`` whole. Unreadable, truncated or corrupt files raise :class:`UnsupportedFormat`."""
    stream = open_source(path, source_layer=source_layer, lon_field=lon_field, lat_field=lat_field, where=where,
                         encoding=encoding, batch_rows=None)
    return next(iter(stream.batches()))


@dataclass
class SourceStream:
    """A source layer read in batches of ``batch_rows`` (``None``: all at once).

    ``total`` is the feature count when the driver knows it cheaply (``None``
    otherwise, e.g. OSM); each batch is a :class:`SourceData` whose row 0 is
    feature ``offset`` of the (filtered) layer. The first batch is read when
    the stream opens, so a file that cannot be read fails before anything is
    written, and an empty layer still yields one empty batch.
    """

    path: Path
    format: str
    target: str
    layer: str | None
    where: str | None
    encoding: str | None
    batch_rows: int | None
    total: int | None
    first: SourceData
    csv: bool = False

    def batches(self):  # type: ignore[no-untyped-def]
        yield self.first
        if self.csv or self.batch_rows is None or self.first.count < self.batch_rows:
            return
        offset = self.first.count
        while True:
            batch = _read_ogr(self.path, self.format, self.target, self.layer, self.where, self.encoding,
                              skip=offset, limit=self.batch_rows)
            if batch.count == 0:
                return
            batch.offset = offset
            yield batch
            offset += batch.count
            if batch.count < self.batch_rows:
                return


def open_source(
    path: str | Path,
    *,
    source_layer: str | None = None,
    lon_field: str | None = None,
    lat_field: str | None = None,
    where: str | None = None,
    encoding: str | None = None,
    batch_rows: int | None = None,
) -> SourceStream:
    """Open ``path`` for reading in batches (see :class:`SourceStream`).

    ``where`` is an OGR SQL attribute filter (``building IS NOT NULL``,
    ``Layer IN ('GX', 'GD')`` for a DXF); ``encoding`` overrides the text
    encoding of a Shapefile (``GBK``) when it has no ``.cpg``. OSM files are read
    whole (their driver cannot seek), other formats stream.
    """
    p = Path(path)
    if not p.exists():
        raise LoadFailed(f"file not found: {p}")
    fmt = detect_format(p)
    if fmt == "CSV":
        if where:
            raise InvalidParameter("where applies to GIS files, not CSV")
        first = _read_csv(p, lon_field=lon_field, lat_field=lat_field)
        return SourceStream(p, fmt, str(p), None, None, None, None, first.count, first, csv=True)
    if lon_field or lat_field:
        raise InvalidParameter("lon_field/lat_field apply to CSV files only")
    if encoding:
        try:
            "".encode(encoding)
        except LookupError:
            raise InvalidParameter(f"unknown text encoding {encoding!r} (e.g. GBK, GB18030, UTF-8)") from None
    target = _zip_member(p, source_layer) if p.suffix.lower() == ".zip" else str(p)
    layer = None if p.suffix.lower() == ".zip" else _pick_layer(p, target, source_layer, fmt)
    if fmt == "OSM":
        batch_rows = None
    total: int | None = None
    if fmt != "OSM" and not where:
        try:
            n = int(pyogrio.read_info(target, layer=layer)["features"])
            total = n if n >= 0 else None
        except (DataSourceError, DataLayerError, OSError, RuntimeError, ValueError):
            total = None
    first = _read_ogr(p, fmt, target, layer, where, encoding, skip=0, limit=batch_rows)
    return SourceStream(p, fmt, target, layer, where, encoding, batch_rows, total, first)


def _read_ogr(p: Path, fmt: str, target: str, layer: str | None, where: str | None, encoding: str | None,
              *, skip: int, limit: int | None) -> SourceData:
    kwargs: dict[str, object] = {"datetime_as_string": True}
    if where:
        kwargs["where"] = where
    if encoding:
        kwargs["encoding"] = encoding
    if skip:
        kwargs["skip_features"] = skip
    if limit:
        kwargs["max_features"] = limit
    try:
        meta, _fids, wkb, values = pyogrio.raw.read(target, layer=layer, **kwargs)
    except (DataSourceError, DataLayerError, OSError, RuntimeError, ValueError) as exc:
        if where and ("where" in str(exc).lower() or "sql" in str(exc).lower()):
            raise InvalidParameter(f"the filter {where!r} is not valid for {p.name!r} ({_first_line(exc)})") from exc
        raise UnsupportedFormat(
            f"cannot read {p.name!r} as {fmt}: the file is truncated, corrupt or not {fmt} ({_first_line(exc)})"
        ) from exc
    geoms = shapely.from_wkb(wkb, on_invalid="ignore") if len(wkb) else np.array([], dtype=object)
    fields = {str(name): arr for name, arr in zip(meta["fields"], values, strict=True)}
    if not encoding and fmt == "Shapefile" and str(meta.get("encoding", "")).upper() in ("ISO-8859-1", "LATIN1"):
        _redecode_latin1(fields)
    if fmt == "OSM":
        fields["osm_ref"] = _osm_refs(fields, layer)
    return SourceData(format=fmt, layer_name=layer, geometries=geoms, fields=fields, crs=meta.get("crs"),
                      offset=skip)


def _osm_refs(fields: dict[str, np.ndarray], layer: str | None) -> np.ndarray:
    """A unique OSM reference per feature: ``w123`` (way), ``r45`` (relation), ``n6`` (node).

    GDAL puts a closed way's id in ``osm_way_id`` and a relation's in ``osm_id``
    on the multipolygons layer; the other layers have ``osm_id`` only.
    """
    n = len(next(iter(fields.values()))) if fields else 0
    ids = fields.get("osm_id", np.full(n, None, dtype=object))
    ways = fields.get("osm_way_id", np.full(n, None, dtype=object))
    kind = {"points": "n", "lines": "w", "multilinestrings": "r", "other_relations": "r"}.get(layer or "", "r")
    return np.array([f"w{w}" if w is not None else (f"{kind}{i}" if i is not None else None)
                     for i, w in zip(ids, ways, strict=True)], dtype=object)


def _redecode_latin1(fields: dict[str, np.ndarray]) -> None:
    """A shapefile with no .cpg and no code page in its .dbf is read as Latin-1 by GDAL; Chinese
    shapefiles like that are UTF-8 or GBK. Re-decode the text as UTF-8 if all of it is valid UTF-8,
    else as GB18030 (a superset of GBK)."""
    text = {k: a for k, a in fields.items() if a.dtype == object}
    raw = [v.encode("latin-1") for a in text.values() for v in a if isinstance(v, str) and not v.isascii()]
    if not raw:
        return
    try:
        for b in raw:
            b.decode("utf-8")
        enc = "utf-8"
    except UnicodeDecodeError:
        enc = "gb18030"
    for a in text.values():
        for i, v in enumerate(a):
            if isinstance(v, str) and not v.isascii():
                a[i] = v.encode("latin-1").decode(enc, errors="replace")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _pick_layer(p: Path, target: str, source_layer: str | None, fmt: str) -> str | None:
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(target)]
    except (DataSourceError, OSError, RuntimeError) as exc:
        raise UnsupportedFormat(
            f"cannot read {p.name!r} as {fmt}: the file is truncated, corrupt or not {fmt} ({_first_line(exc)})"
        ) from exc
    if source_layer is not None:
        if source_layer not in layers:
            raise InvalidParameter(f"{p.name!r} has no layer {source_layer!r}", detail={"layers": layers})
        return source_layer
    if len(layers) > 1:
        raise InvalidParameter(
            f"{p.name!r} holds {len(layers)} layers; choose one with source_layer (--source-layer)",
            detail={"layers": layers},
        )
    return layers[0] if layers else None


def _zip_member(p: Path, source_layer: str | None) -> str:
    """The GDAL path of the shapefile inside a .zip (``source_layer`` picks one of several)."""
    try:
        with zipfile.ZipFile(p) as zf:
            shps = [n for n in zf.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX")]
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat(f"cannot read {p.name!r}: not a valid zip archive ({exc})") from exc
    if not shps:
        raise UnsupportedFormat(f"{p.name!r} contains no shapefile (.shp)")
    if source_layer is not None:
        chosen = [n for n in shps if Path(n).stem == source_layer or n == source_layer]
        if not chosen:
            raise InvalidParameter(f"{p.name!r} has no shapefile {source_layer!r}", detail={"layers": shps})
        shps = chosen
    if len(shps) > 1:
        raise InvalidParameter(
            f"{p.name!r} holds {len(shps)} shapefiles; choose one with source_layer (--source-layer)",
            detail={"layers": [Path(n).stem for n in shps]},
        )
    return f"/vsizip/{p.resolve()}/{shps[0]}"


# --- CSV -----------------------------------------------------------------------------


def _decode(raw: bytes, name: str) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UnsupportedFormat(f"cannot read {name!r}: text is neither UTF-8 nor GB18030/GBK")


def _find(headers: list[str], given: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if given is not None:
        for h in headers:
            if h == given or h.lower() == given.lower():
                return h
        raise InvalidParameter(f"CSV has no column {given!r} for {what}", detail={"columns": headers})
    lowered = {h.strip().lower(): h for h in headers}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def _read_csv(p: Path, *, lon_field: str | None, lat_field: str | None) -> SourceData:
    text = _decode(p.read_bytes(), p.name)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise UnsupportedFormat(f"cannot read {p.name!r} as CSV: {exc}") from exc
    if not rows:
        raise UnsupportedFormat(f"{p.name!r} is empty: a CSV needs a header row")
    headers = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    lon = _find(headers, lon_field, LON_NAMES, "longitude")
    lat = _find(headers, lat_field, LAT_NAMES, "latitude")
    wkt = None if (lon and lat) else _find(headers, None, WKT_NAMES, "geometry")
    if not (lon and lat) and not wkt:
        raise UnsupportedFormat(
            f"{p.name!r}: no longitude/latitude columns found (looked for {', '.join(LON_NAMES)} and "
            f"{', '.join(LAT_NAMES)}, or a WKT column); name them with lon_field/lat_field "
            "(--lon-field/--lat-field)",
            detail={"columns": headers},
        )
    n, width = len(body), len(headers)
    errors: dict[int, str] = {}
    cols: list[list[str | None]] = [[None] * n for _ in headers]
    for i, r in enumerate(body):
        if len(r) != width:
            errors[i] = f"has {len(r)} values but the header has {width} columns"
        for j, v in enumerate(r[:width]):
            v = v.strip()
            cols[j][i] = v if v else None
    fields = {h: np.array(c, dtype=object) for h, c in zip(headers, cols, strict=True)}
    if wkt:
        geoms = shapely.from_wkt(fields.pop(wkt), on_invalid="ignore")
        used: tuple[str, ...] = (wkt,)
    else:
        assert lon is not None and lat is not None  # checked above: either WKT or both coordinates
        xs, x_err = _numbers(fields.pop(lon))
        ys, y_err = _numbers(fields.pop(lat))
        for bad in np.flatnonzero(x_err | y_err).tolist():
            errors.setdefault(bad, f"{lon}/{lat} are not numbers: {body[bad][headers.index(lon)]!r}, "
                                   f"{body[bad][headers.index(lat)]!r}")
        geoms = shapely.points(xs, ys)
        geoms[x_err | y_err] = None
        used = (lon, lat)
    return SourceData(format="CSV", layer_name=None, geometries=np.asarray(geoms, dtype=object), fields=fields,
                      crs=None, row_errors=errors, geometry_fields=used)


def _numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse strings to float64; returns (values with NaN where bad, bad mask)."""
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            bad[i] = True
    bad |= ~np.isfinite(out)
    return out, bad
