"""Who else is connected to a PostgreSQL store as `db upgrade` changes its schema.

A `serve` or `deliver` started before an upgrade keeps running the old code on the new
schema: one from before 0019 answered every read 500 after it (permission denied for the
visibility index: the shared reader role it reads as had lost its grants), and nothing said
why (audit 48d). SQLite keeps no list of its readers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def other_sessions(conn: Connection) -> list[str]:
    """Each other client connected to this database, by its name and address (another role's
    show as a client whose address PostgreSQL keeps from us)."""
    if conn.dialect.name != "postgresql":
        return []
    return list(
        conn.execute(
            text(
                "SELECT coalesce(nullif(application_name, ''), 'a client') || ' from ' || "
                "coalesce(host(client_addr), 'a local socket or an address not shown') "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "ORDER BY backend_start"
            )
        ).scalars()
    )
