"""A Party's page of the access log does the same work whatever other Parties read meanwhile,
so that its time cannot count their reads (SPEC section 8: a Party sees its own entries only).

Audit 50e, not fixed yet (hence the strict xfail on PostgreSQL): a Party's page over a window
newer than the table's statistics is read through the index of everyone's entries by time
(`ix_access_log_at`), and each other Party's entry in the window is read and dropped by the
party filter: 3,000 other entries in five minutes cost 61 buffers against 3 for an empty
window. Bounds on the row (party_id, at), which only the Party's index takes, kept the plan
but no longer ended a backward scan at the window's start (299 buffers, 1.7 ms against 0.02,
the Party's every older entry walked): the fix is more likely an index by time that a Party's
statement cannot use (an expression only the auditor's statement names). Counted, not timed, as
test_lookup_work counts a look-up (each plan node's rows, and those its filter removed; on
SQLite its virtual machine's instructions). The entries are written after the statistics
are gathered, as the newest entries always are between two ANALYZEs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from servicetrail.domain.visibility import Viewer
from servicetrail.store.access_log import EntryFilter, entries_page
from servicetrail.store.access_partitions import ensure_access_months
from servicetrail.store.access_tables import access_log
from tests.store.work_counted import postgres_nodes, sqlite_instructions, statements_sent

VIEWER, OTHER = "VIEWERP", "OTHERP"
BUSY = datetime(2027, 6, 1, tzinfo=timezone.utc)  # the other Party's window
QUIET = BUSY + timedelta(days=1)  # nobody's
WINDOW = timedelta(minutes=5)


def entries(party: str, start: datetime, n: int, step: timedelta) -> list[dict]:
    return [
        {
            "at": start + k * step,
            "party_id": party,
            "actor": "someone",
            "interface": "api",
            "action": "record",
            "filters": "{}",
            "records_returned": 1,
            "mp141_records_returned": 0,
            "device_ids": "[]",
        }
        for k in range(n)
    ]


def _months_made(engine: Engine) -> None:
    """PostgreSQL: the months these entries are in have their partitions (the store makes
    three months ahead of now; these are written past them, through no writer)."""
    if engine.dialect.name == "postgresql":
        ensure_access_months(engine, [BUSY - timedelta(days=10), BUSY, QUIET])


def page_work(engine: Engine, start: datetime):
    """The work of the statement with which the viewer's page of [start, start + WINDOW)
    reads the access log (it finds none of the viewer's entries)."""
    wanted = EntryFilter(VIEWER, start, start + WINDOW)
    with statements_sent(engine) as sent, engine.connect() as conn:
        found, _ = entries_page(conn, wanted, 100)
    assert found == []
    statement, parameters = next((s, p) for s, p in sent if "FROM access_log" in s)
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, statement, parameters)
    return postgres_nodes(engine, Viewer(VIEWER, frozenset()), statement, parameters)


def test_a_partys_page_does_the_same_work_whatever_others_read_in_its_window(
    engine: Engine, request: pytest.FixtureRequest
) -> None:
    _months_made(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(access_log), entries(VIEWER, BUSY - timedelta(days=10), 200, timedelta(hours=1))
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE access_log"))
    with engine.begin() as conn:
        conn.execute(insert(access_log), entries(OTHER, BUSY, 1000, WINDOW / 1000))
    assert page_work(engine, BUSY) == page_work(engine, QUIET)


def test_an_auditors_page_still_reads_everyones_entries_by_time(engine: Engine) -> None:
    """The index by time is partial on a clause only the auditor's statement writes (migration
    0026): the auditor's page must still find it, not scan the log (on PostgreSQL, its copy
    on the month's partition, migration 0028)."""
    _months_made(engine)
    with engine.begin() as conn:
        conn.execute(insert(access_log), entries(OTHER, BUSY, 1000, WINDOW / 1000))
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE access_log"))
    wanted = EntryFilter(None, BUSY, BUSY + WINDOW)
    with statements_sent(engine) as sent, engine.connect() as conn:
        found, _ = entries_page(conn, wanted, 10)
    assert len(found) == 10
    statement, parameters = next((s, p) for s, p in sent if "FROM access_log" in s)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        else:
            plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        names = {"ix_access_log_at"}
        if engine.dialect.name == "postgresql":
            names |= set(
                conn.exec_driver_sql(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'ix_access_log_at'::regclass"
                ).scalars()
            )
    assert any(f" {name} " in str(plan) for name in names), plan
