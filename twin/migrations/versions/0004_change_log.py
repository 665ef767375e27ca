"""change log: the extent of every edit, written by triggers, for tile invalidation by extent

Creates ``change_log`` (layer, version, lon/lat extent; no extent = whole layer) and
``change_log_state`` (compaction generation, SQLite's bulk-load flag), and replaces
the version triggers of 0002 by triggers that bump the version and log the change in
the same transaction, on both backends (see :mod:`twin.versioning`).

Revision ID: 0004_change_log
Revises: 0003
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

from twin.versioning import (
    change_log_triggers_sql,
    drop_change_log_triggers_sql,
    version_triggers_sql,
)

revision = "0004_change_log"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen list: the layer tables at this revision.
LAYERS = (
    "grids", "evaluation_grids", "evaluation_points", "buildings", "pipelines", "pipe_nodes",
    "farmland", "zones", "control_lines", "devices", "cameras", "events", "roads",
    "construction_sites",
)


def upgrade() -> None:
    op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("minx", sa.Float(), nullable=True),
        sa.Column("miny", sa.Float(), nullable=True),
        sa.Column("maxx", sa.Float(), nullable=True),
        sa.Column("maxy", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    op.create_index("ix_change_log_layer_version", "change_log", ["layer", "version"], unique=False)
    op.create_table(
        "change_log_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("bulk", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log_state")),
    )
    op.execute("INSERT INTO change_log_state (id, generation, bulk) VALUES (1, 0, 0)")
    dialect = op.get_bind().dialect.name
    for stmt in change_log_triggers_sql(dialect, LAYERS):
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in drop_change_log_triggers_sql(dialect, LAYERS):
        op.execute(stmt)
    for stmt in version_triggers_sql(dialect, LAYERS):
        op.execute(stmt)
    op.drop_table("change_log_state")
    op.drop_index("ix_change_log_layer_version", table_name="change_log")
    op.drop_table("change_log")
