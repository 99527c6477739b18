"""Group commit for the access log: the entries of concurrent reads share transactions, and
each read returns only once its own entry is committed (SPEC section 8: the entry is stored
before the first byte is sent).

The first read to arrive writes, on its own connection, every entry waiting by then; reads
that arrive meanwhile wait for that write, and the first of them to find it done writes the
next batch with theirs. Alone, a read writes its entry itself, as without batching; under
load one commit serves many. No thread of its own, so nothing to start, stop or fork.

One INSERT and COMMIT per read, each on its own, cost a device search about 30% of its
throughput at 4 clients on SQLite (bench/access_log.py): SQLite takes one writer at a
time, so readers queued on its write lock, one commit each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from ..domain import merkle
from ..domain.access_log import AccessEntry, leaf_data, log_month
from .access_partitions import (
    ensure_access_months,
    forgot_if_unpartitioned,
    once_more_if_unpartitioned,
)
from .access_tables import access_log
from .engine import RESERVED_ENTRY_ID
from .schema import sqlite_time

ACCESS_FAMILY = "access"  # its monthly logs: <prefix>/access/<YYYY-MM> (store.merkle_log)

_COLUMNS = tuple(c.name for c in access_log.columns if c.name != "id")
_NAMES = ", ".join(_COLUMNS)
# SQLite's id is the cursor's lastrowid: RETURNING cost an entry 10% more (a result set for
# one integer)
_SQLITE_INSERT = f"INSERT INTO access_log ({_NAMES}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_POSTGRES_INSERT = (
    f"INSERT INTO access_log ({_NAMES}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) RETURNING id"
)
# After a read on PostgreSQL, the entry is appended as the store's owner (the one role that
# may append; the read ran as the reader role), with the id its leaf commits to: an id the
# read reserved in its first round trip (`reserve_entry_id`), or one drawn here.
# The rest of a read as the store's owner (on PostgreSQL; SQLite has no roles): for the tables
# the reader role may not read or write, such as the logs', once the rule has decided what the
# viewer may see. The read's other settings stay to the transaction's end.
AS_OWNER = "SELECT set_config('role', 'none', true)"
_POSTGRES_ID = f"{AS_OWNER}, nextval('access_log_id_seq')"
_RESERVED = RESERVED_ENTRY_ID  # in the DBAPI connection's info, until the connection's checkin
_POSTGRES_APPEND = (
    f"WITH entry AS (INSERT INTO access_log (id, {_NAMES}) "
    f"VALUES ({', '.join(['%s'] * (len(_COLUMNS) + 1))})) "
    "INSERT INTO log_pending (family, entry_id, month, leaf_hash, salt) VALUES (%s, %s, %s, %s, %s)"
)
_QUEUE = "INSERT INTO log_pending (family, entry_id, month, leaf_hash, salt) VALUES ({})"
_SQLITE_QUEUE = _QUEUE.format(", ".join("?" * 5))
_POSTGRES_QUEUE = _QUEUE.format(", ".join(["%s"] * 5))


def stored_entry(entry_id: int, row: dict[str, Any]) -> AccessEntry:
    """The entry as it reads back from the store (its JSON columns parsed), whose leaf
    `log verify` recomputes."""
    at: datetime = row["at"]
    return AccessEntry(
        id=entry_id,
        at=at,
        party_id=row["party_id"],
        actor=row["actor"],
        interface=row["interface"],
        action=row["action"],
        filters=orjson.loads(row["filters"]),
        records_returned=row["records_returned"],
        mp141_records_returned=row["mp141_records_returned"],
        device_ids=tuple(orjson.loads(row["device_ids"])),
    )


def queued_leaf(entry: AccessEntry) -> tuple[str, int, str, bytes, None]:
    """The entry's row of the Merkle logs' queue, sealed into its monthly access log."""
    return (ACCESS_FAMILY, entry.id, log_month(entry), merkle.leaf_hash(leaf_data(entry)), None)


@dataclass(slots=True)
class _Pending:
    conn: Connection
    row: dict[str, Any]
    finished: bool = False
    failure: BaseException | None = None


class GroupCommit:
    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._waiting: list[_Pending] = []
        self._writing = False

    def write(self, conn: Connection, row: dict[str, Any]) -> None:
        """Appends `row`; returns once it is committed (raises what failed its batch)."""
        mine = _Pending(conn, row)
        with self._turn:
            self._waiting.append(mine)
            while self._writing and not mine.finished:
                self._turn.wait()
            if not mine.finished:
                self._writing = True
                batch, self._waiting = self._waiting, []
        if not mine.finished:
            try:
                self._write(mine.conn, batch)
            finally:
                with self._turn:
                    self._writing = False
                    self._turn.notify_all()
        if mine.failure is not None:
            raise mine.failure

    @staticmethod
    def _write(conn: Connection, batch: list[_Pending]) -> None:
        """The batch in one transaction per store (a process may serve several, as the tests
        do); each entry learns how its transaction ended."""
        by_store: dict[int, list[_Pending]] = {}
        for pending in batch:
            by_store.setdefault(id(pending.conn.engine), []).append(pending)
        for group in by_store.values():
            failure: BaseException | None = None
            try:
                # a waiting entry's own connection is free (not in a transaction)
                writer = conn if group[0].conn.engine is conn.engine else group[0].conn
                _insert(writer, [p.row for p in group])
            except BaseException as e:  # every waiting read answers with it; none hangs
                failure = e
            for pending in group:
                pending.failure, pending.finished = failure, True


def _partitioned(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: the months of the entries have their partitions (a set look-up, but in
    a process's first entry of a month: migration 0028)."""
    if conn.dialect.name == "postgresql":
        ensure_access_months(conn.engine, [row["at"] for row in rows])


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    once_more_if_unpartitioned(conn.engine, lambda _again: _insert_once(conn, rows))


def _insert_once(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """One transaction through the driver itself: SQLAlchemy's statement execution was most
    of an entry's cost (profiled), for a statement that never changes."""
    _partitioned(conn, rows)
    driver: Any = conn.connection.driver_connection
    sqlite = conn.dialect.name == "sqlite"
    values = [
        tuple(sqlite_time(row[c]) if sqlite and c == "at" else row[c] for c in _COLUMNS)
        for row in rows
    ]
    cursor = driver.cursor()
    try:
        if not sqlite:
            # a lock held on the access log is waited for as a read's is, not for ever (an
            # entry alone, such as a stream's: one after a read has the read's settings;
            # SQLite's connections have a busy timeout). Imported here: that module writes
            # entries through this one
            from .read_transaction import READ_LOCK_WAIT_MS

            cursor.execute(f"SET LOCAL lock_timeout = {int(READ_LOCK_WAIT_MS)}")
        leaves = []
        for row, value in zip(rows, values):
            # one at a time: each entry's id is part of its leaf (a batch is a few entries)
            if sqlite:
                cursor.execute(_SQLITE_INSERT, value)
                entry_id = cursor.lastrowid
            else:
                entry_id = cursor.execute(_POSTGRES_INSERT, value).fetchone()[0]
            leaves.append(queued_leaf(stored_entry(entry_id, row)))
        if len(leaves) == 1:  # the usual batch: executemany's set-up costs more than the row
            cursor.execute(_SQLITE_QUEUE if sqlite else _POSTGRES_QUEUE, leaves[0])
        else:
            cursor.executemany(_SQLITE_QUEUE if sqlite else _POSTGRES_QUEUE, leaves)
        driver.commit()
    except BaseException:
        driver.rollback()
        raise
    finally:
        cursor.close()


def insert_in_transaction(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Appends `rows` in the caller's open transaction, through the driver (a lease of
    webhook deliveries writes hundreds of entries: SQLAlchemy's two statements per entry were
    most of a delivery's cost, profiled). The caller commits."""
    _partitioned(conn, rows)
    driver: Any = conn.connection.driver_connection
    sqlite = conn.dialect.name == "sqlite"
    values = [
        tuple(sqlite_time(row[c]) if sqlite and c == "at" else row[c] for c in _COLUMNS)
        for row in rows
    ]
    cursor = driver.cursor()
    try:
        # each entry's id is part of its leaf: read back one per entry, in order
        ids = []
        if sqlite:
            for value in values:
                cursor.execute(_SQLITE_INSERT, value)
                ids.append(cursor.lastrowid)
        elif values:
            # one pipelined round trip for the batch, not one per entry
            cursor.executemany(_POSTGRES_INSERT, values, returning=True)
            while True:
                ids.append(cursor.fetchone()[0])
                if not cursor.nextset():
                    break
        leaves = [queued_leaf(stored_entry(entry_id, row)) for entry_id, row in zip(ids, rows)]
        cursor.executemany(_SQLITE_QUEUE if sqlite else _POSTGRES_QUEUE, leaves)
    except Exception as e:
        # not tried again: the caller's transaction is aborted; its next try makes the month
        forgot_if_unpartitioned(conn.engine, e)
        raise
    finally:
        cursor.close()


_group = GroupCommit()


def write_in_transaction(conn: Connection, row: dict[str, Any]) -> int:
    """PostgreSQL: appends `row` in the read's own transaction and commits both, and returns
    the entry's id. One round trip when the read reserved the id (`reserve_entry_id`): the
    switch to the owner's role, the entry with its leaf and the COMMIT, pipelined (the COMMIT
    does not wait for the entry's answer; if the entry fails, so does the COMMIT, and the
    error is raised here); else one more, for the id. In a transaction of its own, an entry cost
    about 1.6 times the CPU (client and server), and about 1.5 times with the same statements
    in psycopg's pipeline mode (BENCHMARKS.md). PostgreSQL's concurrent writers need no
    batching, unlike SQLite's single writer (`write_committed`)."""
    import psycopg  # only here on PostgreSQL (store.postgresql_errors)

    _partitioned(conn, [row])
    driver: Any = conn.connection.driver_connection
    reserved: int | None = conn.info.pop(_RESERVED, None)
    entry_id: int = reserved or driver.execute(_POSTGRES_ID).fetchone()[1]
    leaf = queued_leaf(stored_entry(entry_id, row))

    def append(again: bool) -> None:
        if again:  # the id drawn stays drawn (a sequence's), the read's transaction gone
            # (SQLAlchemy's rollback after its failed COMMIT left the driver's aborted)
            driver.rollback()
            _partitioned(conn, [row])
            conn.begin()
        try:
            # a libpq older than 14 has no pipeline mode: the same statements, one round trip each
            with driver.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
                if reserved or again:
                    driver.execute(AS_OWNER)
                driver.execute(_POSTGRES_APPEND, (entry_id, *(row[c] for c in _COLUMNS), *leaf))
                conn.commit()
        except BaseException:
            # the failed COMMIT left the transaction aborted, and the pool would not roll it
            # back: the next read on this connection would fail
            conn.rollback()
            raise

    once_more_if_unpartitioned(conn.engine, append)
    return entry_id


def reserve_entry_id(driver: Any) -> Callable[[Connection], None]:
    """On PostgreSQL, sends (in the read's first pipeline, before the read takes the reader's
    role) the draw of an id for the read's access-log entry; the function returned, called
    once the pipeline is answered, keeps it for `write_in_transaction`, sparing the entry a
    round trip of its own. An id left unused (a read that failed before its entry, a count
    that is not logged) goes to the connection's next entry while the connection is checked
    out, and is dropped when it goes back to the pool (store.engine): a gap in the ids, as a
    sequence leaves. An entry committed after a higher one is sealed
    at the next seal (`merkle_log._queued`)."""
    cursor = driver.execute(_POSTGRES_ID)  # as the owner: the reader role may not draw ids

    def keep(conn: Connection) -> None:
        conn.info[_RESERVED] = cursor.fetchone()[1]

    return keep


def holds_entry_id(conn: Connection) -> bool:
    return _RESERVED in conn.info


def write_committed(conn: Connection, row: dict[str, Any]) -> None:
    """Appends `row` to the access log, batched with concurrent entries (see the note);
    `conn` must not be in a transaction."""
    _group.write(conn, row)


__all__ = [
    "ACCESS_FAMILY",
    "AS_OWNER",
    "GroupCommit",
    "insert_in_transaction",
    "holds_entry_id",
    "queued_leaf",
    "reserve_entry_id",
    "stored_entry",
    "write_committed",
    "write_in_transaction",
]
