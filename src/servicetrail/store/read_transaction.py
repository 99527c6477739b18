"""The read transaction: every read of SAT records runs inside `read_as`, which sets, for
that transaction only, the statement time limit and, on PostgreSQL, the row-level-security
role and viewer (a pooled connection never carries a previous viewer past its transaction)
and the plan mode, and can send a small first read along with those settings.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Executable

from ..domain.visibility import Viewer
from .access_writer import AS_OWNER, holds_entry_id, reserve_entry_id
from .compiled_statements import driver_in_transaction, fetch_all, rows, send
from .reader_role import reader_role
from .postgresql_errors import psycopg_error
from .limits import (
    DEFAULT_SECONDS,
    Budget,
    SearchTooBroad,
    StoreMisconfigured,
    seconds_of,
)

READ_LOCK_WAIT_MS = 5000


def read_as(
    conn: Connection,
    viewer: Viewer,
    seconds: float | Budget = DEFAULT_SECONDS,
    generic_plan: bool = False,
    prefetch: tuple[Any, dict[str, Any]] | None = None,
    then_as_owner: bool = False,
    one_snapshot: bool = False,
) -> AbstractContextManager[list[tuple[Any, ...]] | None]:
    """The context every read runs in (see the module's note); it yields the rows of `prefetch`.

    `then_as_owner`: the rest of the transaction runs as the store's owner (`AS_OWNER`), the
    switch sent right behind `prefetch`, which alone then runs as the viewer.

    `generic_plan`: for statements whose every branch is one ordered index range with a
    LIMIT (the device search, the visibility index), a plan that does not depend on the
    values: planning afresh over every monthly partition cost more than running them
    (BENCHMARKS.md). Other statements keep custom plans (engine.py).

    `one_snapshot`: every statement inside reads the store as it was at the first (see
    `time_limit`)."""
    settings = {
        "servicetrail.party_id": viewer.party_id,
        "servicetrail.user_ids": ",".join(sorted(viewer.user_ids)),
    }
    if conn.dialect.name == "postgresql":
        settings["role"] = reader_role(conn)
    if generic_plan:
        settings["plan_cache_mode"] = "force_generic_plan"
    return time_limit(
        conn,
        seconds,
        settings=settings,
        prefetch=prefetch,
        then_as_owner=then_as_owner,
        one_snapshot=one_snapshot,
    )


def owner_read_limits(conn: Connection, seconds: float | Budget = DEFAULT_SECONDS) -> None:
    """For a small read outside `read_as`, as the store's owner (a token's or a session's
    look-up, a Party's watches, the logs' listing): a search's statement limit and lock wait,
    for the rest of the transaction, on PostgreSQL. Without them a table locked by hand held
    each such request, its thread and its pooled connection for as long as the lock (audit,
    session 19); past them the store is busy (503). SQLite's readers wait on no lock."""
    if conn.dialect.name != "postgresql":
        return
    limit_ms = max(1, int(seconds_of(seconds) * 1000))
    conn.exec_driver_sql(
        "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
        (str(limit_ms), str(_lock_wait_ms(limit_ms))),
    )


def _lock_wait_ms(limit_ms: int) -> int:
    """How long a read waits on a lock: half its time, READ_LOCK_WAIT_MS at most."""
    return max(1, min(limit_ms // 2, READ_LOCK_WAIT_MS))


def custom_plans(conn: Connection) -> None:
    """Back to custom plans inside a read begun with `generic_plan`."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"))


@contextmanager
def time_limit(
    conn: Connection,
    seconds: float | Budget = DEFAULT_SECONDS,
    settings: dict[str, str] | None = None,
    prefetch: tuple[Executable, dict[str, Any]] | None = None,
    then_as_owner: bool = False,
    one_snapshot: bool = False,
) -> Iterator[list[tuple[Any, ...]] | None]:
    """Bound the statements run inside: SQLite by a progress handler, PostgreSQL by
    statement_timeout.

    On PostgreSQL, `settings` are set for the transaction. `prefetch`, a small read the
    caller needs first (a statement and its parameters), is sent with them, and its rows
    are what this yields: BEGIN, the settings and the read go in one round trip
    (psycopg's pipeline mode) instead of three, and each wait on the server is a pair of
    context switches on a busy machine.

    `one_snapshot`, for a read of several statements whose later ones depend on the
    earlier (a device search's intervals, then its records; the visibility index's keys,
    then their records): all of them read one snapshot of the store. Each statement reading
    its own let a registry correction committed between them drop rows the first had
    counted on, and a page came back short with no next cursor: the listing ended there.
    PostgreSQL reads at REPEATABLE READ (a read-only transaction never fails for it);
    SQLite holds one read transaction from the first statement to the last. Where the
    caller's transaction has already read, it keeps the snapshot it has.
    """
    seconds = seconds_of(seconds)  # a Budget's seconds are the setting's value now
    if conn.dialect.name == "postgresql":
        # at least 1 ms: PostgreSQL reads 0 as no limit at all, where SQLite (and the
        # setting's words, "seconds a search may run") stop at once
        limit_ms = max(1, int(seconds * 1000))
        every = {
            **(settings or {}),
            "statement_timeout": str(limit_ms),
            # a read that waits on a lock (retention dropping a month, a table locked by
            # hand) is the store being busy, 503, not a search too broad: past the statement
            # limit both failed alike, as 422 "narrow your search"
            "lock_timeout": str(_lock_wait_ms(limit_ms)),
        }
        names = list(every)
        calls = ", ".join(f"set_config(%(n{i})s, %(v{i})s, true)" for i in range(len(names)))
        params = {
            **{f"n{i}": n for i, n in enumerate(names)},
            **{f"v{i}": every[n] for i, n in enumerate(names)},
        }
        as_reader = True  # the prefetch runs as the reader role, and with it the rest unless
        started = time.monotonic()
        try:  # `then_as_owner` switched back to the owner
            rows = _pipelined(
                conn, f"SELECT {calls}", params, prefetch, then_as_owner, one_snapshot
            )
            as_reader = not then_as_owner
            yield rows
        except Exception as e:  # SQLAlchemy's wrapped errors, and psycopg's from the pipeline
            said = getattr(e, "orig", e)
            if _past_its_limit(said, started, limit_ms):
                raise SearchTooBroad(seconds) from None
            # the reader role refused a table: its grants are missing (a refusal to the
            # owner is another matter: a bug, raised as it is)
            if as_reader and psycopg_error(said, "InsufficientPrivilege"):
                raise StoreMisconfigured() from None
            raise
        return
    raw: Any = conn.connection.dbapi_connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(
        lambda: int(time.monotonic() > deadline), _steps_between_looks(seconds)
    )
    # SQLite's driver begins no transaction for a read: each statement took its own snapshot
    own_snapshot = one_snapshot and not raw.in_transaction
    try:  # (SQLite has no roles: `then_as_owner` has nothing to do)
        # inside: stopped here, it left the handler on the pooled connection, where it stopped
        # every later statement, a write's too, and the request was a 500
        if own_snapshot:
            raw.execute("BEGIN")  # deferred: the snapshot is the first statement's
        yield fetch_all(conn, prefetch[0], prefetch[1]) if prefetch else None
    except OperationalError as e:
        if isinstance(e.orig, sqlite3.OperationalError) and "interrupted" in str(e.orig):
            raise SearchTooBroad(seconds) from None
        raise
    except sqlite3.OperationalError as e:  # from the driver's cursor (store.compiled_statements)
        if "interrupted" in str(e):
            raise SearchTooBroad(seconds) from None
        raise
    finally:
        raw.set_progress_handler(None, 0)
        if own_snapshot:
            # ended here, not by the caller: an access-log entry written next on this
            # connection would otherwise be a write begun from an old snapshot, which
            # SQLite refuses (SQLITE_BUSY_SNAPSHOT) once another writer has committed
            raw.rollback()


def _steps_between_looks(seconds: float) -> int:
    """How many of SQLite's VM steps the progress handler lets run between its looks at the
    clock. SQLite counts them over each prepared statement's runs, and the driver keeps its
    statements prepared: a statement's first look came anywhere in its first 10,000 steps,
    which is a whole page of records for a fresh statement (a new app's, a new connection's
    first search), and a 0 s limit let that one through and stopped the same search the
    next time (59c). A positive limit may run a little past its time (10,000 steps took
    0.55 ms, 20 at the most on a loaded machine: BENCHMARKS.md, session 59); at 0 s
    nothing may run, so the handler looks at every step, and stops the first."""
    return 10_000 if seconds > 0 else 1


def _past_its_limit(error: BaseException, started: float, limit_ms: int) -> bool:
    """Whether PostgreSQL cancelled a read for its statement_timeout: a cancel (SQLSTATE
    57014) once the read has run for its limit. Not by the message's words, which are the
    server's `lc_messages` ("storniere Anfrage wegen Zeitüberschreitung" in German: every
    search past its limit was a 503, not 422). A cancel sooner is someone else's
    (pg_cancel_backend), and the store's, not the search's, to answer for."""
    return psycopg_error(error, "QueryCanceled") and time.monotonic() - started >= limit_ms / 1000


def _pipelined(
    conn: Connection,
    settings_sql: str,
    settings: dict[str, str],
    prefetch: tuple[Executable, dict[str, Any]] | None,
    then_as_owner: bool = False,
    one_snapshot: bool = False,
) -> list[tuple[Any, ...]] | None:
    """The settings (and the prefetch, and the owner's role) through the driver, in one
    pipeline, in a transaction SQLAlchemy knows it began: the connection's COMMIT (or the
    pool's ROLLBACK) ends it, and a read whose one statement is the prefetch is in it too.
    The same round trip draws the id of the read's access-log entry (`reserve_entry_id`)."""
    import psycopg  # only here on PostgreSQL (store.postgresql_errors)

    driver = driver_in_transaction(conn)
    # only before the transaction's first statement (psycopg sends its BEGIN with ours)
    one_snapshot = (
        one_snapshot and driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )
    keep_entry_id = None
    # a libpq older than 14 has no pipeline mode: the same statements, one round trip each
    with driver.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
        if one_snapshot:
            driver.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if not holds_entry_id(conn):  # every read of records ends in an access-log entry
            keep_entry_id = reserve_entry_id(driver)
        driver.execute(settings_sql, settings)
        sent = None
        if prefetch is not None:
            statement, values = prefetch
            sent = send(driver, statement, conn.dialect, values)
        if then_as_owner:  # only once the rule's read is sent: it runs as the viewer
            driver.execute(AS_OWNER)
    if keep_entry_id is not None:
        keep_entry_id(conn)
    return None if sent is None else rows(sent)
