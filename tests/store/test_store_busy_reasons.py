"""What a store that cannot do it now is said to be, by the driver's own error: each is
answered 503 with Retry-After (the CLI: exit 3), and the words say which it is."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from servicetrail.store.limits import StoreBusy, deadlocked, store_busy


@pytest.mark.parametrize(
    "error, said",
    [
        # a full disk was a 500 with a traceback on SQLite, "cannot be reached" on PostgreSQL
        (psycopg.errors.DiskFull("could not extend file"), "out of room"),
        (psycopg.errors.OutOfMemory("out of memory"), "out of room"),
        (psycopg.errors.DeadlockDetected("deadlock detected"), "deadlock"),
        (psycopg.errors.LockNotAvailable("lock timeout"), "did not answer in time"),
        (psycopg.errors.AdminShutdown("terminating connection"), "cannot be reached"),
        (psycopg.OperationalError("connection refused"), "cannot be reached"),
        (sqlite3.OperationalError("database is locked"), "busy with another write"),
    ],
)
def test_each_driver_error_is_said_for_what_it_is(error: Exception, said: str) -> None:
    busy = store_busy(error)
    assert isinstance(busy, StoreBusy) and said in str(busy)


def test_a_deadlock_is_told_as_the_driver_raised_it_and_as_sqlalchemy_wrapped_it() -> None:
    """A webhook round runs again after either (webhooks.rounds.settle): its lease's entries
    raise the driver's own (tests/webhooks/test_delivery.py has a real one), its other
    statements SQLAlchemy's."""
    raw = psycopg.errors.DeadlockDetected("deadlock detected")
    assert deadlocked(raw) and deadlocked(OperationalError("UPDATE", {}, raw))
    assert not deadlocked(OperationalError("UPDATE", {}, psycopg.errors.LockNotAvailable("x")))


def test_a_full_sqlite_disk_is_a_busy_store_not_a_bug(tmp_path) -> None:
    """SQLite's own 'database or disk is full', made by capping the file's pages."""
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA max_page_count = 3"))
    engine.dispose()
    with pytest.raises(OperationalError) as raised, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    busy = store_busy(raised.value)
    assert isinstance(busy, StoreBusy) and "disk is full: free space on it" in str(busy)


def test_a_store_in_memory_still_opens() -> None:
    """Its pool is one connection, which takes no pool_timeout: `--db sqlite://` failed with
    "Invalid argument(s) 'pool_timeout'" (review, session 19)."""
    from servicetrail.store.engine import make_engine

    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
