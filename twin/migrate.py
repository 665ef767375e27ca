"""Schema migrations (Alembic), run programmatically: ``twin migrate`` or on start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from geoalchemy2 import alembic_helpers
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Columns the database maintains itself (migrations 0003 and 0004, PostgreSQL only), not in the models.
DATABASE_MAINTAINED_COLUMNS = {"geom_3857", "geom_mvt14"}


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001 - Alembic hook
    """What autogenerate compares: the models' objects, not the database-maintained extras."""
    if type_ == "table" and reflected and compare_to is None:
        return False  # SpatiaLite / PostGIS system tables (spatial_ref_sys, data_licenses, …)
    if type_ == "column" and name in DATABASE_MAINTAINED_COLUMNS:
        return False
    if type_ == "index" and name and name.endswith("_geom_3857"):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)


def schema_drift(engine: Engine) -> list:
    """Differences between the models and the migrated database (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from twin.schema import Base

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": include_object})
        return compare_metadata(ctx, Base.metadata)


def alembic_config(connection) -> Config:  # noqa: ANN001 - a SQLAlchemy Connection
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (default: the newest)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # hosts started together (twin@8001, twin@8002, a second machine) migrate one after the
            # other: the lock is held until this transaction ends, the next one finds nothing to do
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7415061)")
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        command.upgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
