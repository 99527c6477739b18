"""A PostgreSQL store's database, made when it does not exist yet.

SPEC section 5: "a command on a store that does not exist yet ... creates it". An SQLite
store is a file, made by opening it; a PostgreSQL store is a database, which a server makes
only when asked, from another database of the same server (46b: `--db .../newdb` was exit 2,
"database newdb does not exist", where `--db sqlite:///new.db` built the store).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from .postgresql_errors import psycopg_error


class CannotCreateDatabase(RuntimeError):
    """The store's database is missing and could not be made; the message says why."""


# where a server lets a role connect to ask for a new database: `postgres` on every server
# initdb made, `template1` where that was dropped
_MAINTENANCE_DATABASES = ("postgres", "template1")

# NAMEDATALEN - 1, on a server built as distributed
_LONGEST_NAME = 63


def there_now(engine: Engine) -> bool:
    """Whether the engine's database is there now: found, made here, or made by another
    command at the same moment (a first version gave up when it found the database made by
    another in between: 1 race in 15). False when no database of the server answers to ask
    (an unreachable server, a wrong password): the caller's own error about connecting then
    stands. Asked by name, not told by the connection's error, whose words depend on the
    server's language."""
    url = engine.url
    name = url.database
    if engine.dialect.name != "postgresql" or not name or name in _MAINTENANCE_DATABASES:
        return False
    for maintenance in _MAINTENANCE_DATABASES:
        asking = create_engine(
            url.set(database=maintenance), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            _make_unless_there(asking, url, name)
            return True
        except exc.OperationalError:
            continue  # that one refuses this role; the next may not
        finally:
            asking.dispose()
    return False


def _make_unless_there(asking: Engine, url: URL, name: str) -> None:
    with asking.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if found.first() is not None:
            return
        if len(name.encode()) > _LONGEST_NAME:
            # the server would make it under its first 63 bytes (cut at a character, where a
            # connection cuts at the byte): a database no command opened, or, in ASCII, one
            # that every name beginning with those bytes opens
            raise CannotCreateDatabase(
                f"the database {name!r} does not exist, and PostgreSQL names a database in at "
                f"most {_LONGEST_NAME} bytes: name a shorter one"
            )
        from psycopg import sql

        # through the driver: SQLAlchemy doubles a '%' in a statement without parameters,
        # which the driver then ran as written ('50%off' made a database '50%%off')
        driver: Any = conn.connection.driver_connection
        try:
            driver.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except Exception as e:
            if psycopg_error(e, "DuplicateDatabase", "UniqueViolation"):
                return  # made by another command in between
            if not psycopg_error(e, "Error"):
                raise
            said = str(e).strip().partition("\n")[0]  # not its DETAIL, on lines of their own
            raise CannotCreateDatabase(
                f"the database {name!r} does not exist, and the role {url.username!r} could "
                f"not create it ({said}): create it, or name another"
            ) from None
