"""SQL handed to the database driver as written (`Connection.exec_driver_sql`, or the DBAPI
connection itself), where each driver spells its parameters its own way: sqlite3 `?`,
psycopg `%s`."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def mark_of(dialect_name: str) -> str:
    """The mark of one positional parameter for the driver of this SQLAlchemy dialect
    (`sqlite` or `postgresql`): for code holding a driver, or a dialect's name, and no
    Connection."""
    return "?" if dialect_name == "sqlite" else "%s"


def parameter_mark(conn: Connection) -> str:
    """The mark of one positional parameter in SQL for this connection's driver."""
    return mark_of(conn.dialect.name)
