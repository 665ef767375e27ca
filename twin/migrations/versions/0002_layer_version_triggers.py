"""layer data versions bumped by triggers on every write

Every insert, update or delete on a layer table bumps ``layer_versions.version``
for that layer, in the same transaction, whoever writes (twin's loader, an edit
through the API, or SQL typed into psql). Tile ETags and cache keys include it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op

from twin.versioning import drop_version_triggers_sql, version_triggers_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen list: the layers that exist at this revision.
LAYERS = (
    "grids", "evaluation_grids", "evaluation_points", "buildings", "pipelines", "pipe_nodes",
    "farmland", "zones", "control_lines", "devices", "cameras", "events", "roads",
    "construction_sites",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in version_triggers_sql(dialect, LAYERS):
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in drop_version_triggers_sql(dialect, LAYERS):
        op.execute(stmt)
