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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from .access_tables import access_log
from .schema import sqlite_time

_COLUMNS = tuple(c.name for c in access_log.columns if c.name != "id")
_NAMES = ", ".join(_COLUMNS)
_SQLITE_INSERT = f"INSERT INTO access_log ({_NAMES}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_POSTGRES_INSERT = f"INSERT INTO access_log ({_NAMES}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"


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


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """One transaction through the driver itself: SQLAlchemy's statement execution was most
    of an entry's cost (profiled), for a statement that never changes."""
    driver: Any = conn.connection.driver_connection
    sqlite = conn.dialect.name == "sqlite"
    values = [
        tuple(sqlite_time(row[c]) if sqlite and c == "at" else row[c] for c in _COLUMNS)
        for row in rows
    ]
    cursor = driver.cursor()
    try:
        cursor.executemany(_SQLITE_INSERT if sqlite else _POSTGRES_INSERT, values)
        driver.commit()
    except BaseException:
        driver.rollback()
        raise
    finally:
        cursor.close()


_group = GroupCommit()


def write_committed(conn: Connection, row: dict[str, Any]) -> None:
    """Appends `row` to the access log, batched with concurrent entries (see the note);
    `conn` must not be in a transaction."""
    _group.write(conn, row)


__all__ = ["GroupCommit", "write_committed"]
