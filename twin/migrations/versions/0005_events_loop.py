"""camera streams, event closed-loop history, device alarms

- ``cameras``: ``streams`` (play URLs by protocol) and ``gb28181_id``.
- ``events``: ``severity``, ``alarm_cleared_at``, ``updated_at``.
- ``event_transitions``: every accepted step of an event's closed loop.
- ``device_alarms``: open/cleared alarms per device metric; a partial unique index allows one
  open alarm per device and metric, so concurrent workers cannot open duplicate events.

Deleting an event deletes its history and alarms: a foreign key with ON DELETE CASCADE (which
PostgreSQL enforces) and, because SQLite enforces foreign keys only when each connection asks
for it, a trigger there too. Without it SQLite could hand a deleted event's id to a new event
that would inherit the old history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # nullable columns: both SQLite and PostgreSQL add them in place
    op.add_column("cameras", sa.Column("streams", sa.JSON(), nullable=True))
    op.add_column("cameras", sa.Column("gb28181_id", sa.String(length=20), nullable=True))
    op.create_index(op.f("ix_cameras_gb28181_id"), "cameras", ["gb28181_id"], unique=False)
    op.add_column("events", sa.Column("severity", sa.String(length=32), nullable=True))
    op.add_column("events", sa.Column("alarm_cleared_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("events", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "event_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_event_transitions_event_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_transitions")),
    )
    op.create_index(op.f("ix_event_transitions_event_id"), "event_transitions", ["event_id"], unique=False)

    op.create_table(
        "device_alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_code", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_device_alarms_event_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_alarms")),
    )
    op.create_index(op.f("ix_device_alarms_event_id"), "device_alarms", ["event_id"], unique=False)
    op.create_index(
        "uq_device_alarms_open", "device_alarms", ["device_code", "metric"], unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"), postgresql_where=sa.text("cleared_at IS NULL"),
    )
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER trg_events_delete_children AFTER DELETE ON events BEGIN "
            "DELETE FROM event_transitions WHERE event_id = OLD.id; "
            "DELETE FROM device_alarms WHERE event_id = OLD.id; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS trg_events_delete_children")
    op.drop_index("uq_device_alarms_open", table_name="device_alarms")
    op.drop_index(op.f("ix_device_alarms_event_id"), table_name="device_alarms")
    op.drop_table("device_alarms")
    op.drop_index(op.f("ix_event_transitions_event_id"), table_name="event_transitions")
    op.drop_table("event_transitions")
    with op.batch_alter_table("events") as b:
        b.drop_column("updated_at")
        b.drop_column("alarm_cleared_at")
        b.drop_column("severity")
    op.drop_index(op.f("ix_cameras_gb28181_id"), table_name="cameras")
    with op.batch_alter_table("cameras") as b:
        b.drop_column("gb28181_id")
        b.drop_column("streams")
