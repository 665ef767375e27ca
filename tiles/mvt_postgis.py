"""MVT encoding pushed into PostGIS: one SQL statement per (composite) tile.

Each layer is ``ST_AsMVT`` over ``ST_AsMVTGeom`` of its rows that hit the buffered
tile envelope; the per-layer results are concatenated with ``||`` (an MVT is a
sequence of layer messages, so concatenation is a valid multi-layer tile).

Where migration 0003 added the stored ``geom_3857`` column (with a GiST index) the
query filters and encodes that column; otherwise it transforms on the fly.

The statements run on this module's own psycopg connections, one per worker
thread (no pool checkout or pre-ping per tile), as server-side prepared
statements; every connection carries the PostGIS statement timeout, and a cut
query surfaces as :class:`twin.errors.StoreUnavailable` (HTTP 503).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg
from sqlalchemy import Date, DateTime
from sqlalchemy.engine import Engine

from tiles.mvt import LayerPlan
from tiles.tms import BUFFER, EXTENT, Tile
from twin.errors import StoreUnavailable

log = logging.getLogger("twin.tiles")


def _column_sql(col) -> str:  # noqa: ANN001 - a SQLAlchemy Column
    name = f't."{col.name}"'
    if isinstance(col.type, DateTime):
        return f"""to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS "{col.name}\""""
    if isinstance(col.type, Date):
        return f'{name}::text AS "{col.name}"'
    return name


#: Zoom of the pre-snapped building outlines (``buildings.geom_mvt14``, migration 0006).
PRESNAPPED_ZOOM = 14


def layer_sql(plan: LayerPlan, index: int, projected: bool, feature_cap: int, *, presnapped: bool = False) -> str:
    """The ``(SELECT ST_AsMVT(...))`` sub-select of one layer; parameters ``z``, ``x``, ``y``, ``aN``, ``lN``, ``sN``,
    ``eN_K`` (the values left out at this zoom).

    ``presnapped``: the tile is at :data:`PRESNAPPED_ZOOM` and the layer has ``geom_mvt14``; a
    feature wholly inside the tile is then just translated from the global z14 grid into the
    tile (no per-feature ``ST_AsMVTGeom``, about half the database time of a dense z14 tile);
    features crossing the edge still go through ``ST_AsMVTGeom`` to be clipped.
    """
    spec = plan.spec
    tbl = plan.source
    cols = [_column_sql(tbl.c[name]) for name in spec.tile_properties if name in tbl.c]
    env = "ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int)"
    margin = plan.margin / EXTENT
    if projected and plan.table is None:
        geom = "t.geom_3857"
        where = [f"t.geom_3857 && ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, margin => {margin})"]
    else:
        geom = "ST_Transform(t.geom, 3857)"
        where = [
            f"t.geom && ST_Transform(ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, margin => {margin}), 4326)"
        ]
    if "zoom" in tbl.c:  # generalised per zoom (building blocks)
        where.append("t.zoom = %(z)s::int")
    for k, (col, _) in enumerate(plan.exclude):
        where.append(f"t.{tbl.c[col].name} IS DISTINCT FROM %(e{index}_{k})s")
    if plan.min_area > 0:
        where.append(f"ST_Area({geom}) >= %(a{index})s::float8")
    if plan.min_length > 0:
        where.append(f"ST_Length({geom}) >= %(l{index})s::float8")
    shape = f"ST_Simplify({geom}, %(s{index})s::float8, true)" if plan.simplify > 0 else geom
    mvt_geom = f"ST_AsMVTGeom({shape}, {env}, {EXTENT}, {BUFFER}, true)"
    if presnapped:
        mvt_geom = (f"CASE WHEN t.geom_3857 @ {env} THEN ST_Translate(t.geom_mvt14, "
                    f"-(%(x)s::float8 * {EXTENT}), -(%(y)s::float8 * {EXTENT})) ELSE {mvt_geom} END")
    select_cols = ", ".join(["t.id", *cols, f"{mvt_geom} AS geom"])
    return (
        f"(SELECT COALESCE(ST_AsMVT(q, '{spec.id}', {EXTENT}, 'geom', 'id'), ''::bytea) FROM ("
        f"SELECT {select_cols} FROM {tbl.name} t WHERE {' AND '.join(where)} LIMIT {int(feature_cap)}"
        f") q WHERE q.geom IS NOT NULL)"
    )


class PostgisTileEncoder:
    """Encodes tiles with ``ST_AsMVT`` on thread-local psycopg connections."""

    def __init__(self, engine: Engine, *, statement_timeout_ms: int = 15_000):
        url = engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._timeout_ms = int(statement_timeout_ms)
        self._local = threading.local()
        self._all: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._sql_cache: dict[tuple, str] = {}
        self.projected = self._has_projected_column()
        self.presnapped_layers = self._presnapped_layers() if self.projected else set()

    # --- connections -----------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                # one tile = one short query: no parallel workers (they cost more than they save
                # under concurrent load) and no JIT (compiling takes longer than the query)
                options=f"-c statement_timeout={self._timeout_ms} -c max_parallel_workers_per_gather=0 -c jit=off",
                application_name="twin-tiles",
                connect_timeout=10,
            )
        except psycopg.OperationalError as exc:
            raise StoreUnavailable("database unreachable", detail=str(exc)) from exc
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self._connect()
        return conn

    def _has_projected_column(self) -> bool:
        """True when every layer table has the stored ``geom_3857`` column (migration 0003)."""
        rows = self._conn().execute(
            "SELECT count(DISTINCT table_name) FROM information_schema.columns "
            "WHERE column_name = 'geom_3857' AND table_schema = current_schema()"
        ).fetchone()
        from twin.catalog import LAYERS

        return bool(rows and rows[0] >= len(LAYERS))

    def _presnapped_layers(self) -> set[str]:
        """Layers with the pre-snapped z14 column ``geom_mvt14`` (migration 0006: buildings)."""
        rows = self._conn().execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'geom_mvt14' AND table_schema = current_schema()"
        ).fetchall()
        return {r[0] for r in rows}

    def _presnapped(self, plan: LayerPlan, z: int) -> bool:
        return (z == PRESNAPPED_ZOOM and plan.table is None and plan.simplify == 0
                and plan.id in self.presnapped_layers)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass

    # --- encoding --------------------------------------------------------------
    def sql(self, plans: Sequence[LayerPlan], feature_cap: int, z: int = -1) -> str:
        key = (tuple((p.id, p.min_area > 0, p.min_length > 0, p.simplify > 0, p.margin, p.table is not None,
                      self._presnapped(p, z), tuple(c for c, _ in p.exclude)) for p in plans), feature_cap)
        text = self._sql_cache.get(key)
        if text is None:
            parts = [layer_sql(p, i, self.projected, feature_cap, presnapped=self._presnapped(p, z))
                     for i, p in enumerate(plans)]
            text = "SELECT " + " || ".join(parts)
            self._sql_cache[key] = text
        return text

    def encode(self, tile: Tile, plans: Sequence[LayerPlan], feature_cap: int) -> bytes:
        if not plans:
            return b""
        params: dict[str, float | int | str] = {"z": tile.z, "x": tile.x, "y": tile.y}
        for i, p in enumerate(plans):
            if p.min_area > 0:
                params[f"a{i}"] = p.min_area
            if p.min_length > 0:
                params[f"l{i}"] = p.min_length
            if p.simplify > 0:
                params[f"s{i}"] = p.simplify
            for k, (_, value) in enumerate(p.exclude):
                params[f"e{i}_{k}"] = value
        sql = self.sql(plans, feature_cap, tile.z)
        for attempt in (1, 2):
            conn = self._conn()
            try:
                row = conn.execute(sql, params, prepare=True).fetchone()  # type: ignore[arg-type]
                return bytes(row[0]) if row and row[0] is not None else b""
            except psycopg.errors.QueryCanceled as exc:
                raise StoreUnavailable(
                    f"tile {tile} query cancelled: it took longer than {self._timeout_ms} ms",
                    detail={"tile": str(tile)},
                    code="query_timeout",
                ) from exc
            except psycopg.OperationalError as exc:  # connection lost: reconnect once
                log.warning("tile connection lost (%s); reconnecting", exc)
                self._local.conn = None
                if attempt == 2:
                    raise StoreUnavailable("database unavailable", detail=str(exc)) from exc
        return b""  # pragma: no cover


__all__ = ["PostgisTileEncoder", "layer_sql"]
