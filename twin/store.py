"""The spatial store: one interface over PostGIS and SpatiaLite.

Callers (HTTP routers, tiles, the loader, the CLI) ask the store; it asks
:mod:`twin.dialect` for the few things that differ per backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Boolean, Date, DateTime, Float, Integer, and_, delete, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.expression import false

from twin import cql, migrate
from twin.catalog import LAYERS, LayerSpec, get_layer
from twin.db import make_engine, make_routed_engine
from twin.dialect import BBox, SpatialDialect, dialect_for
from twin.errors import FeatureNotFound, InvalidParameter, StoreUnavailable
from twin.geometry import coerce_array
from twin.int_range import fits_column
from twin.replicas import ReadRouter, primary_only
from twin.settings import TwinSettings, get_settings
from twin.versioning import BULK_ROWS, bulk_change, layer_versions


@dataclass(frozen=True)
class FeatureQuery:
    """A feature query. ``bbox`` is CRS84 lon/lat; ``datetime`` bounds are inclusive."""

    layer: str
    bbox: BBox | None = None
    filters: dict[str, str] = field(default_factory=dict)
    datetime: tuple[dt.datetime | None, dt.datetime | None] | None = None
    limit: int = 100
    offset: int = 0
    properties: Sequence[str] | None = None
    #: a parsed CQL2 filter (:func:`twin.cql.parse`), ANDed with everything above
    filter: cql.CqlFilter | None = None
    #: sort keys (:func:`twin.cql.parse_sortby`); ``id`` always breaks ties
    sortby: tuple[cql.SortKey, ...] = ()


@dataclass
class FeaturePage:
    """Rows of one query: ids, property dicts and CRS84 geometries (shapely array)."""

    ids: list[int]
    properties: list[dict[str, Any]]
    geometries: np.ndarray
    number_matched: int

    @property
    def number_returned(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows a replace deleted first, and rows inserted."""

    deleted: int
    written: int


@dataclass(frozen=True)
class LayerSummary:
    count: int
    extent: BBox | None
    version: int
    temporal_extent: tuple[dt.datetime | None, dt.datetime | None] | None = None


def _aware(value: Any) -> Any:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class SpatialStore:
    """Access to the layer tables of one database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect: SpatialDialect = dialect_for(engine)
        self._summary_cache: dict[str, tuple[int, LayerSummary]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: TwinSettings | None = None) -> SpatialStore:
        s = settings or get_settings()
        if s.read_urls:  # reads may go to streaming replicas (twin/replicas.py)
            return cls(make_routed_engine(
                s.effective_database_url, s.read_urls, statement_timeout_ms=s.statement_timeout_ms,
                check_s=s.replica_check_s, retry_s=s.replica_retry_s, max_lag_s=s.replica_max_lag_s))
        return cls(make_engine(s.effective_database_url, statement_timeout_ms=s.statement_timeout_ms))

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> SpatialStore:
        return cls(make_engine(url, **kw))

    # --- schema and health -------------------------------------------------
    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    @property
    def read_router(self) -> ReadRouter | None:
        """The read-replica router when reads may go to replicas (TWIN_DATABASE_READ_URLS), else ``None``."""
        return getattr(self.engine, "router", None)

    def ping(self) -> None:
        """Check the primary (replicas are checked by :attr:`read_router`)."""
        try:
            with primary_only(), self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError) as exc:
            raise StoreUnavailable("database unreachable", detail=str(exc.orig)) from exc

    # --- versions and summaries --------------------------------------------
    def versions(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return layer_versions(conn)

    def version(self, layer: str) -> int:
        return self.versions().get(get_layer(layer).id, 0)

    def summary(self, layer: str) -> LayerSummary:
        """Count, extent and temporal extent of ``layer``; recomputed only when its version moves."""
        spec = get_layer(layer)
        version = self.version(spec.id)
        cached = self._summary_cache.get(spec.id)
        if cached and cached[0] == version:
            return cached[1]
        tbl = spec.table
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(tbl)).scalar_one()
            extent = self.dialect.extent(conn, tbl) if count else None
            temporal = None
            if spec.temporal:
                col = tbl.c[spec.temporal]
                lo, hi = conn.execute(select(func.min(col), func.max(col))).one()
                temporal = (_aware(lo), _aware(hi))
        summary = LayerSummary(count=count, extent=extent, version=version, temporal_extent=temporal)
        with self._lock:
            self._summary_cache[spec.id] = (version, summary)
        return summary

    # --- reading --------------------------------------------------------------
    def query(self, q: FeatureQuery) -> FeaturePage:
        spec = get_layer(q.layer)
        tbl = spec.table
        where = self._where(spec, q)
        prop_cols = self._selected_columns(spec, q.properties)
        order = cql.order_by(q.sortby, tbl, queryables(spec), spec.id) if q.sortby else [tbl.c.id]
        stmt = (
            select(tbl.c.id, *prop_cols, self.dialect.geometry_wkb(tbl).label("wkb"))
            .where(*where)
            .order_by(*order)
            .limit(q.limit)
            .offset(q.offset)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            if q.offset == 0 and len(rows) < q.limit:
                matched = len(rows)
            else:
                matched = conn.execute(select(func.count()).select_from(tbl).where(*where)).scalar_one()
        return self._page(rows, prop_cols, matched)

    def get(self, layer: str, feature_id: int) -> FeaturePage:
        """One feature by id; :class:`FeatureNotFound` also for ids no row can have (out of the id column's range)."""
        spec = get_layer(layer)
        tbl = spec.table
        if not fits_column(feature_id, tbl.c.id.type, self.dialect.name):
            raise FeatureNotFound(f"no feature {feature_id} in layer {spec.id!r}",
                                  detail={"reason": "id outside the range of the id column"})
        prop_cols = spec.property_columns
        stmt = select(tbl.c.id, *prop_cols, self.dialect.geometry_wkb(tbl).label("wkb")).where(
            tbl.c.id == feature_id
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            raise FeatureNotFound(f"no feature {feature_id} in layer {spec.id!r}")
        return self._page(rows, prop_cols, 1)

    @staticmethod
    def _page(rows: Sequence[Any], prop_cols: Sequence[Any], matched: int) -> FeaturePage:
        names = [c.name for c in prop_cols]
        ids = [r[0] for r in rows]
        props = [{n: _aware(v) for n, v in zip(names, r[1:-1], strict=True)} for r in rows]
        geoms = shapely.from_wkb([bytes(r[-1]) for r in rows]) if rows else np.array([], dtype=object)
        return FeaturePage(ids=ids, properties=props, geometries=geoms, number_matched=matched)

    @staticmethod
    def _selected_columns(spec: LayerSpec, properties: Sequence[str] | None) -> list[Any]:
        cols = spec.property_columns
        if properties is None:
            return cols
        by_name = {c.name: c for c in cols}
        unknown = [p for p in properties if p not in by_name]
        if unknown:
            raise InvalidParameter(
                f"unknown properties {unknown} for layer {spec.id!r}", detail={"queryables": sorted(by_name)}
            )
        return [by_name[p] for p in properties]

    def _where(self, spec: LayerSpec, q: FeatureQuery) -> list[Any]:
        tbl = spec.table
        where: list[Any] = []
        if q.bbox is not None:
            where.append(self.dialect.bbox_clause(tbl, q.bbox))
        for name, raw in q.filters.items():
            col = tbl.c.get(name)
            if col is None or name == "geom":
                raise InvalidParameter(
                    f"unknown property {name!r} for layer {spec.id!r}",
                    detail={"queryables": sorted(queryables(spec))},
                )
            where.append(_equals(col, raw, self.dialect.name))
        if q.datetime is not None:
            if not spec.temporal:
                raise InvalidParameter(f"layer {spec.id!r} has no time dimension; datetime does not apply")
            col = tbl.c[spec.temporal]
            start, end = q.datetime
            if start is not None:
                where.append(col >= start.astimezone(dt.UTC))
            if end is not None:
                where.append(col <= end.astimezone(dt.UTC))
        if q.filter is not None:
            where.append(cql.to_sql(q.filter, tbl, queryables(spec), self.dialect, spec.id))
        return [and_(*where)] if where else []

    # --- writing --------------------------------------------------------------
    def write_features(
        self,
        layer: str,
        rows: Sequence[dict[str, Any]],
        *,
        mode: str = "append",
        conn: Connection | None = None,
        batch_size: int = 20_000,
    ) -> int:
        """Insert ``rows`` (column values + ``geom`` as a shapely geometry in EPSG:4326); the count written.

        ``mode='replace'`` empties the layer first. Runs in one transaction (the
        given ``conn``'s, or a new one): a failure leaves the layer as it was.
        See :meth:`write` for what a replace deleted.
        """
        return self.write(layer, rows, mode=mode, conn=conn, batch_size=batch_size).written

    def write(
        self,
        layer: str,
        rows: Sequence[dict[str, Any]],
        *,
        mode: str = "append",
        conn: Connection | None = None,
        batch_size: int = 20_000,
    ) -> WriteResult:
        """:meth:`write_features`, reporting also how many stored rows a replace deleted.

        A replace with ``rows`` empty empties the layer: that is what it was asked.
        Callers that take rows from user input (the loader) refuse that case first.
        """
        if mode not in ("append", "replace"):
            raise InvalidParameter(f"mode must be 'append' or 'replace', not {mode!r}")
        spec = get_layer(layer)
        if conn is None:
            with self.engine.begin() as own:
                return self.write(layer, rows, mode=mode, conn=own, batch_size=batch_size)
        if rows and any(r["geom"].geom_type != spec.geometry_type for r in rows):
            geoms = coerce_array([r["geom"] for r in rows], spec.geometry_type)
            rows = [{**r, "geom": g} for r, g in zip(rows, geoms, strict=True)]
        # a replace or a large load is one whole-layer change (every tile of the layer
        # misses once); a few rows are logged feature by feature, so only their tiles miss
        bulk = mode == "replace" or len(rows) > BULK_ROWS
        with bulk_change(conn, spec.id) if bulk else contextlib.nullcontext():
            deleted = 0
            if mode == "replace":
                deleted = max(0, conn.execute(delete(spec.table)).rowcount or 0)
            written = 0
            for start in range(0, len(rows), batch_size):
                written += self.dialect.bulk_insert(conn, spec.table, rows[start : start + batch_size])
        return WriteResult(deleted=deleted, written=written)

    def clear(self, layers: Iterable[str] | None = None) -> None:
        """Empty ``layers`` (default: all); each is logged as one whole-layer change."""
        with self.engine.begin() as conn:
            for name in layers or LAYERS:
                with bulk_change(conn, get_layer(name).id):
                    conn.execute(delete(get_layer(name).table))


def queryables(spec: LayerSpec) -> dict[str, str]:
    """Filterable properties of a layer with their JSON-schema type names."""
    out: dict[str, str] = {}
    for c in spec.property_columns:
        t = c.type
        if isinstance(t, Boolean):
            out[c.name] = "boolean"
        elif isinstance(t, Integer):
            out[c.name] = "integer"
        elif isinstance(t, Float):
            out[c.name] = "number"
        elif isinstance(t, (DateTime, Date)):
            out[c.name] = "string"
        elif getattr(t, "python_type", None) is str or t.__class__.__name__ in ("String", "Text"):
            out[c.name] = "string"
    return out


def _equals(col: Any, raw: str, backend: str) -> Any:
    """``col = raw`` with ``raw`` read as the column's type; an integer the column cannot hold on ``backend``
    matches nothing (it is never sent to the database)."""
    value = _cast_filter(col, raw)
    if isinstance(col.type, Integer) and not isinstance(value, bool) and not fits_column(value, col.type, backend):
        return false()
    return col == value


def _cast_filter(col: Any, raw: str) -> Any:
    """The ``{property}=raw`` value as the column's Python type; :class:`InvalidParameter` if it is not one."""
    from twin.params import parse_date, parse_datetime, parse_float, parse_int

    t = col.type
    try:
        if isinstance(t, Boolean):
            low = raw.lower()
            if low not in ("true", "false", "1", "0"):
                raise ValueError
            return low in ("true", "1")
        if isinstance(t, Integer):
            return parse_int(raw, col.name)
        if isinstance(t, Float):
            return parse_float(raw, col.name)
        if isinstance(t, DateTime):
            return parse_datetime(raw).astimezone(dt.UTC)
        if isinstance(t, Date):
            return parse_date(raw)
    except (ValueError, InvalidParameter):
        raise InvalidParameter(f"filter {col.name}={raw[:60]!r} is not a valid {t.__class__.__name__.lower()}") from None
    if t.__class__.__name__ == "JSON":
        raise InvalidParameter(f"property {col.name!r} holds a list or object and cannot be filtered by value")
    if "\x00" in raw:  # PostgreSQL text cannot hold NUL; SQLite could: refuse on both alike
        raise InvalidParameter(f"filter {col.name}=… contains a NUL character")
    return raw
