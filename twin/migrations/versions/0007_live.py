"""live layers: reading history and latest state per device

``live_readings`` is append-only, written in batches by the ingest; queries ask for one
device over a time interval, retention deletes by time. On PostgreSQL a BRIN index on
``ts`` (rows arrive in time order, so the block ranges are tight and the index tiny)
serves retention and wide scans, a B-tree on (layer, device_code, ts) serves one
device's history. SQLite has no BRIN: two B-trees.

``live_state`` holds the latest reading per device so a restarted worker starts from it.
Neither table is a layer table: no version triggers, so readings never invalidate tiles.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "live_readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("layer", sa.String(64), nullable=False),
        sa.Column("device_code", sa.String(64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("lon", sa.Float()),
        sa.Column("lat", sa.Float()),
    )
    op.create_index("ix_live_readings_device_ts", "live_readings", ["layer", "device_code", "ts"])
    if pg:
        op.execute("CREATE INDEX ix_live_readings_ts_brin ON live_readings USING brin (ts)")
    else:
        op.create_index("ix_live_readings_ts", "live_readings", ["ts"])
    op.create_table(
        "live_state",
        sa.Column("layer", sa.String(64), primary_key=True),
        sa.Column("device_code", sa.String(64), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("lon", sa.Float()),
        sa.Column("lat", sa.Float()),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("live_state")
    op.drop_table("live_readings")
