"""A store whose schema changes under a running process: `db upgrade` (of a newer servicetrail)
while a `serve` or `deliver` of this one still runs. That process kept serving on a schema it
did not know: on SQLite silently, writing rows as its own schema had them; on PostgreSQL,
from before 0019, a 500 for every read (audit 48d). This version will be the old one at the
next upgrade, so it watches now: once opened at its own revision (`arm`), each checkout of a
pooled connection looks whether the store is still at it, and past a change every checkout
raises StoreUpgraded (HTTP 503; the CLI exit 2) until the process is restarted.

What a look costs: on SQLite a read of the one-row alembic_version at each checkout, +3.3 us
(a checkout and checkin took 6.7 us, now 10.0, medians on a 1M store; the schema cookie,
`PRAGMA schema_version`, cost about as much alone and misses a migration of data alone). On
PostgreSQL a look is a round trip, so it is made at most once a CHECK_EVERY_SECONDS per
process, and as the ping of a connection idle that long (engine._ping_if_idle), which made
one already (a checkout 8.2 us before, 8.5 after): a request in the second after an upgrade
may still run the old code."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from .postgresql_errors import psycopg_error

CHECK_EVERY_SECONDS = 1.0


class StoreUpgraded(RuntimeError):
    """The store's schema is no longer at the revision this process opened it at."""

    def __init__(self, revision: str | None, mine: str) -> None:
        now = f"at revision {revision}" if revision else "without a schema revision"
        super().__init__(
            f"the store's schema is now {now}, not at {mine} as when this servicetrail "
            "started (upgraded by `servicetrail db upgrade` meanwhile?): nothing was done; "
            "restart servicetrail, of the version that upgraded the store"
        )
        self.revision = revision


class RevisionWatch:
    """One engine's watch: inert until `arm`, then sticky once it has seen a change (a store
    put back at the process's revision is trusted only by a restart)."""

    def __init__(self) -> None:
        self.mine: str | None = None
        self._changed: StoreUpgraded | None = None
        self._looked_at = 0.0
        self._lock = threading.Lock()

    def arm(self, revision: str) -> None:
        self.mine = revision
        self._looked_at = time.monotonic()

    def refuse_if_changed(self) -> None:
        if self._changed is not None:
            raise self._changed

    def due(self) -> bool:
        """Whether the process's next look on PostgreSQL is due (claimed by the caller)."""
        if self.mine is None:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._looked_at < CHECK_EVERY_SECONDS:
                return False
            self._looked_at = now
            return True

    def saw(self, revision: str | None) -> None:
        if self.mine is not None and revision != self.mine:
            self._changed = StoreUpgraded(revision, self.mine)
            raise self._changed

    def on_sqlite_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        self.refuse_if_changed()
        if self.mine is None:
            return
        try:
            row = dbapi_conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            row = None
        self.saw(row[0] if row else None)


def postgresql_revision(dbapi_conn: Any) -> str | None:
    """The store's revision, read outside any transaction (as SQLAlchemy's ping is): one left
    open would hold the request's settings and snapshot to it."""
    before = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            row = cursor.fetchone()
    except Exception as e:
        if not psycopg_error(e, "UndefinedTable"):
            raise
        row = None
    finally:
        if not dbapi_conn.closed:
            dbapi_conn.autocommit = before
    return row[0] if row else None
