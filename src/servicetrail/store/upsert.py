"""The engine's own INSERT, which has the ON CONFLICT ... DO NOTHING that SQLAlchemy's generic
one lacks. PostgreSQL's is imported on PostgreSQL alone: imported with the module that used
it, it had every command on SQLite load SQLAlchemy's PostgreSQL dialect, 0.025 s of CPU
(session 50)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Table
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert


def dialect_insert(conn: Connection, table: Table) -> PostgresqlInsert | SqliteInsert:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


__all__ = ["dialect_insert"]
