"""stored Web Mercator geometry for vector tiles (PostgreSQL only)

Adds ``geom_3857 geometry(<type>, 3857) GENERATED ALWAYS AS (ST_Transform(geom,
3857)) STORED`` with a GiST index to every layer table, so the tile SQL filters
with the index and encodes without reprojecting per request. The database keeps
it in step with ``geom`` on every write; writers never name it. SpatiaLite is
untouched (its tiles are encoded in Python).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen list: the layer tables and geometry types at this revision.
LAYERS = {
    "grids": "MultiPolygon", "evaluation_grids": "MultiPolygon", "evaluation_points": "Point",
    "buildings": "MultiPolygon", "pipelines": "LineString", "pipe_nodes": "Point", "farmland": "MultiPolygon",
    "zones": "MultiPolygon", "control_lines": "MultiPolygon", "devices": "Point", "cameras": "Point",
    "events": "Point", "roads": "LineString", "construction_sites": "MultiPolygon",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, kind in LAYERS.items():
        op.execute(
            f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS geom_3857 geometry({kind}, 3857) "
            f"GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED"
        )
        op.execute(f"CREATE INDEX IF NOT EXISTS idx_{name}_geom_3857 ON {name} USING gist (geom_3857)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in LAYERS:
        op.execute(f"DROP INDEX IF EXISTS idx_{name}_geom_3857")
        op.execute(f"ALTER TABLE {name} DROP COLUMN IF EXISTS geom_3857")
