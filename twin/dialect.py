"""The backend differences, in one place: spatial index use, bulk insert, extents.

Everything above asks :class:`SpatialDialect`; nothing else branches on
``engine.dialect.name``. PostGIS gets COPY for bulk loads and GiST-backed
``ST_Intersects``; SpatiaLite gets its R*Tree index table joined explicitly,
because SpatiaLite functions do not use the index on their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg
import shapely
from sqlalchemy import Column, Table, column, func, literal_column, select, table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from twin import casei
from twin.schema import SRID

BBox = tuple[float, float, float, float]


class SpatialDialect:
    name = "base"

    def bbox_clause(self, tbl: Table, bbox: BBox) -> ColumnElement[bool]:
        raise NotImplementedError

    def bulk_insert(self, conn: Connection, tbl: Table, rows: Sequence[dict[str, Any]]) -> int:
        raise NotImplementedError

    def extent(self, conn: Connection, tbl: Table) -> BBox | None:
        raise NotImplementedError

    def geometry_wkb(self, tbl: Table) -> ColumnElement[bytes]:
        return func.ST_AsBinary(tbl.c.geom)

    def casei(self, expr: Any) -> ColumnElement[str]:
        """``expr`` case-folded as :func:`twin.casei.casei` folds in Python."""
        raise NotImplementedError

    # helpers shared by both
    @staticmethod
    def _insert_columns(tbl: Table, rows: Sequence[dict[str, Any]]) -> list[Column]:
        """Columns present in the rows (``id`` only when given), in table order, geometry last."""
        present = set().union(*(r.keys() for r in rows)) if rows else set()
        return [c for c in tbl.columns if c.name in present and c.name != "geom"]

    @staticmethod
    def _processors(conn: Connection, cols: Sequence[Column]) -> list[Any]:
        return [c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for c in cols]


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


class PostgisDialect(SpatialDialect):
    name = "postgis"

    def casei(self, expr: Any) -> ColumnElement[str]:
        folded = func.lower(expr.collate(casei.POSTGRES_COLLATION))
        return func.normalize(folded, literal_column("NFC"))

    def bbox_clause(self, tbl: Table, bbox: BBox) -> ColumnElement[bool]:
        env = func.ST_MakeEnvelope(*bbox, SRID)
        return func.ST_Intersects(tbl.c.geom, env)

    def bulk_insert(self, conn: Connection, tbl: Table, rows: Sequence[dict[str, Any]]) -> int:
        """COPY the rows in text format; geometry as hex EWKB (SRID 4326)."""
        if not rows:
            return 0
        cols = self._insert_columns(tbl, rows)
        procs = self._processors(conn, cols)
        geoms = shapely.set_srid(shapely.from_wkb(shapely.to_wkb([r["geom"] for r in rows])), SRID)
        hexes = shapely.to_wkb(geoms, hex=True, include_srid=True)
        names = ", ".join(f'"{c.name}"' for c in cols) + (", " if cols else "") + "geom"
        raw = conn.connection.driver_connection  # psycopg.Connection inside this transaction
        assert raw is not None
        sql = f"COPY {tbl.name} ({names}) FROM STDIN"
        try:
            self._copy_rows(raw, sql, rows, cols, procs, hexes)
        except psycopg.errors.IntegrityError as exc:  # same exception type as the SpatiaLite path
            raise IntegrityError(sql, None, exc) from exc
        if any(c.name == "id" for c in cols):  # explicit ids: move the sequence past them
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{tbl.name}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {tbl.name}))"
            )
        return len(rows)

    @staticmethod
    def _copy_rows(raw: Any, sql: str, rows: Sequence[dict[str, Any]], cols: Sequence[Column],
                   procs: Sequence[Any], hexes: Sequence[str]) -> None:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row, hexgeom in zip(rows, hexes, strict=True):
                values = []
                for c, proc in zip(cols, procs, strict=True):
                    v = _utc(row.get(c.name))
                    if proc is not None and v is not None and not isinstance(v, (bool, int, float, dt.date)):
                        v = proc(v)
                    values.append(v)
                values.append(hexgeom)
                copy.write_row(values)

    def extent(self, conn: Connection, tbl: Table) -> BBox | None:
        e = select(func.ST_Extent(tbl.c.geom).label("e")).subquery()
        row = conn.execute(
            select(func.ST_XMin(e.c.e), func.ST_YMin(e.c.e), func.ST_XMax(e.c.e), func.ST_YMax(e.c.e))
        ).one()
        return None if row[0] is None else (row[0], row[1], row[2], row[3])


class SpatialiteDialect(SpatialDialect):
    name = "spatialite"

    def casei(self, expr: Any) -> ColumnElement[str]:
        return getattr(func, casei.SQLITE_FUNCTION)(expr)

    @staticmethod
    def _index(tbl: Table):  # noqa: ANN205 - a lightweight table clause
        return table(f"idx_{tbl.name}_geom", column("pkid"), column("xmin"), column("xmax"),
                     column("ymin"), column("ymax"))

    def bbox_clause(self, tbl: Table, bbox: BBox) -> ColumnElement[bool]:
        minx, miny, maxx, maxy = bbox
        idx = self._index(tbl)
        candidates = select(idx.c.pkid).where(
            idx.c.xmin <= maxx, idx.c.xmax >= minx, idx.c.ymin <= maxy, idx.c.ymax >= miny
        )
        env = func.BuildMbr(minx, miny, maxx, maxy, SRID)
        return tbl.c.id.in_(candidates) & (func.ST_Intersects(tbl.c.geom, env) == 1)

    def bulk_insert(self, conn: Connection, tbl: Table, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        cols = self._insert_columns(tbl, rows)
        procs = self._processors(conn, cols)
        wkbs = shapely.to_wkb([r["geom"] for r in rows])
        names = ", ".join(f'"{c.name}"' for c in cols) + (", " if cols else "") + "geom"
        marks = ", ".join("?" for _ in cols) + (", " if cols else "") + f"GeomFromWKB(?, {SRID})"
        params = []
        for row, wkb in zip(rows, wkbs, strict=True):
            values = []
            for c, proc in zip(cols, procs, strict=True):
                v = _utc(row.get(c.name))
                values.append(proc(v) if proc is not None and v is not None else v)
            values.append(wkb)
            params.append(tuple(values))
        conn.exec_driver_sql(f"INSERT INTO {tbl.name} ({names}) VALUES ({marks})", params)
        return len(rows)

    def extent(self, conn: Connection, tbl: Table) -> BBox | None:
        idx = self._index(tbl)
        row = conn.execute(
            select(func.min(idx.c.xmin), func.min(idx.c.ymin), func.max(idx.c.xmax), func.max(idx.c.ymax))
        ).one()
        return None if row[0] is None else (row[0], row[1], row[2], row[3])


def dialect_for(engine: Engine | Connection) -> SpatialDialect:
    name = engine.dialect.name
    if name == "postgresql":
        return PostgisDialect()
    if name == "sqlite":
        return SpatialiteDialect()
    raise ValueError(f"unsupported database dialect {name!r}")


__all__ = ["BBox", "SpatialDialect", "PostgisDialect", "SpatialiteDialect", "dialect_for"]
