"""Alembic environment: the engine comes from servicetrail, never from an ini file (or a
connection already in its transaction: store.migrate.build_new_store)."""

from alembic import context

from servicetrail.store.schema import metadata_for


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    applied = context.config.attributes.get("applied")  # store.migrate names the one that failed
    context.configure(
        connection=connection,
        target_metadata=metadata_for(connection.dialect.name),
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=(
            (lambda *, step, **_: applied.append(step.up_revision_id))
            if applied is not None
            else None
        ),
    )
    context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    with context.config.attributes["engine"].begin() as connection:
        _run(connection)
