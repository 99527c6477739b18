"""SQL handed to the database driver as written (`Connection.exec_driver_sql`), where each
driver spells its parameters its own way: sqlite3 `?`, psycopg `%s`."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def parameter_mark(conn: Connection) -> str:
    """The mark of one positional parameter in SQL for this connection's driver."""
    return "?" if conn.dialect.name == "sqlite" else "%s"
