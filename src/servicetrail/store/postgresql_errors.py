"""PostgreSQL's errors, recognised without importing its driver.

Only a PostgreSQL store loads psycopg (SQLAlchemy imports it to connect): its import took
0.1 s of the 0.5 s that every command spent starting on an SQLite store. An error of
psycopg's cannot be raised before psycopg is imported, so a check that finds it not imported
answers "no" without importing it; code that runs only on PostgreSQL imports psycopg where
it is used."""

from __future__ import annotations

import sys
from collections.abc import Collection
from typing import Any


def psycopg_error(error: BaseException | None, *classes: str) -> bool:
    """Whether `error` is one of `classes`, named as in `psycopg.errors` ("QueryCanceled",
    "OperationalError", ...)."""
    errors: Any = sys.modules.get("psycopg.errors")
    if errors is None:
        return False
    return isinstance(error, tuple(getattr(errors, name) for name in classes))


def no_partition_for_row(error: BaseException, tables: Collection[str]) -> bool:
    """Whether PostgreSQL refused a row of one of these partitioned tables for want of a
    partition holding it: a check_violation naming the table and no constraint (its message
    may be translated). `error` as the driver raised it or wrapped by SQLAlchemy, alike: the
    writers that go through the driver itself (the trail's, a lease's entries) raise the first,
    those that go through SQLAlchemy the second."""
    for e in (error, getattr(error, "orig", None)):
        diag: Any = getattr(e, "diag", None)
        if psycopg_error(e, "CheckViolation") and diag.table_name in tables:
            return diag.constraint_name is None
    return False
