"""PostgreSQL's errors, recognised without importing its driver.

Only a PostgreSQL store loads psycopg (SQLAlchemy imports it to connect): its import took
0.1 s of the 0.5 s that every command spent starting on an SQLite store. An error of
psycopg's cannot be raised before psycopg is imported, so a check that finds it not imported
answers "no" without importing it; code that runs only on PostgreSQL imports psycopg where
it is used."""

from __future__ import annotations

import sys
from typing import Any


def psycopg_error(error: BaseException | None, *classes: str) -> bool:
    """Whether `error` is one of `classes`, named as in `psycopg.errors` ("QueryCanceled",
    "OperationalError", ...)."""
    errors: Any = sys.modules.get("psycopg.errors")
    if errors is None:
        return False
    return isinstance(error, tuple(getattr(errors, name) for name in classes))
