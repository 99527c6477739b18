"""Row locks that give way (PostgreSQL), for a writer that takes a row another transaction
may hold in a weaker mode for a while, as a deletion of a watch does."""

from __future__ import annotations

import time

from sqlalchemy import Executable, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..domain.times import seconds_text
from .limits import StoreBusy
from .postgresql_errors import psycopg_error

# A try waits for a row twice at most (for its place in line, then for the holder), each wait
# up to the lock timeout, which is under PostgreSQL's deadlock_timeout: no wait of the try's
# lasts long enough for it to look for a cycle and be failed by it. It does not keep others'
# checks from finding it in one (review 35e): it leaves the line within a turn, so that those
# queued behind it get in, but a cycle it truly closes (holding what the holder waits for)
# is broken by PostgreSQL as before. Callers hold nothing such (watches.delete_watch).
TURN_OF_DEADLOCK_TIMEOUT = 1 / 2
PATIENCE_SECONDS = 30.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.02, 0.5


def lock_giving_way(
    conn: Connection, statement: Executable, what: str, patience: float | None = None
) -> None:
    """Run `statement`, which locks rows, in the caller's transaction, waiting for another's
    lock a short turn at most at a time, stepping out of line for a moment between tries, for
    `patience` seconds (PATIENCE_SECONDS); then StoreBusy, naming `what` waited. Nothing on
    SQLite, whose writers hold its write lock already.

    Why: a transaction waiting for a row keeps its place in the row's line, and whoever comes
    after waits behind it, even where the holder's lock would let them in. A deletion of a
    watch waiting for a matcher's step (which holds it FOR KEY SHARE) kept a turning off of
    webhooks behind it, which held the step's next watch: a cycle that PostgreSQL broke by
    failing the deletion (stress bench, session 35)."""
    if conn.dialect.name != "postgresql":
        return
    patience = PATIENCE_SECONDS if patience is None else patience
    before, deadlock_ms = conn.execute(
        text(
            "SELECT current_setting('lock_timeout'), "
            "extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000"
        )
    ).one()
    turn = f"{max(1, int(float(deadlock_ms) * TURN_OF_DEADLOCK_TIMEOUT))}ms"
    deadline = time.monotonic() + patience
    pause = _FIRST_PAUSE
    while True:
        try:
            with conn.begin_nested():  # a lock not had in time undoes only this try
                _lock_timeout(conn, turn)
                conn.execute(statement)
            break
        except DBAPIError as e:
            if not psycopg_error(e.orig, "LockNotAvailable"):
                raise
        if time.monotonic() + pause > deadline:
            raise StoreBusy(f"{what} waited {seconds_text(patience)} for work in progress on it")
        time.sleep(pause)
        pause = min(_LONGEST_PAUSE, pause * 2)
    _lock_timeout(conn, before)  # the rest of the transaction waits as it would have


def _lock_timeout(conn: Connection, value: str) -> None:
    conn.execute(text("SELECT set_config('lock_timeout', :value, true)"), {"value": value})
