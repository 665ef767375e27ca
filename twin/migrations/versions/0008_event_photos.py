"""event photos: pictures a field worker attaches to an event (layers/event_photos.py)

Cleaned JPEGs (upright, scaled, no metadata) stored in the database, so every worker and host
serves them and an event's photos go with its backups. Not a layer table: no version triggers.

Revision ID: 0008
Revises: 0007 (the lead re-chains on merge)
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_photos",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_event_photos_event_id", "event_photos", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_event_photos_event_id", table_name="event_photos")
    op.drop_table("event_photos")
