"""SQLAlchemy statements of PostgreSQL's hot reads run through psycopg itself, each compiled
once: its SQL with the server's own `$n` placeholders (a raw cursor), the result processors
(UTC times, ...) and where each parameter's value comes from.

Why: SQLAlchemy's execution of a device search (its cache key, the IN lists expanded, the
rows processed) cost more of the server's CPU than the round trip, and psycopg parsed the
statement's text afresh on every execution (its cache of parsed statements stops at 4096
characters and 50 parameters; a device search has about 8000 and 30). The statements are
the same objects the store builds, so what is read, and the rule in it, do not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
_BOUND = 64  # a few dozen statement shapes are in use; the bound keeps a misuse from growing

_compiled_statements: dict[tuple[int, str], tuple[Executable, Any, list[Any]]] = {}


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
    return tuple(len(values[n]) if isinstance(values.get(n), (list, tuple)) else -1 for n in names)


def _raw_form(statement: Any, dialect: Any, values: dict[str, Any]) -> tuple[_RawForm, list[Any]]:
    done, processors = compiled(statement, dialect)
    key = (id(done), _lists(values, done.binds))
    form = _raw_forms.get(key)
    if form is None or form.compiled is not done:
        if len(_raw_forms) >= _BOUND:
            _raw_forms.clear()
        form = _raw_forms[key] = _made_raw(done, values)
    return form, processors


def _made_raw(done: Any, values: dict[str, Any]) -> _RawForm:
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
        return f"${order.setdefault(match.group(1), len(order) + 1)}"

    sql = _PLACEHOLDER.sub(placeholder, expanded.statement)
    sources: list[tuple[str | None, Any]] = []
    for name in order:
        original, i = expanded_from.get(name, (name, None))
        if original in values:
            sources.append((original, i))
        else:
            sources.append((None, expanded.parameters[name]))
    binders = tuple(expanded.processors.get(name) for name in order)
    return _RawForm(done, sql, tuple(sources), binders)


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
    form, processors = _raw_form(statement, dialect, values)
    cursor = psycopg.RawCursor(driver)
    cursor.execute(form.sql, _arguments(form, values))
    return cursor, processors


def rows(sent: tuple[Any, list[Any]]) -> list[tuple[Any, ...]]:
    cursor, processors = sent
    return [tuple(p(v) if p else v for p, v in zip(processors, row)) for row in cursor.fetchall()]


def fetch_all(conn: Connection, statement: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of `statement`, in the connection's transaction: through psycopg on
    PostgreSQL (see the module's note), through SQLAlchemy on SQLite."""
    if conn.dialect.name != "postgresql":
        return [tuple(row) for row in conn.execute(statement, values)]
    if not conn.in_transaction():
        conn.begin()  # as SQLAlchemy's own execution would: the caller's COMMIT ends it
    driver = conn.connection.driver_connection
    return rows(send(driver, statement, conn.dialect, values))
