"""change log: the extent of every edit, written by triggers, for tile invalidation by extent

Creates ``change_log`` (layer, version, lon/lat extent; no extent = whole layer),
``change_log_state`` (compaction generation, SQLite's bulk-load flag) and
``building_blocks`` (buildings merged per zoom for z12–z13 tiles), the PostgreSQL-only
``buildings.geom_mvt14`` (outlines pre-snapped to the z14 tile grid), and replaces
the version triggers of 0002 by triggers that bump the version and log the change in
the same transaction, on both backends (see :mod:`twin.versioning`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

from twin.versioning import (
    change_log_triggers_sql,
    drop_change_log_triggers_sql,
    version_triggers_sql,
)

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_O = 20037508.342789244
_A = 2**14 * 4096 / (2 * _O)  # z14 grid units per EPSG:3857 metre
_HALF = 2**25  # half the z14 grid: 2**14 tiles × 4096 units / 2
MVT14_EXPR = (f"ST_ForcePolygonCCW(ST_RemoveRepeatedPoints(ST_SnapToGrid(ST_Affine(ST_Transform(geom, 3857), "
              f"{_A!r}, 0, 0, {-_A!r}, {_HALF}, {_HALF}), 1)))")

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
        sa.Column("mbr", sa.LargeBinary(), nullable=True),
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
    op.create_geospatial_table(
        "building_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zoom", sa.Integer(), nullable=False),
        sa.Column("cell_x", sa.Integer(), nullable=False),
        sa.Column("cell_y", sa.Integer(), nullable=False),
        sa.Column("use", sa.String(length=32), nullable=False),
        sa.Column("height_m", sa.Float(), nullable=False),
        sa.Column("building_count", sa.Integer(), nullable=False),
        sa.Column("built_from", sa.Integer(), nullable=False),
        sa.Column("geom", Geometry(geometry_type="MULTIPOLYGON", srid=4326, dimension=2, spatial_index=False,
                                   from_text="ST_GeomFromEWKT", name="geometry", nullable=False), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_building_blocks")),
    )
    op.create_geospatial_index("idx_building_blocks_geom", "building_blocks", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_building_blocks_cell", "building_blocks", ["cell_x", "cell_y"], unique=False)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # building outlines pre-snapped to the z14 tile grid (global grid units, y down): a z14 tile
        # translates them instead of running ST_AsMVTGeom per building (tiles.mvt_postgis)
        op.execute(f"ALTER TABLE buildings ADD COLUMN IF NOT EXISTS geom_mvt14 geometry GENERATED ALWAYS AS "
                   f"({MVT14_EXPR}) STORED")
    # the blocks are logged like a layer, so tiles drawing them change when they are refreshed
    op.execute("INSERT INTO layer_versions (layer, version) VALUES ('building_blocks', 1)")
    for stmt in change_log_triggers_sql(dialect, (*LAYERS, "building_blocks"), shape=False):
        op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("ALTER TABLE buildings DROP COLUMN IF EXISTS geom_mvt14")
    for stmt in drop_change_log_triggers_sql(dialect, (*LAYERS, "building_blocks")):
        op.execute(stmt)
    for stmt in version_triggers_sql(dialect, LAYERS):
        op.execute(stmt)
    op.execute("DELETE FROM layer_versions WHERE layer = 'building_blocks'")
    op.drop_geospatial_index("idx_building_blocks_geom", table_name="building_blocks", column_name="geom")
    op.drop_index("ix_building_blocks_cell", table_name="building_blocks")
    op.drop_geospatial_table("building_blocks")
    op.drop_table("change_log_state")
    op.drop_index("ix_change_log_layer_version", table_name="change_log")
    op.drop_table("change_log")
