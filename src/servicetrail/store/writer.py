"""Appending to the store: SAT records in idempotent batches, and the registry.

Each batch is one transaction, so a loader killed at any moment leaves whole batches
behind; running it again skips what is there (the natural key) and adds the rest. The
records come as the Rows store.record_rows makes where they are parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import exists, select
from sqlalchemy.engine import Connection

from ..domain.intervals import Conflict
from ..domain.model import SatRecord
from .driver_sql import parameter_mark
from .log_partitions import retired_logs
from .log_records import FAMILY
from .log_tables import log_leaf, log_pending
from .merkle_log import QueuedLeaf, add_leaves, lock_family
from .partitions import ensure_months, forgot_if_unpartitioned
from .record_rows import BARE_FILE, Row, record_row, row_maker
from .schema import FROM_A_BARE_FILE_SQL, MICROSECOND, PG_EPOCH
from .visibility_index import index_new, share_registry

UTC = timezone.utc


RECORD_COLUMNS = (
    "id",
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "user_id",
    "device_id",
    "response_code",
    "command_variant",
    "execution_at",
    "subject_device_id",
    "identity_key",
    "digest",
)
PAYLOAD_COLUMNS = ("record_id", "logged_at", "device_id", "user_id", "payload")
# Times go to PostgreSQL as "int8": binary COPY carries no types, and timestamptz's binary
# form is exactly an int8 of microseconds since 2000-01-01 UTC. An int crosses the pipe from
# the parsing worker several times cheaper than a datetime, and needs no conversion here.
_RECORD_TYPES = [
    "int8",
    "int8",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "int2",
    "int8",
    "varchar",
    "varchar",
    "bytea",
]
_PAYLOAD_TYPES = ["int8", "int8", "varchar", "varchar", "text"]
_DAY_US = 86_400_000_000
_SQLITE_INSERT_RECORD = (
    f"INSERT INTO sat_record ({', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))})"
)
_SQLITE_INSERT_PAYLOAD = (
    f"INSERT INTO sat_payload ({', '.join(PAYLOAD_COLUMNS)}) VALUES ({', '.join('?' * 5)})"
)
_STORED = "SELECT request_id, kind, logged_at, identity_key, digest, id FROM sat_record "
# json_each keeps the statement the same whatever the batch size, and the planner still
# probes the natural-key index once per Request ID
_SQLITE_EXISTING = _STORED + "WHERE request_id IN (SELECT value FROM json_each(?))"
# Request IDs are EUI-64s, colons and digits, never commas: one text parameter is far cheaper
# to send than an array of thousands. The time range lets PostgreSQL skip every monthly
# partition the batch cannot be in; a request from a bare XML file, whose identity has no
# time, is looked for in every month.
_PG_EXISTING = (
    _STORED + "WHERE request_id = ANY(string_to_array(%s, ',')) AND logged_at BETWEEN %s AND %s"
)
_PG_EXISTING_ANY_TIME = _STORED + "WHERE request_id = ANY(string_to_array(%s, ','))"
# ... and a request stored from a bare file, at its file's time, may lie outside the range: a
# capture's copy of it was stored again (audit 29c). Joined, so that PostgreSQL reads the
# small partial index of bare files' requests whole and hashes it (3 ms; as a filter of the
# Request IDs it read every month's for 300 ms).
_PG_BARE_COPIES = (
    "SELECT r.request_id, r.kind, r.logged_at, r.identity_key, r.digest, r.id FROM sat_record r "
    "JOIN unnest(string_to_array(%s, ',')) AS asked(request_id) "
    "ON r.request_id = asked.request_id WHERE r." + FROM_A_BARE_FILE_SQL.replace("%", "%%")
)

_STORED_FIELDS = slice(0, 7), slice(8, 13)  # a Row's columns of sat_record after the id


def _pg_time(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


@dataclass
class Appended:
    """What one append did: rows stored, rows already there, rows refused as conflicts,
    each as (origin, reason), and the stored rows' leaves when the caller appends them."""

    loaded: int = 0
    duplicates: int = 0
    conflicts: list[tuple[int | str, str]] = field(default_factory=list)
    leaves: list[QueuedLeaf] = field(default_factory=list)


def append_records(conn: Connection, batch: Sequence[SatRecord]) -> tuple[int, int]:
    """Append the batch's new records in the caller's transaction; returns (loaded, duplicates).
    For callers that make their own records (the generator, tests): a conflict is an error."""
    make = row_maker(conn.dialect.name)
    done = append_rows(conn, [record_row(make, r, origin=i) for i, r in enumerate(batch)])
    if done.conflicts:
        raise Conflict(f"record {done.conflicts[0][0]} of the batch: {done.conflicts[0][1]}")
    return done.loaded, done.duplicates


_RETIRED = (
    "its month {month} was removed by retention: that month's log is closed at its last "
    "checkpoint, and a record stored there now could never be sealed"
)
_PAST_RETENTION = (
    "its month {month} is older than {newest}, a month removed by retention, which drops "
    "every month before its cutoff: a record of {month} is past it"
)


def _month_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def _pg_month(micros: int) -> str:
    return _month_of(_pg_time(micros))


def _retired_months(conn: Connection, months: set[str]) -> dict[str, str]:
    """Those of the batch's months (`YYYY-MM`) that retention has removed (their logs retired:
    log_partitions.retired_logs), or that are older than a month it removed (PostgreSQL only
    has retention), each with its reason. Records of a removed month were stored and then
    stayed unsealed for ever, and `log verify` said nothing; records of an older month made
    its partitions again, and `log verify` then took every removed month for damage (audit
    37f)."""
    newest = max(retired_logs(conn, FAMILY, min(months)), default=None)
    if newest is None:
        return {}
    return {
        month: _RETIRED.format(month=month)
        if month == newest
        else _PAST_RETENTION.format(month=month, newest=newest)
        for month in months
        if month <= newest
    }


def _conflict(stored_id: int) -> str:
    return (
        f"conflicts with stored record {stored_id}: the same Request ID, kind and time (and "
        "ResponseID) but different content; a re-send must be identical"
    )


def _is_bare_copy(keys: list[str], mine: str) -> bool:
    """Whether a request with this identity key is one already held under `keys` (the same
    Request ID and content): a bare file's request has no time of its own, so its identity is
    its Request ID, command variant and content (SPEC section 4). The same file at another
    time, or under another name, is the same message, and so is the same request read from a
    capture (either way round). (Two files of the same bytes were two records, one a file
    name: a copy of a file under a new name was stored again; SPEC audit, session 17.)"""
    if mine.startswith(BARE_FILE):
        return bool(keys)
    return mine == "" and any(key.startswith(BARE_FILE) for key in keys)


def append_rows(conn: Connection, rows: Sequence[Row], leaves_later: bool = False) -> Appended:
    """append_records for rows made by row_maker: the loader's hot path, on the raw driver.

    The stored rows' leaves are appended to their logs here, unless `leaves_later`: then
    they come back in `leaves`, and the caller appends them (add_leaves) just before it
    commits, all of a transaction's appends at once, in order. On PostgreSQL the logs' lock
    is taken here, before the trail is read, and held to COMMIT (see below).

    A row whose identity a stored record (or an earlier row of the batch) has is a
    duplicate when its content is the same and a conflict when it is not; neither is
    written. SQLAlchemy's per-row parameter processing cost more than the insert itself,
    so the statements go to the DBAPI connection of the caller's transaction directly.
    """
    done = Appended()
    if not rows:
        return done
    driver = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    retired: dict[str, str] = {}
    if postgres:
        days = [_pg_time(day * _DAY_US) for day in {row[0] // _DAY_US for row in rows}]
        retired = _retired_months(conn, {_month_of(at) for at in days})
        # before the batch reads the trail (see there); not a retired month's: its records
        # are refused, and its partitions made again were dropped again by every retention
        ensure_months(conn.engine, [at for at in days if _month_of(at) not in retired])
        # The logs' lock, which the batch's leaves take at its commit anyway, taken now: the
        # batches of concurrent loaders then read what is stored one after another, each
        # seeing the last one's commit, as SQLite's write lock makes them. A duplicate found
        # by content (a bare file's request, which has no time of its own) has no unique key
        # to stop a second copy: two concurrent loaders both stored it. (Timed identities
        # collided on the unique key instead, and were replayed, at most twice.)
        lock_family(conn, FAMILY)
    stored = _stored(driver, postgres, rows)
    # identity (request_id, kind, logged_at, identity_key) -> (digest, id; None until written);
    # built in one comprehension, reversed so that the first of a legacy identity's records
    # wins: a batch loaded again meets every one of its rows here, and per-row method calls
    # were most of the look-up's Python (bench/reload.py)
    held: dict[tuple[Any, ...], tuple[bytes | None, int | None]] = {
        (r, k, t, key): (d, i) for r, k, t, key, d, i in reversed(stored)
    }
    # bare files are rare: unless the batch or the stored records it meets hold a request
    # from one, no row can be a copy by content (`_is_bare_copy`), and the content of every
    # stored request is not worth indexing
    by_content = any(row[11].startswith(BARE_FILE) for row in rows) or any(
        s[3].startswith(BARE_FILE) for s in stored
    )
    # (request_id, kind, digest) -> identity keys, for bare files
    copies: dict[tuple[Any, ...], list[str]] = {}
    if by_content:
        for request_id, kind, _, key, digest, _ in stored:
            if digest is not None and kind == "request":
                copies.setdefault((request_id, kind, digest), []).append(key)
    # what was stored before migration 0004 has no identity ('') nor digest (legacy ids)
    legacy: dict[tuple[Any, ...], list[int]] = {}
    for request_id, kind, logged_at, key, digest, record_id in stored:
        if digest is None and key == "":
            legacy.setdefault((request_id, kind, logged_at), []).append(record_id)
    legacy_copies = _legacy_copies(driver, parameter_mark(conn), rows, legacy) if legacy else set()
    new: list[Row] = []
    conflicts: list[
        tuple[int | str, tuple[Any, ...] | int]
    ] = []  # (origin, the stored id, or the identity of a new row)
    refused: list[tuple[int | str, str]] = []  # (origin, reason)
    for row in rows:
        if retired and (month := _pg_month(row[0])) in retired:
            refused.append((row[13], retired[month]))
            continue
        identity = (row[2], row[1], row[0], row[11])
        found = held.get(identity)
        if found is None and legacy_copies and (*identity[:3], row[7] or "") in legacy_copies:
            done.duplicates += 1
            continue
        if found is not None:
            if (
                found[0] is None or found[0] == row[12]
            ):  # no digest: stored before 0004, taken as the same
                done.duplicates += 1
            else:
                conflicts.append((row[13], found[1] if found[1] is not None else identity))
            continue
        if by_content and row[1] == "request":
            content = (row[2], row[1], row[12])
            if _is_bare_copy(copies.get(content, []), row[11]):
                done.duplicates += 1
                continue
            copies.setdefault(content, []).append(row[11])
        held[identity] = (row[12], None)
        new.append(row)
    try:
        ids = _insert(conn, driver, postgres, new) if new else []
        index_new(conn, [(i, row[0], row[1], row[3], row[4], row[5]) for i, row in zip(ids, new)])
    except Exception as e:
        # not tried here (its transaction is aborted): the loader's replay makes the months again
        forgot_if_unpartitioned(conn.engine, e)
        raise
    leaves = [(record_id, row[16], row[15], row[14]) for record_id, row in zip(ids, new)]
    if leaves_later:
        done.leaves = leaves
    else:
        add_leaves(conn, FAMILY, leaves)
    written = {(row[2], row[1], row[0], row[11]): record_id for record_id, row in zip(ids, new)}
    done.conflicts = refused + [
        (origin, _conflict(written[other] if isinstance(other, tuple) else other))
        for origin, other in conflicts
    ]
    done.loaded = len(new)
    return done


def append_leaves(conn: Connection, leaves: Sequence[QueuedLeaf]) -> None:
    """Append the leaves append_rows(..., leaves_later=True) gave back; the caller's
    transaction must commit next (see append_rows)."""
    add_leaves(conn, FAMILY, leaves)


def leaves_committed(conn: Connection, leaves: Sequence[QueuedLeaf]) -> bool:
    """Whether the transaction that appended `leaves` (append_leaves) committed, asked when a
    stop came inside its commit: the driver's error does not say whether the database's
    COMMIT happened. The batch is one transaction, so its first leaf answers for it; found by
    id and hash, whose salt is its own, not taken for a record that another writer stored under
    the same id since (SQLite's ids are max(id) + 1). Queued, or in its log (sealed since)."""
    entry_id, month, leaf_hash, _ = leaves[0]
    in_log = select(log_leaf.c.entry_id).where(
        log_leaf.c.family == FAMILY,
        log_leaf.c.month == month,
        log_leaf.c.entry_id == entry_id,
        log_leaf.c.leaf_hash == leaf_hash,
    )
    queued = select(log_pending.c.entry_id).where(
        log_pending.c.family == FAMILY,
        log_pending.c.entry_id == entry_id,
        log_pending.c.leaf_hash == leaf_hash,
    )
    return bool(conn.execute(select(exists(in_log) | exists(queued))).scalar())


def _legacy_copies(
    driver: Any, mark: str, rows: Sequence[Row], legacy: dict[tuple[Any, ...], list[int]]
) -> set[tuple[Any, ...]]:
    """(Request ID, kind, time, payload) of the records stored before migration 0004 that
    the batch's rows meet: one of them is the message a row brings again if its payload is
    the row's. Their identity by ResponseID is unknown (0004 gave them none), so a capture
    loaded again after an upgrade from 0003 stored 721 of 2,000 messages a second time
    (audit 24a); matched by Request ID, kind and time alone, a second outcome of a command
    with the same time was taken for a copy and lost (review 24d)."""
    wanted = sorted({i for row in rows for i in legacy.get((row[2], row[1], row[0]), ())})
    by_id = {i: key for key, ids in legacy.items() for i in ids}
    payloads: dict[int, str] = {}
    for start in range(0, len(wanted), _LEGACY_READ):  # within any driver's parameter limit
        part = wanted[start : start + _LEGACY_READ]
        found = driver.execute(
            f"SELECT record_id, payload FROM sat_payload WHERE record_id IN "
            f"({', '.join([mark] * len(part))})",
            part,
        ).fetchall()
        payloads.update(found)
    return {(*by_id[i], payloads.get(i) or "") for i in wanted}


_LEGACY_READ = 1000


def _stored(driver: Any, postgres: bool, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """The stored records sharing a Request ID with the batch: (request_id, kind, logged_at in
    the engine's form, identity_key, digest, id)."""
    request_ids = {row[2] for row in rows}
    if postgres:
        timed = [row[0] for row in rows if not row[11].startswith(BARE_FILE)]
        ids = ",".join(request_ids)
        with driver.cursor() as cursor:
            if len(timed) < len(rows):
                found = cursor.execute(_PG_EXISTING_ANY_TIME, (ids,)).fetchall()
            else:
                found = cursor.execute(
                    _PG_EXISTING, (ids, _pg_time(min(timed)), _pg_time(max(timed)))
                ).fetchall()
                if any(row[1] == "request" for row in rows):
                    seen = {stored[-1] for stored in found}
                    bare = cursor.execute(_PG_BARE_COPIES, (ids,)).fetchall()
                    found += [stored for stored in bare if stored[-1] not in seen]
            return [
                (r, k, (t - PG_EPOCH) // MICROSECOND, key, bytes(d) if d is not None else None, i)
                for r, k, t, key, d, i in found
            ]
    if not driver.in_transaction:
        # take the write lock before reading max(id) and the existing keys: a concurrent
        # loader then waits (busy_timeout) instead of colliding on ids or keys later
        driver.execute("BEGIN IMMEDIATE")
    return driver.execute(_SQLITE_EXISTING, (orjson.dumps(list(request_ids)).decode(),)).fetchall()


def _insert(conn: Connection, driver: Any, postgres: bool, new: list[Row]) -> list[int]:
    head, tail = _STORED_FIELDS
    if postgres:
        share_registry(driver)  # before the ids are drawn
        with driver.cursor() as cursor:
            cursor.execute(
                "SELECT nextval('sat_record_id_seq') FROM generate_series(1, %s)", (len(new),)
            )
            ids = [i for (i,) in cursor.fetchall()]
            with cursor.copy(
                f"COPY sat_record ({', '.join(RECORD_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_RECORD_TYPES)
                for record_id, row in zip(ids, new):
                    copy.write_row((record_id, *row[head], *row[tail]))
            if any(row[7] for row in new):
                with cursor.copy(
                    f"COPY sat_payload ({', '.join(PAYLOAD_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_PAYLOAD_TYPES)
                    for record_id, row in zip(ids, new):
                        if row[7]:
                            copy.write_row((record_id, row[0], row[5], row[4], row[7]))
        return ids
    # ids from max(id): the write lock taken above keeps any other writer out until commit
    top = driver.execute("SELECT coalesce(max(id), 0) FROM sat_record").fetchone()[0]
    ids = list(range(top + 1, top + 1 + len(new)))
    driver.executemany(
        _SQLITE_INSERT_RECORD,
        [(record_id, *row[head], *row[tail]) for record_id, row in zip(ids, new)],
    )
    driver.executemany(
        _SQLITE_INSERT_PAYLOAD,
        [(record_id, row[0], row[5], row[4], row[7]) for record_id, row in zip(ids, new) if row[7]],
    )
    return ids


__all__ = [
    "Appended",
    "append_leaves",
    "append_records",
    "append_rows",
    "leaves_committed",
]
