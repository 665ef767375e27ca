"""Alembic environment: migrations run on the connection twin hands over (see twin.migrate)."""

from alembic import context
from geoalchemy2 import alembic_helpers

from twin.migrate import include_object
from twin.schema import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_object=include_object,
    process_revision_directives=alembic_helpers.writer,
    render_item=alembic_helpers.render_item,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
