"""The per-Party visibility index (`sat_visibility`): which Parties may see each record.

Derived data, kept by the writers in the transaction that changes what it derives from:
- an ingest batch adds the rows of its new records (`index_new`);
- a registry change re-derives the rows of exactly the records it can change: those of the
  Device in the time range an interval gained or lost, for the Parties concerned
  (`refresh`), or those of a User ID given to a Party (`refresh_user`).

Each row is what `domain.visibility.audiences_at` says, so the rule of `decide()` stays the
authority; readers (store.queries) also apply the rule on top of every row they take from
here, so a stale row could only hide a record, never show one. A property test holds the
table to `decide()` after random interleavings of ingests and registry corrections.

On PostgreSQL an ingest batch holds a shared lock and a registry change an exclusive one
(`REGISTRY_LOCK`): a batch that read the registry before a correction commits its rows
before the correction re-derives them, and one that reads it after sees the correction.
On SQLite the database's single writer gives the same order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy.engine import Connection

from ..domain.visibility import Access, audiences_at
from .driver_sql import parameter_mark
from .schema import MICROSECOND, PG_EPOCH, sqlite_time

OWN, MP141 = 1, 3  # the rule that grants the row, as stored in `access`
ACCESS_CODE = {Access.OWN: OWN, Access.MP141: MP141}
REGISTRY_LOCK = "hashtext('servicetrail.registry')"
log = logging.getLogger("servicetrail.store")
COLUMNS = ("party_id", "access", "logged_at", "record_id", "kind", "srv")
_COPY_TYPES = ["varchar", "int2", "int8", "int8", "varchar", "varchar"]

# A new record as index_new takes it: (id, logged_at in the engine's form, kind, srv or None,
# user_id, device_id)
NewRecord = tuple[Any, ...]


def lock_registry(conn: Connection) -> None:
    """Taken by every registry change before it writes (see the module's note). It waits for
    the ingest batches and registry changes in progress to commit, and says so: a correction
    behind a stalled loader waited without a word (stress test, session 18), and one behind
    another registry load was told it waited for ingest batches (review 26f)."""
    if conn.dialect.name == "postgresql":
        taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({REGISTRY_LOCK})")
        if not taken.scalar_one():
            global _told_waiting_at
            if time.monotonic() - _told_waiting_at >= TELL_WAITING_EVERY_SECONDS:
                # once a minute: a load of small batches beside an ingest said it 52 times
                log.warning(
                    "waiting for the ingest batches and registry changes in progress to commit "
                    "(registry lock)"
                )
                _told_waiting_at = time.monotonic()
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({REGISTRY_LOCK})")


TELL_WAITING_EVERY_SECONDS = 60.0
_told_waiting_at = -TELL_WAITING_EVERY_SECONDS


def share_registry(driver: Any) -> None:
    """Taken by an ingest batch, on PostgreSQL, before it draws ids for its records (see the
    module's note): a registry change that holds the lock knows that no transaction still
    open holds an id, which lets it pass the watch matcher's gaps in the ids
    (`store.watch_matcher.match_before_registry_change`)."""
    driver.execute(f"SELECT pg_advisory_xact_lock_shared({REGISTRY_LOCK})")


# --- an ingest batch ---------------------------------------------------------------------


def index_new(conn: Connection, records: Sequence[NewRecord]) -> int:
    """Add the index rows of records this transaction has just written (holding the registry's
    lock shared, on PostgreSQL: `share_registry`); returns how many."""
    if not records:
        return 0
    driver: Any = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    owners = _owners_raw(driver, postgres, {r[4] for r in records})
    shared = {r[5] for r in records if r[5]}
    spans = _spans_raw(driver, postgres, shared) if shared else {}
    rows = []
    for record_id, at, kind, srv, user_id, device_id in records:
        for party_id, access in audiences_at(
            kind, device_id, at, owners.get(user_id), spans.get(device_id, ())
        ).items():
            rows.append((party_id, ACCESS_CODE[access], at, record_id, kind, srv))
    _write_rows(driver, postgres, rows)
    return len(rows)


def _write_rows(driver: Any, postgres: bool, rows: list[tuple[Any, ...]]) -> None:
    """Index rows (COLUMNS, times in the engine's form) in bulk: binary COPY, or executemany."""
    if postgres:
        with (
            driver.cursor() as cursor,
            cursor.copy(
                f"COPY sat_visibility ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(COLUMNS))
        driver.executemany(
            f"INSERT INTO sat_visibility ({', '.join(COLUMNS)}) VALUES ({marks})", rows
        )


def _owners_raw(driver: Any, postgres: bool, user_ids: set[str]) -> dict[str, str]:
    if postgres:
        rows = driver.execute(
            "SELECT user_id, party_id FROM dcc_user WHERE user_id = ANY(string_to_array(%s, ','))",
            (pg_joined(list(user_ids)),),
        ).fetchall()
    else:
        rows = driver.execute(
            "SELECT user_id, party_id FROM dcc_user WHERE user_id IN "
            "(SELECT value FROM json_each(?))",
            (orjson.dumps(list(user_ids)).decode(),),
        ).fetchall()
    return dict(rows)


# The spans' times as the batch's rows carry them on PostgreSQL, microseconds since 2000-01-01
# UTC: the server converts them for less than psycopg's datetimes and Python's arithmetic cost
_PGMICROSECONDS = "(extract(epoch FROM {0}) * 1000000)::int8 - 946684800000000"
_PG_SPANS = (
    f"SELECT device_id, party_id, {_PGMICROSECONDS.format('valid_from')}, "
    f"{_PGMICROSECONDS.format('valid_to')} FROM responsibility "
    "WHERE device_id = ANY(string_to_array(%s, ','))"
)


def _spans_raw(
    driver: Any, postgres: bool, device_ids: set[str]
) -> dict[str, list[tuple[Any, ...]]]:
    """Each device's Responsibility spans (party_id, valid_from, valid_to) with times in the
    engine's form, as the batch's rows carry them."""
    spans: dict[str, list[tuple[Any, ...]]] = {}
    if postgres:
        rows = driver.execute(_PG_SPANS, (pg_joined(list(device_ids)),)).fetchall()
        for device_id, party_id, start, end in rows:
            spans.setdefault(device_id, []).append((party_id, start, end))
        return spans
    rows = driver.execute(
        "SELECT device_id, party_id, valid_from, valid_to FROM responsibility "
        "WHERE device_id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(list(device_ids)).decode(),),
    ).fetchall()
    for device_id, party_id, start, end in rows:
        spans.setdefault(device_id, []).append((party_id, start, end))
    return spans


# --- a registry change -------------------------------------------------------------------


class Touched(NamedTuple):
    """Records of `device_id` logged in [start, end) (end None: open) whose visibility to
    `parties` a registry change may have changed. (A tuple: a registry load makes one per
    interval, and a frozen dataclass cost as much to make as the interval's validation.)"""

    device_id: str
    start: datetime
    end: datetime | None
    parties: frozenset[str]


def touched_by(
    device_id: str,
    before: tuple[str, datetime, datetime | None] | None,
    after: tuple[str, datetime, datetime | None] | None,
) -> Touched | None:
    """What replacing one interval (party_id, valid_from, valid_to) by another (either None:
    none) on a device can change. The same Party keeping the interval with another end
    changes only the span between the two ends; anything else, the whole of both."""
    if before is None and after is not None:  # a new interval: the common case, kept cheap
        return Touched(device_id, after[1], after[2], frozenset((after[0],)))
    spans = [s for s in (before, after) if s is not None]
    if not spans or before == after:
        return None
    if before is not None and after is not None and before[:2] == after[:2]:
        ends = [before[2], after[2]]
        lower = min(e for e in ends if e is not None)
        upper = None if None in ends else max(ends)  # type: ignore[type-var]
        return Touched(device_id, lower, upper, frozenset({before[0]}))
    start = min(s[1] for s in spans)
    ends = [s[2] for s in spans]
    end = None if None in ends else max(ends)  # type: ignore[type-var]
    return Touched(device_id, start, end, frozenset(s[0] for s in spans))


# A span's last instant, inclusive: an open interval's records run to the end of time, the
# last instant the inputs can name (a bound keeps the probe one index range); a closed one's
# stop a microsecond, the stored times' grain, before its exclusive end. With the end itself
# and `<`, a record at the last instant was outside every open span, and a registry change
# never re-derived its rows (audit 25b).
_LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
_GRAIN = timedelta(microseconds=1)
_RECORD = "s.id, s.logged_at, s.kind, s.srv, s.user_id, s.device_id"
# one statement for the whole batch: each (device, start, end, party) probes the trail's
# (device_id, logged_at) index once
_PG_TOUCHED = (
    f"SELECT {_RECORD}, t.party_id FROM unnest(string_to_array(%s, ','), "
    f"string_to_array(%s, ',')::timestamptz[], string_to_array(%s, ',')::timestamptz[], "
    f"string_to_array(%s, ',')) AS t(device_id, start_at, last_at, party_id) "
    f"JOIN sat_record s ON s.device_id = t.device_id AND s.logged_at >= t.start_at "
    f"AND s.logged_at <= t.last_at"
)
# CROSS JOIN: SQLite then keeps the touched list outside and probes the trail's index per entry
_SQLITE_TOUCHED = (
    f"SELECT {_RECORD}, t.value ->> 3 FROM json_each(?) AS t CROSS JOIN sat_record s "
    f"WHERE s.device_id = t.value ->> 0 AND s.logged_at >= t.value ->> 1 "
    f"AND s.logged_at <= t.value ->> 2"
)
_PG_FORGET = (
    "DELETE FROM sat_visibility v USING unnest(string_to_array(%s, ','), "
    "string_to_array(%s, ',')::timestamptz[], string_to_array(%s, ',')::int8[]) "
    "AS p(party_id, logged_at, record_id) WHERE v.party_id = p.party_id AND v.access IN (1, 3) "
    "AND v.logged_at = p.logged_at AND v.record_id = p.record_id"
)
_SQLITE_FORGET = (
    "DELETE FROM sat_visibility WHERE party_id = ? AND access IN (1, 3) AND logged_at = ? "
    "AND record_id = ?"
)


def devices_with_records(conn: Connection, device_ids: Iterable[str]) -> set[str]:
    """The Devices among these that have any SAT record: only theirs have index rows a
    registry change can alter (and a first load, before any traffic, has none)."""
    device_ids = list(device_ids)
    if not device_ids:
        return set()
    driver: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        found = driver.execute(
            "SELECT d FROM unnest(string_to_array(%s, ',')) AS d "
            "WHERE EXISTS (SELECT 1 FROM sat_record s WHERE s.device_id = d)",
            (pg_joined(device_ids),),
        )
    else:
        found = driver.execute(
            "SELECT value FROM json_each(?) "
            "WHERE EXISTS (SELECT 1 FROM sat_record s WHERE s.device_id = value)",
            (orjson.dumps(device_ids).decode(),),
        )
    return {d for (d,) in found.fetchall()}


def refresh(conn: Connection, touched: Iterable[Touched]) -> int:
    """Re-derive the rows of the records `touched` names, for the Parties it names, from the
    registry as this transaction sees it; returns how many (record, Party) pairs were looked
    at. Set-based: a statement for many Touched, read a round of records at a time."""
    spans = [
        (t.device_id, t.start, t.end - _GRAIN if t.end else _LAST_INSTANT, party)
        for t in touched
        for party in t.parties
    ]
    driver: Any = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    looked = 0
    for first in range(0, len(spans), _SPANS_A_STATEMENT):
        some = spans[first : first + _SPANS_A_STATEMENT]
        params: tuple[str, ...]
        if postgres:
            device_ids, starts, lasts, parties = zip(*some)
            statement, params = (
                _PG_TOUCHED,
                (
                    pg_joined(device_ids),
                    ",".join(map(_iso_text, starts)),
                    ",".join(map(_iso_text, lasts)),
                    pg_joined(parties),
                ),
            )
        else:
            entries = [(d, sqlite_text(start), sqlite_text(last), p) for d, start, last, p in some]
            statement, params = _SQLITE_TOUCHED, (orjson.dumps(entries).decode(),)
        for found in _in_rounds(driver, postgres, statement, params):
            looked += _rederive(driver, postgres, found)
    return looked


def refresh_user(conn: Connection, user_id: str, party_id: str) -> int:
    """A User ID newly given to `party_id`: its records become that Party's own."""
    driver: Any = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    mark = parameter_mark(conn)
    statement = f"SELECT {_RECORD}, {mark} FROM sat_record s WHERE s.user_id = {mark}"
    return sum(
        _rederive(driver, postgres, found)
        for found in _in_rounds(driver, postgres, statement, (party_id, user_id))
    )


# A correction's records were read and re-derived all at once: 10,000 network operators'
# intervals corrected on a store of 400k records held 619 MB (audit 26e). A statement now
# takes so many spans, and its records are read and re-derived a round at a time.
_SPANS_A_STATEMENT = 2_000
_RECORDS_A_ROUND = 20_000


def _in_rounds(
    driver: Any, postgres: bool, statement: str, params: tuple[Any, ...]
) -> Iterator[list[tuple[Any, ...]]]:
    """The statement's rows, a round at a time (a server-side cursor on PostgreSQL, whose
    client would otherwise hold them all; SQLite steps through its result as asked). The
    index rows written between two rounds are of another table than the one read."""
    if postgres:
        with driver.cursor(name="servicetrail_touched") as cursor:
            cursor.execute(statement, params)
            while found := cursor.fetchmany(_RECORDS_A_ROUND):
                yield found
        return
    cursor = driver.execute(statement, params)
    while found := cursor.fetchmany(_RECORDS_A_ROUND):
        yield found


def pg_joined(keys: Sequence[str]) -> str:
    """Keys (Device, User or Party IDs) as one text parameter for `string_to_array(%s, ',')`:
    psycopg quotes a list's items one by one in Python, twenty times slower for a batch.
    These IDs are validated to hold no comma; a key that did would split, so it is refused."""
    joined = ",".join(keys)
    if joined.count(",") != max(len(keys) - 1, 0):
        raise ValueError("an ID holding a comma cannot be looked up in bulk")
    return joined


@lru_cache(maxsize=1 << 16)
def _iso_text(value: datetime) -> str:
    return value.isoformat()


# a registry's times repeat: intervals start and end on a few thousand days
sqlite_text = lru_cache(maxsize=1 << 16)(sqlite_time)


def _rederive(driver: Any, postgres: bool, found: list[tuple[Any, ...]]) -> int:
    """Replace the index rows of each (record, Party) in `found` (a record's columns as
    _RECORD lists them, then the Party) by what the rule says now."""
    if not found:
        return 0
    records: dict[int, tuple[Any, ...]] = {}
    parties_of: dict[int, set[str]] = {}
    for *record, party_id in found:
        records[record[0]] = tuple(record)
        parties_of.setdefault(record[0], set()).add(party_id)
    owners = _owners_raw(driver, postgres, {r[4] for r in records.values()})
    devices = {r[5] for r in records.values() if r[5]}
    spans = _spans_raw(driver, postgres, devices) if devices else {}
    forget, rows = [], []
    for record_id, (_, logged_at, kind, srv, user_id, device_id) in records.items():
        at = (
            (logged_at - PG_EPOCH) // MICROSECOND if postgres else logged_at
        )  # as _spans_raw gives times
        parties = parties_of[record_id]
        forget += [(party_id, logged_at, record_id) for party_id in parties]
        granted = audiences_at(kind, device_id, at, owners.get(user_id), spans.get(device_id, ()))
        for party_id, access in granted.items():
            if party_id in parties:
                rows.append((party_id, ACCESS_CODE[access], at, record_id, kind, srv))
    # the records' months, and so these partitions, exist
    if postgres:
        forget_parties, times, record_ids = zip(*forget)
        driver.execute(
            _PG_FORGET,
            (
                pg_joined(forget_parties),
                ",".join(map(_iso_text, times)),
                ",".join(map(str, record_ids)),
            ),
        )
    else:
        driver.executemany(_SQLITE_FORGET, forget)
    _write_rows(driver, postgres, rows)
    return len(records)


__all__ = [
    "ACCESS_CODE",
    "MP141",
    "OWN",
    "Touched",
    "devices_with_records",
    "index_new",
    "lock_registry",
    "pg_joined",
    "refresh",
    "refresh_user",
    "share_registry",
    "sqlite_text",
    "touched_by",
]
