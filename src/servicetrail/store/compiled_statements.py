"""SQLAlchemy statements of the hot reads run through the driver itself, each compiled once:
its SQL with numbered placeholders (PostgreSQL's `$n`, SQLite's `?n`), the result processors
(UTC times, ...) and where each parameter's value comes from.

Why: SQLAlchemy's execution of a device search (its cache key, the IN lists expanded, the
rows processed) cost more of the server's CPU than the round trip, and psycopg parsed the
statement's text afresh on every execution (its cache of parsed statements stops at 4096
characters and 50 parameters; a device search has about 8000 and 30). On SQLite, where
there is no round trip, SQLAlchemy's compiling, caching and row handling were a fifth of a
device search's CPU in the store (1.25 ms -> 1.05, BENCHMARKS.md, session 9). The
statements are the same objects the store builds, so what is read, and the rule in it, do
not change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
_BOUND = 64  # a few dozen statement shapes are in use; the bound keeps a misuse from growing

_compiled_statements: dict[tuple[int, str], tuple[Executable, Any, list[Any]]] = {}
# SQLite's statements compiled with psycopg's placeholders (%(name)s), so that one
# renumbering serves both engines
_SQLITE = SQLiteDialect_pysqlite(paramstyle="pyformat")
_NUMBERED = {"postgresql": "$", "sqlite": "?"}


def compiled(statement: Any, dialect: Any) -> tuple[Any, list[Any]]:
    """The compiled statement and its result processors, made once per statement object:
    callers pass statements they build once, and the identity check (and the bound) keep a
    caller that does not from being wrong or costly."""
    key = (id(statement), dialect.name)
    found = _compiled_statements.get(key)
    if found is None or found[0] is not statement:
        if len(_compiled_statements) >= _BOUND:
            _compiled_statements.clear()
        processors = [
            column.type.result_processor(dialect, None) for column in statement.selected_columns
        ]
        found = _compiled_statements[key] = (
            statement,
            statement.compile(dialect=dialect),
            processors,
        )
    return found[1], found[2]


@dataclass(frozen=True)
class _RawForm:
    """A compiled statement for one length of each of its IN lists: `sql` with `$n`
    placeholders, and per placeholder where its value is: (name, None) the caller's value,
    (name, i) the i-th of the caller's list, or (None, value) the statement's own literal;
    and the value's bind processor, if its type has one."""

    compiled: Any
    sql: str
    sources: tuple[tuple[str | None, Any], ...]
    binders: tuple[Any, ...]


_raw_forms: dict[tuple[int, tuple[int, ...]], _RawForm] = {}


def _lists(values: dict[str, Any], names: Any) -> tuple[int, ...]:
    """The key of a statement's form: each IN list's length, and which parameters the caller
    gives (one it leaves out is the statement's own value, kept in the form)."""
    return tuple(
        len(values[n]) if isinstance(values.get(n), (list, tuple)) else -1 if n in values else -2
        for n in names
    )


def _raw_form(statement: Any, dialect: Any, values: dict[str, Any]) -> tuple[_RawForm, list[Any]]:
    done, processors = compiled(statement, dialect)
    key = (id(done), _lists(values, done.binds))
    form = _raw_forms.get(key)
    if form is None or form.compiled is not done:
        if len(_raw_forms) >= _BOUND:
            _raw_forms.clear()
        form = _raw_forms[key] = _made_raw(done, values, _NUMBERED[dialect.name])
    return form, processors


def _made_raw(done: Any, values: dict[str, Any], mark: str) -> _RawForm:
    if any(bind.literal_execute for bind in done.binds.values()):
        # rendered into the SQL itself: a form kept for the next call would keep this value
        raise TypeError("a statement with literal-executed parameters cannot be run here")
    expanded = done.construct_expanded_state(values)
    expanded_from = {
        name: (original, i)
        for original, names in expanded.parameter_expansion.items()
        for i, name in enumerate(names)
    }
    order: dict[str, int] = {}

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "%"  # SQLAlchemy's escape of a literal percent sign
        return f"{mark}{order.setdefault(match.group(1), len(order) + 1)}"

    sql = _PLACEHOLDER.sub(placeholder, expanded.statement)
    sources: list[tuple[str | None, Any]] = []
    for name in order:
        original, i = expanded_from.get(name, (name, None))
        if original in values:
            sources.append((original, i))
        else:
            sources.append((None, expanded.parameters[name]))
    binders = tuple(_binder(done, expanded, name) for name in order)
    return _RawForm(done, sql, tuple(sources), binders)


def _binder(done: Any, expanded: Any, name: str) -> Any:
    """The bind processor of a placeholder's value (UtcDateTime's: SQLite's fixed-width text).
    The expanded state has those of the IN lists' items only; a plain parameter's is its
    type's, for this dialect."""
    found = expanded.processors.get(name)
    if found is None and name in done.binds:
        found = done.binds[name].type.dialect_impl(done.dialect).bind_processor(done.dialect)
    return found


def _arguments(form: _RawForm, values: dict[str, Any]) -> list[Any]:
    arguments = []
    for (name, where), binder in zip(form.sources, form.binders):
        if name is None:
            value = where
        else:
            value = values[name] if where is None else values[name][where]
        arguments.append(binder(value) if binder else value)
    return arguments


def send(driver: Any, statement: Any, dialect: Any, values: dict[str, Any]) -> Any:
    """Sends `statement` with `values` on psycopg's connection (in a pipeline, it does not wait
    for the answer); returns its cursor and result processors, for `rows`."""
    import psycopg  # only here on PostgreSQL (store.postgresql_errors)

    form, processors = _raw_form(statement, dialect, values)
    cursor = psycopg.RawCursor(driver)
    cursor.execute(form.sql, _arguments(form, values))
    return cursor, processors


def rows(sent: tuple[Any, list[Any]]) -> list[tuple[Any, ...]]:
    cursor, processors = sent
    return _processed(processors, cursor.fetchall())


def _processed(processors: list[Any], fetched: Sequence[Any]) -> list[tuple[Any, ...]]:
    # only the columns that have a processor are touched: a device search's rows have two
    # of 17 (its times), and a generator over every column cost 2.5 times as much (session 57)
    converting = [(i, p) for i, p in enumerate(processors) if p]
    if not converting:
        return [tuple(row) for row in fetched]
    done = []
    for row in fetched:
        values = list(row)
        for i, p in converting:
            values[i] = p(values[i])
        done.append(tuple(values))
    return done


def driver_in_transaction(conn: Connection) -> Any:
    """psycopg's connection under `conn`, for statements sent past SQLAlchemy, in the
    transaction SQLAlchemy's own first statement would have begun: the caller's COMMIT (or
    the pool's ROLLBACK) ends it."""
    if not conn.in_transaction():
        conn.begin()
    return conn.connection.driver_connection


def fetch_all(conn: Connection, statement: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of `statement`. On PostgreSQL through psycopg, in the connection's transaction
    (`driver_in_transaction`). On
    SQLite as driver SQL through SQLAlchemy, which runs a read as it always does and still
    tells its listeners (the tests that count statements) and wraps the driver's errors."""
    if conn.dialect.name != "postgresql":
        form, processors = _raw_form(statement, _SQLITE, values)
        result = conn.exec_driver_sql(form.sql, tuple(_arguments(form, values)))
        return _processed(processors, result.cursor.fetchall())
    return rows(send(driver_in_transaction(conn), statement, conn.dialect, values))
