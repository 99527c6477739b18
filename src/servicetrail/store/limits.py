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


class SearchTooBroad(RuntimeError):
    """A search ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s and was stopped: "
            "narrow it (a Device ID, a Request ID or a shorter date range)"
        )


@contextmanager
def time_limit(conn: Connection, seconds: float = DEFAULT_SECONDS) -> Iterator[None]:
    """Bound the statements run inside: SQLite by a progress handler, PostgreSQL by statement_timeout."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(int(seconds * 1000))})
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
