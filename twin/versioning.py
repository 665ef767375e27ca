"""Per-layer data versions and the change log, maintained by database triggers.

Migration 0002 installed triggers that bump ``layer_versions`` on every write;
migration 0006 replaces them with triggers that bump the version *and* record the
extent of what changed in ``change_log`` (same transaction, whoever writes), so a
tile cache can invalidate exactly the tiles an edit touches (:mod:`twin.changes`).

The DDL differs per backend (PostgreSQL: one statement-level trigger function with
transition tables; SQLite: row-level triggers, the only kind it has), so it lives
here, next to the reader, rather than in the migration.

Bulk writes log one whole-layer change instead of one row per feature: on
PostgreSQL any statement touching more than :data:`BULK_ROWS` rows does so by
itself; twin's own loads say so with :func:`bulk_change` (a transaction-local
setting on PostgreSQL, the ``change_log_state.bulk`` flag on SQLite, whose row
triggers cannot count a statement's rows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from twin.schema import LayerVersion

#: A statement changing more rows than this logs one whole-layer change (PostgreSQL).
BULK_ROWS = 500
_UTC_NOW_PG = """to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_UTC_NOW_SQLITE = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def version_triggers_sql(dialect: str, layers: Iterable[str]) -> list[str]:
    layers = list(layers)
    seed = ", ".join(f"('{name}', 1)" for name in layers)
    if dialect == "postgresql":
        stmts = [
            f"INSERT INTO layer_versions (layer, version) VALUES {seed} ON CONFLICT (layer) DO NOTHING",
            """
            CREATE OR REPLACE FUNCTION twin_bump_layer_version() RETURNS trigger AS $$
            BEGIN
              INSERT INTO layer_versions (layer, version, updated_at)
              VALUES (TG_TABLE_NAME, 2, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
              ON CONFLICT (layer) DO UPDATE
                SET version = layer_versions.version + 1, updated_at = EXCLUDED.updated_at;
              RETURN NULL;
            END $$ LANGUAGE plpgsql
            """,
        ]
        for name in layers:
            stmts.append(
                f"CREATE TRIGGER trg_{name}_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {name} FOR EACH STATEMENT EXECUTE FUNCTION twin_bump_layer_version()"
            )
        return stmts
    if dialect == "sqlite":
        stmts = [f"INSERT OR IGNORE INTO layer_versions (layer, version) VALUES {seed}"]
        for name in layers:
            for when in ("INSERT", "UPDATE", "DELETE"):
                stmts.append(
                    f"CREATE TRIGGER trg_{name}_version_{when.lower()} AFTER {when} ON {name} "
                    f"BEGIN UPDATE layer_versions SET version = version + 1, "
                    f"updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE layer = '{name}'; END"
                )
        return stmts
    raise ValueError(f"no version triggers for dialect {dialect!r}")


def drop_version_triggers_sql(dialect: str, layers: Iterable[str]) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS trg_{n}_version ON {n}" for n in layers] + [
            "DROP FUNCTION IF EXISTS twin_bump_layer_version()"
        ]
    return [
        f"DROP TRIGGER IF EXISTS trg_{n}_version_{w}" for n in layers for w in ("insert", "update", "delete")
    ]


def layer_versions(conn: Connection) -> dict[str, int]:
    """Current data version of every layer."""
    rows = conn.execute(select(LayerVersion.layer, LayerVersion.version)).all()
    return {layer: version for layer, version in rows}


# --------------------------------------------------------------------------- change log
_PG_LOG_TEMPLATE = f"""
CREATE OR REPLACE FUNCTION twin_log_change() RETURNS trigger AS $$
DECLARE v integer; n bigint;
BEGIN
  INSERT INTO layer_versions (layer, version, updated_at) VALUES (TG_TABLE_NAME, 2, {_UTC_NOW_PG})
  ON CONFLICT (layer) DO UPDATE SET version = layer_versions.version + 1, updated_at = EXCLUDED.updated_at
  RETURNING version INTO v;
  IF coalesce(current_setting('twin.bulk_load', true), '') = 'on' THEN
    RETURN NULL;  -- bulk_change() logs the whole layer once at its end
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO change_log (layer, version) VALUES (TG_TABLE_NAME, v);
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN SELECT count(*) INTO n FROM new_rows; ELSE SELECT count(*) INTO n FROM old_rows; END IF;
  IF n = 0 THEN
    RETURN NULL;
  ELSIF n > {BULK_ROWS} THEN
    INSERT INTO change_log (layer, version) VALUES (TG_TABLE_NAME, v);
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO change_log (layer, version, minx, miny, maxx, maxy)
    SELECT DISTINCT TG_TABLE_NAME, v, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM new_rows;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO change_log (layer, version, minx, miny, maxx, maxy)
    SELECT DISTINCT TG_TABLE_NAME, v, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM old_rows;
{{update}}  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql
"""

#: the UPDATE branch of migration 0006: the old and the new extent
_PG_UPDATE_0006 = """  ELSE
    INSERT INTO change_log (layer, version, minx, miny, maxx, maxy)
    SELECT DISTINCT TG_TABLE_NAME, v, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom)
    FROM (SELECT geom FROM old_rows UNION ALL SELECT geom FROM new_rows) r;
"""
#: the UPDATE branch from migration 0009 on: each extent with ``shape`` (0: the geometry is byte for
#: byte what it was — an attribute edit — so what is derived from shapes alone, the building-block
#: outlines, stays; 1: it changed; rows are paired by ``id``)
_PG_UPDATE_SHAPE = """  ELSE
    INSERT INTO change_log (layer, version, minx, miny, maxx, maxy, shape)
    SELECT DISTINCT TG_TABLE_NAME, v, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom), shape
    FROM (SELECT o.geom, CASE WHEN ST_AsEWKB(o.geom) = ST_AsEWKB(n.geom) THEN 0 ELSE 1 END AS shape
          FROM old_rows o LEFT JOIN new_rows n ON n.id = o.id
          UNION ALL
          SELECT n.geom, CASE WHEN ST_AsEWKB(o.geom) = ST_AsEWKB(n.geom) THEN 0 ELSE 1 END
          FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id) r;
"""


def _pg_log_function(shape: bool) -> str:
    return _PG_LOG_TEMPLATE.replace("{update}", _PG_UPDATE_SHAPE if shape else _PG_UPDATE_0006)


def _sqlite_log_row(name: str, ref: str, shape: str | None = None) -> str:
    # bytes 7..38 of a SpatiaLite geometry blob are its MBR (four doubles): plain substr(), no
    # SpatiaLite function, so clients without the extension can still update attributes
    cols, val = (", shape", f", {shape}") if shape is not None else ("", "")
    return (
        f"INSERT INTO change_log (layer, version, mbr{cols}) "
        f"SELECT '{name}', version, CAST(substr({ref}.geom, 2, 1) || substr({ref}.geom, 7, 32) AS BLOB){val} "
        f"FROM layer_versions WHERE layer = '{name}' "
        f"AND (SELECT bulk FROM change_log_state WHERE id = 1) = 0"
    )


def change_log_triggers_sql(dialect: str, layers: Iterable[str], *, shape: bool = True) -> list[str]:
    """DDL replacing the version triggers of 0002 by triggers that bump the version and log the extent.

    ``shape`` (migration 0009 on): an update also says whether the geometry changed
    (``change_log.shape``: 0 = attributes only, 1 = the shape or place; NULL = not known: inserts,
    deletes, whole-layer and compacted rows). Migration 0006 installs the triggers without it."""
    layers = list(layers)
    if dialect == "postgresql":
        stmts = [_pg_log_function(shape)]
        for n in layers:
            stmts += [
                f"DROP TRIGGER IF EXISTS trg_{n}_version ON {n}",
                f"CREATE TRIGGER trg_{n}_log_insert AFTER INSERT ON {n} REFERENCING NEW TABLE AS new_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION twin_log_change()",
                f"CREATE TRIGGER trg_{n}_log_update AFTER UPDATE ON {n} REFERENCING OLD TABLE AS old_rows "
                f"NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION twin_log_change()",
                f"CREATE TRIGGER trg_{n}_log_delete AFTER DELETE ON {n} REFERENCING OLD TABLE AS old_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION twin_log_change()",
                f"CREATE TRIGGER trg_{n}_log_truncate AFTER TRUNCATE ON {n} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION twin_log_change()",
            ]
        return stmts
    if dialect == "sqlite":
        stmts = []
        for n in layers:
            bump = (f"UPDATE layer_versions SET version = version + 1, updated_at = {_UTC_NOW_SQLITE} "
                    f"WHERE layer = '{n}'")
            stmts += [f"DROP TRIGGER IF EXISTS trg_{n}_version_{w}" for w in ("insert", "update", "delete")]
            stmts += [
                f"CREATE TRIGGER trg_{n}_log_insert AFTER INSERT ON {n} BEGIN {bump}; {_sqlite_log_row(n, 'NEW')}; END",
                f"CREATE TRIGGER trg_{n}_log_delete AFTER DELETE ON {n} BEGIN {bump}; {_sqlite_log_row(n, 'OLD')}; END",
                # the old place always, the new one only when the geometry moved
                f"CREATE TRIGGER trg_{n}_log_update AFTER UPDATE ON {n} BEGIN {bump}; "
                f"{_sqlite_log_row(n, 'OLD', 'OLD.geom IS NOT NEW.geom' if shape else None)}; "
                f"{_sqlite_log_row(n, 'NEW', '1' if shape else None)} "
                f"AND substr(OLD.geom, 7, 32) IS NOT substr(NEW.geom, 7, 32); END",
            ]
        return stmts
    raise ValueError(f"no change-log triggers for dialect {dialect!r}")


def drop_change_log_triggers_sql(dialect: str, layers: Iterable[str]) -> list[str]:
    """Undo :func:`change_log_triggers_sql` (the caller reinstalls the 0002 version triggers)."""
    layers = list(layers)
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS trg_{n}_log_{w} ON {n}" for n in layers
                for w in ("insert", "update", "delete", "truncate")] + ["DROP FUNCTION IF EXISTS twin_log_change()"]
    return [f"DROP TRIGGER IF EXISTS trg_{n}_log_{w}" for n in layers for w in ("insert", "update", "delete")]


def log_layer_change(conn: Connection, layer: str) -> int:
    """Record a whole-layer change of ``layer`` (bumps its version); the new version."""
    now = _UTC_NOW_PG if conn.dialect.name == "postgresql" else _UTC_NOW_SQLITE
    version = conn.execute(
        text(f"UPDATE layer_versions SET version = version + 1, updated_at = {now} WHERE layer = :l "
             "RETURNING version"),
        {"l": layer},
    ).scalar_one()
    conn.execute(text("INSERT INTO change_log (layer, version) VALUES (:l, :v)"), {"l": layer, "v": version})
    return int(version)


@contextlib.contextmanager
def bulk_change(conn: Connection, layer: str) -> Iterator[None]:
    """Inside this block (one transaction) writes to ``layer`` log no per-row changes; at the
    end one whole-layer change is logged. For loads and replaces, where invalidating the
    layer's tiles is both cheaper and what the change means."""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.execute(text("SELECT set_config('twin.bulk_load', 'on', true)"))
    else:
        conn.execute(text("UPDATE change_log_state SET bulk = 1 WHERE id = 1"))
    try:
        yield
    finally:
        if pg:
            conn.execute(text("SELECT set_config('twin.bulk_load', 'off', true)"))
        else:
            conn.execute(text("UPDATE change_log_state SET bulk = 0 WHERE id = 1"))
    log_layer_change(conn, layer)
