"""Statement time limits: a search that would run too long stops and says so."""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

DEFAULT_SECONDS = float(os.environ.get("SERVICETRAIL_STATEMENT_TIMEOUT", "10"))
# exports and CLI listings stream a whole answer in one statement
EXPORT_SECONDS = float(os.environ.get("SERVICETRAIL_EXPORT_TIMEOUT", "3600"))


class SearchTooBroad(RuntimeError):
    """A search ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s and was stopped: "
            "narrow it (a Device ID, a Request ID or a shorter date range)"
        )


@contextmanager
def time_limit(conn: Connection, seconds: float = DEFAULT_SECONDS,
               settings: dict[str, str] | None = None) -> Iterator[None]:
    """Bound the statements run inside: SQLite by a progress handler, PostgreSQL by statement_timeout.

    On PostgreSQL, `settings` are set for the transaction in the same round trip.
    """
    if conn.dialect.name == "postgresql":
        every = {**(settings or {}), "statement_timeout": str(int(seconds * 1000))}
        names = list(every)
        calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(names)))
        params = {**{f"n{i}": n for i, n in enumerate(names)}, **{f"v{i}": every[n] for i, n in enumerate(names)}}
        conn.execute(text(f"SELECT {calls}"), params)
        try:
            yield
        except OperationalError as e:
            if "statement timeout" in str(e.orig):
                raise SearchTooBroad(seconds) from None
            raise
        return
    raw = conn.connection.dbapi_connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        yield
    except OperationalError as e:
        if isinstance(e.orig, sqlite3.OperationalError) and "interrupted" in str(e.orig):
            raise SearchTooBroad(seconds) from None
        raise
    finally:
        raw.set_progress_handler(None, 0)
