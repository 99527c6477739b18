"""What the engine does for a statement, counted rather than timed (times on a shared
machine are noise): the statements a read sends, the SQLite virtual machine instructions one
executes, and the nodes of PostgreSQL's executed plan with the rows each produced. Exact and
repeatable for a statement, its plan and the data: the tests of how much work a read does
(test_lookup_work and its kin) compare these."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime

import psycopg
import psycopg.sql
from sqlalchemy import event
from sqlalchemy.engine import Engine

from devsupport.sqlite_steps import instructions
from servicetrail.domain.visibility import Viewer
from servicetrail.store.read_transaction import read_as


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """What SQLAlchemy sends, and on PostgreSQL what is sent through psycopg itself (the read
    and the transaction's settings go in one pipeline, past SQLAlchemy)."""
    sent: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    driver_execute = psycopg.Cursor.execute

    def keep_driver(self, query, params=None, **options):  # type: ignore[no-untyped-def]
        sent.append((query, params))
        return driver_execute(self, query, params, **options)

    event.listen(engine, "before_cursor_execute", keep)
    psycopg.Cursor.execute = keep_driver  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = driver_execute  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", keep)


def sqlite_instructions(engine: Engine, statement: str, parameters: object) -> int:
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        driver.execute(statement, parameters).fetchall()  # the first run also reads the schema
        return instructions(driver, statement, parameters)
    finally:
        raw.close()


def _pg_type(value: object) -> str:
    if isinstance(value, list):
        return _pg_type(value[0] if value else "") + "[]"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, datetime):
        return "timestamptz"
    return "text"


def positional(statement: str, named: dict[str, object]) -> tuple[str, list[object]]:
    """A statement as SQLAlchemy sends it (`%(name)s`) in the server's own `$n`, with its
    values in their order: what `postgres_nodes` prepares, to measure the generic plan."""
    order: list[str] = []

    def numbered(m: re.Match[str]) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    numbered_statement = re.sub(r"%\((\w+)\)s", numbered, statement).replace("%%", "%")
    return numbered_statement, [named[name] for name in order]


def postgres_nodes(
    engine: Engine, viewer: Viewer | None, statement: str, parameters: object
) -> list[tuple]:
    """Every node of the executed plan: its type, the relation it reads, how often it ran, the
    rows it produced and those its conditions removed (no times, no costs: those vary from
    run to run). With `parameters` a list (`positional`), of the generic plan, as the service
    runs a search; with a dict, of a plan made for the values given (EXPLAIN of the
    statement itself). `viewer` None: run as the store's owner, as its small reads are."""
    explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) "
    with (
        engine.connect() as conn,
        read_as(conn, viewer, generic_plan=True) if viewer else nullcontext(),
    ):
        if isinstance(parameters, list):  # sent with the server's own $n placeholders
            # prepared, then executed: the plan the service runs (a generic one, as read_as
            # asks), where EXPLAIN of the statement itself plans for the values given
            cursor = psycopg.RawCursor(conn.connection.driver_connection)
            types = ", ".join(_pg_type(value) for value in parameters)
            cursor.execute(f"PREPARE measured({types}) AS {statement}")
            driver = conn.connection.driver_connection
            arguments = ", ".join(psycopg.sql.Literal(v).as_string(driver) for v in parameters)
            plan = cursor.execute(f"{explain}EXECUTE measured({arguments})").fetchone()[0]
            cursor.execute("DEALLOCATE measured")
        else:
            plan = conn.exec_driver_sql(explain + statement, parameters).scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes, pending = [], [plan[0]["Plan"]]
    while pending:
        node = pending.pop()
        nodes.append(
            (
                node["Node Type"],
                node.get("Relation Name"),
                node["Actual Loops"],
                node["Actual Rows"],
                node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Join Filter", 0),
            )
        )
        pending += node.get("Plans", [])
    return nodes
