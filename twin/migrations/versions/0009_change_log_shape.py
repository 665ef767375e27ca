"""change log: whether an update changed the geometry (``change_log.shape``)

An update of attributes only (a building's height, an event's status) logs ``shape = 0``;
one that moved or reshaped the feature ``1``; inserts, deletes, whole-layer and compacted
rows leave it NULL (not known). What is derived from shapes alone — the building-block
outlines of :mod:`twin.blocks` — is then kept on an attribute edit and only the attributes
of the blocks it touches are recounted, instead of merging the edit's whole ~2 km cell again.
The triggers of 0006 are replaced by the same triggers with the flag, on both backends.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

from twin.versioning import change_log_triggers_sql, drop_change_log_triggers_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen list: the logged tables at this revision (as 0006).
LOGGED = (
    "grids", "evaluation_grids", "evaluation_points", "buildings", "pipelines", "pipe_nodes",
    "farmland", "zones", "control_lines", "devices", "cameras", "events", "roads",
    "construction_sites", "building_blocks",
)


def upgrade() -> None:
    op.add_column("change_log", sa.Column("shape", sa.SmallInteger(), nullable=True))
    dialect = op.get_bind().dialect.name
    for stmt in drop_change_log_triggers_sql(dialect, LOGGED):
        op.execute(stmt)
    for stmt in change_log_triggers_sql(dialect, LOGGED, shape=True):
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in drop_change_log_triggers_sql(dialect, LOGGED):
        op.execute(stmt)
    for stmt in change_log_triggers_sql(dialect, LOGGED, shape=False):
        op.execute(stmt)
    with op.batch_alter_table("change_log") as batch:
        batch.drop_column("shape")
