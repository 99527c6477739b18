"""Statement time limits: a search that would run too long stops and says so."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from enum import Enum
from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Select

from .. import settings


class Budget(Enum):
    """A time limit named rather than given in seconds: its seconds are the setting's value
    when the statement runs, so that no module holds a copy taken when it was imported."""

    SEARCH = "statement_timeout"
    # exports and CLI listings stream a whole answer in one statement
    EXPORT = "export_timeout"

    def seconds(self) -> float:
        return float(getattr(settings.current(), self.value))


# the names store.queries imports (the lead may move it to Budget; these keep it working meanwhile)
DEFAULT_SECONDS = Budget.SEARCH
EXPORT_SECONDS = Budget.EXPORT


# a small read sent with a time limit's settings: a statement and its parameters
Prefetch = tuple[Select[Any], dict[str, Any]]


class SearchTooBroad(RuntimeError):
    """A search ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s and was stopped: "
            "narrow it (a Device ID, a Request ID or a shorter date range)"
        )


@contextmanager
def time_limit(conn: Connection, seconds: float | Budget = Budget.SEARCH, settings: dict[str, str] | None = None,
               prefetch: Prefetch | None = None) -> Iterator[Sequence[Sequence[Any]] | None]:
    """Bound the statements run inside: SQLite by a progress handler, PostgreSQL by statement_timeout.

    On PostgreSQL, `settings` are set for the transaction. `prefetch`, a small read the
    caller needs first (a statement and its parameters), is sent with them, and its rows
    are what this yields: BEGIN, the settings and the read go in one round trip
    (psycopg's pipeline mode) instead of three, and each wait on the server is a pair of
    context switches on a busy machine.
    """
    if isinstance(seconds, Budget):
        seconds = seconds.seconds()
    if conn.dialect.name == "postgresql":
        every = {**(settings or {}), "statement_timeout": str(int(seconds * 1000))}
        names = list(every)
        calls = ", ".join(f"set_config(%(n{i})s, %(v{i})s, true)" for i in range(len(names)))
        params = {**{f"n{i}": n for i, n in enumerate(names)}, **{f"v{i}": every[n] for i, n in enumerate(names)}}
        try:
            rows = _pipelined(conn, f"SELECT {calls}", params, prefetch)
            yield rows
        except (OperationalError, psycopg.errors.QueryCanceled) as e:
            if "statement timeout" in str(getattr(e, "orig", e)):
                raise SearchTooBroad(seconds) from None
            raise
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a Connection in use holds its driver's connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        yield conn.execute(prefetch[0], prefetch[1]).all() if prefetch else None
    except OperationalError as e:
        if isinstance(e.orig, sqlite3.OperationalError) and "interrupted" in str(e.orig):
            raise SearchTooBroad(seconds) from None
        raise
    finally:
        raw.set_progress_handler(None, 0)


def _pipelined(conn: Connection, settings_sql: str, settings: dict[str, str],
               prefetch: Prefetch | None) -> list[tuple[Any, ...]] | None:
    """The settings (and the prefetch) through the driver, in one pipeline. SQLAlchemy's next
    statement joins the transaction this opens, and its COMMIT (or the pool's ROLLBACK) ends it."""
    driver = conn.connection.driver_connection
    assert driver is not None  # a Connection in use holds its driver's connection
    # a libpq older than 14 has no pipeline mode: the same statements, one round trip each
    with driver.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
        driver.execute(settings_sql, settings)
        if prefetch is None:
            return None
        statement, values = prefetch
        compiled, processors = _compiled(statement, conn.dialect)
        cursor = driver.execute(compiled.string, {name: values[name] for name in compiled.params})
    return [tuple(p(v) if p else v for p, v in zip(processors, row)) for row in cursor.fetchall()]


_compiled_statements: dict[tuple[int, str], tuple[Select[Any], Any, list[Any]]] = {}


def _compiled(statement: Select[Any], dialect: Any) -> tuple[Any, list[Any]]:
    """The SQL and the result processors (UTC times, ...), made once per statement object:
    callers pass statements they build once, and the identity check (and the bound) keep a
    caller that does not from being wrong or costly."""
    key = (id(statement), dialect.name)
    found = _compiled_statements.get(key)
    if found is None or found[0] is not statement:
        if len(_compiled_statements) >= 64:
            _compiled_statements.clear()
        processors = [column.type.result_processor(dialect, None) for column in statement.selected_columns]
        found = _compiled_statements[key] = (statement, statement.compile(dialect=dialect), processors)
    return found[1], found[2]
