"""Statement time limits: a search that would run too long stops and says so."""

from __future__ import annotations

import re
import sqlite3
from enum import Enum
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .. import settings
from ..domain.times import seconds_text
from .postgresql_errors import psycopg_error


class Budget(Enum):
    """A time limit named rather than given in seconds: its seconds are the setting's value
    when the statement runs (read_transaction.time_limit asks), so that no module holds a
    copy taken when it was imported, and a bad value is refused by the settings, not at import."""

    SEARCH = "statement_timeout"
    # exports and CLI listings stream a whole answer in one statement
    EXPORT = "export_timeout"

    def seconds(self) -> float:
        return float(getattr(settings.current(), self.value))


DEFAULT_SECONDS = Budget.SEARCH
EXPORT_SECONDS = Budget.EXPORT


def seconds_of(limit: float | Budget) -> float:
    return limit.seconds() if isinstance(limit, Budget) else limit


class SearchTooBroad(RuntimeError):
    """A search ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds  # for a page to say it with its own way to narrow it
        super().__init__(
            f"the search took longer than {seconds_text(seconds)} and was stopped: "
            "narrow it (a Device ID, a Request ID or a shorter date range)"
        )


class StoreBusy(RuntimeError):
    """The store could not do it now, and nothing was written: SQLite's one write lock was
    not had within its busy timeout (another writer held it), or its file cannot be opened;
    PostgreSQL's connection was lost mid-request (a restart: the pool has let it go), the
    server cannot be reached, or a statement waited on a lock past its time limit. The same
    request may simply be made again (HTTP: 503 with Retry-After; the CLI: exit 3)."""

    RETRY_AFTER_SECONDS = 1

    def __init__(self, message: str = "the store is busy with another write") -> None:
        super().__init__(f"{message}; try again")
        self.reason = message


class StoreAway(StoreBusy):
    """A PostgreSQL store's server could not take the connection that opens the store, and
    waiting may mend it (store.server_away): exit 3, as the same outage part way through."""


# the store's reader role (store.reader_role), or the shared one of stores before 0019
# matched by the role's name alone, which every translation of "role ... does not exist" quotes
# (`lc_messages`: German says `Rolle »servicetrail_reader_...« existiert nicht`)
READER_ROLE_MISSING = re.compile(r"\bservicetrail_reader(_[0-9a-f]{12})?\b")


class StoreMisconfigured(StoreBusy):
    """PostgreSQL refused the reader role every Party's read runs as, or a table to it inside
    a read (store.read_transaction): the role or its grants are missing, as after a restore
    onto a new server without them (docs/operating.md, Backups). Nothing the
    request did, and nothing a retry mends: an administrator must (HTTP: 503 without
    Retry-After; the CLI: exit 3). Any other refusal of a privilege is a bug, and stays one."""

    def __init__(self) -> None:
        message = (
            "the store's reader role or its grants are missing (a restore onto a new server "
            "without them?): `servicetrail db check` names what to repair"
        )
        RuntimeError.__init__(self, message)
        self.reason = message


def store_busy(error: BaseException) -> StoreBusy | None:
    """`error` as StoreBusy when it says the store is busy, gone or unreachable (raised by
    the driver, or wrapped by SQLAlchemy), else None."""
    if isinstance(error, PoolTimeout):
        return StoreBusy("every connection to the store is in use")
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return StoreBusy("the connection to the store was lost")
    cause = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(cause, sqlite3.OperationalError):
        said = str(cause)
        if "database is locked" in said:
            return StoreBusy()
        if "unable to open database file" in said or "disk I/O error" in said:
            return StoreBusy("the store's file cannot be opened")
        if "database or disk is full" in said:  # was a 500 with a traceback (audit, session 19)
            # the remedy named: "try again" alone failed again the same way until someone
            # freed space, which the operator reading it had to guess (audit 54g)
            return StoreBusy("the store's disk is full: free space on it")
    if reader_role_missing(cause):
        return StoreMisconfigured()
    if psycopg_error(cause, "OperationalError"):
        return StoreBusy(_postgresql_says(cause))
    return None


def reader_role_missing(error: BaseException | None) -> bool:
    """PostgreSQL's refusal to become the reader role, which does not exist."""
    return psycopg_error(error, "InvalidParameterValue") and bool(
        READER_ROLE_MISSING.search(str(error))
    )


DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


def deadlocked(error: BaseException) -> bool:
    """Whether PostgreSQL failed the transaction to break a deadlock: nothing of it was
    kept, and running it again is the remedy."""
    return getattr(getattr(error, "orig", error), "sqlstate", None) == DEADLOCK_DETECTED


def _postgresql_says(cause: Any) -> str:
    """Why PostgreSQL could not do it, by its error's class: every one of them was "cannot be
    reached", a full disk and a deadlock included (audit, session 19)."""
    if psycopg_error(cause, "QueryCanceled", "LockNotAvailable"):
        # a search past its limit is SearchTooBroad before it gets here: this one waited
        return "the store did not answer in time"
    state = cause.sqlstate or ""
    if state.startswith("53"):  # insufficient resources: disk full, out of memory, too many
        return "the store's server is out of room (disk, memory or connections)"
    if state == DEADLOCK_DETECTED:
        return "the store was busy with another change (a deadlock)"
    return "the store cannot be reached"
