"""Per-layer data versions, maintained by database triggers.

The DDL differs per backend (PostgreSQL: one statement-level trigger function;
SQLite: row-level triggers, the only kind it has), so it lives here, next to the
reader, rather than in the migration.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from twin.schema import LayerVersion


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
