"""Alembic environment: the engine comes from servicetrail, never from an ini file."""

from alembic import context

from servicetrail.store.schema import metadata_for

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata_for(connection.dialect.name),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
