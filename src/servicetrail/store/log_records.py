"""SAT records as leaves of their monthly logs (SPEC section 7): the leaf a record makes, in
the ingest's hot path and again from the stored row (for proofs and `log verify`).

The hot path encodes with orjson (sorted keys, compact, UTF-8: the same bytes as SPEC's
json.dumps, which tests/store/test_log_records.py checks) because json.dumps with sorted
keys costs several microseconds a record.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from ..domain.checkpoint import (
    LEAF_VERSION,
    canonical_json,
    leaf_time,
    payload_commitment,
    record_leaf,
)
from ..domain.merkle import leaf_hash
from .compiled_statements import driver_in_transaction
from .log_tables import log_leaf, log_pending
from .schema import sat_payload, sat_record

FAMILY = "sat"
RECORD_TABLE = sat_record.name  # where the family's entries are stored
SALT_BYTES = 16
_BACKFILL_BATCH = 5000


def month_of(value: datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}"


def hot_leaf(
    logged_at: str,
    kind: str,
    request_id: str,
    srv: str | None,
    user_id: str,
    device_id: str,
    response_code: str | None,
    command_variant: int | None,
    payload: str,
) -> tuple[bytes, bytes]:
    """(salt, leaf hash) for a record about to be stored; `logged_at` in leaf_time's form.
    The leaf's object is built by leaf_hash_of alone: written in line here it saved 1.4k of
    the leaf's ~72k instructions (session 56), below any ingest's spread, for a second copy
    of SPEC 7's leaf to keep equal."""
    salt = _next_salt()
    commitment = payload_commitment(salt, payload)
    return salt, leaf_hash_of(
        logged_at,
        kind,
        request_id,
        srv,
        user_id,
        device_id,
        response_code,
        command_variant,
        commitment,
    )


def leaf_hash_of(
    logged_at: str,
    kind: str,
    request_id: str,
    srv: str | None,
    user_id: str,
    device_id: str,
    response_code: str | None,
    command_variant: int | None,
    commitment: str,
) -> bytes:
    """The leaf hash of record_leaf's object, for the hot paths (ingest, `log verify`): its
    keys already in sorted order, so orjson need not sort (tests/store/test_log_records.py
    holds the two to the same bytes)."""
    leaf = {
        "command_variant": command_variant,
        "device_id": device_id,
        "kind": kind,
        "logged_at": logged_at,
        "payload_commitment": commitment,
        "request_id": request_id,
        "response_code": response_code or "",
        "srv": srv or "",
        "user_id": user_id,
        "v": LEAF_VERSION,
    }
    return hashlib.sha256(b"\x00" + orjson.dumps(leaf)).digest()


def _salt_stream() -> Iterator[bytes]:
    """Salts from os.urandom, drawn 4096 at a time and cut up as drawn: one system call per
    record cost more than the rest of its leaf, and a method a salt that sliced the buffer
    at its own place cost a third more than a step of this (BENCHMARKS.md, session 56).
    One thread's at a time: two drawing at once get "generator already executing" (63d saw it
    in a test). Ingest makes rows in one thread per process; a lock would double a salt's
    cost (0.8 -> 1.7 us at load 12), for a caller that does not exist."""
    while True:
        drawn = os.urandom(SALT_BYTES * 4096)
        yield from [drawn[at : at + SALT_BYTES] for at in range(0, len(drawn), SALT_BYTES)]


def _forget_salts() -> None:
    """A forked parse worker must not hand out the salts its parent still holds."""
    global _next_salt
    _next_salt = _salt_stream().__next__


_next_salt = _salt_stream().__next__
os.register_at_fork(after_in_child=_forget_salts)


def stored_leaf(row: Any, salt: bytes) -> dict[str, Any]:
    """The leaf object of a stored record (a row of LEAF_COLUMNS)."""
    return record_leaf(
        leaf_time(row.logged_at),
        row.kind,
        row.request_id,
        row.srv,
        row.user_id,
        row.device_id,
        row.response_code,
        row.command_variant,
        payload_commitment(salt, row.payload or ""),
    )


r, p = sat_record.c, sat_payload.c
LEAF_COLUMNS = (
    r.id,
    r.logged_at,
    r.kind,
    r.request_id,
    r.srv,
    r.user_id,
    r.device_id,
    r.response_code,
    r.command_variant,
    p.payload,
)
_WITH_PAYLOAD = sat_record.outerjoin(
    sat_payload,
    and_(p.record_id == r.id, p.device_id == r.device_id, p.logged_at == r.logged_at),
)


@dataclass(frozen=True)
class NewestCheckpoint:
    origin: str
    size: int
    note: str


@dataclass(frozen=True)
class SealedLeaf:
    leaf: dict[str, Any]
    salt: bytes
    month: str
    index: int
    checkpoint: NewestCheckpoint | None  # its log's newest, which may not hold it yet


# The leaf, its place and its log's newest checkpoint in one statement on the driver: a
# proof is a hot read, and SQLAlchemy's statement and row handling cost more than the reads
_SEALED_LEAF = (
    "SELECT r.logged_at, r.kind, r.request_id, r.srv, r.user_id, r.device_id, "
    "r.response_code, r.command_variant, p.payload, l.salt, l.month, l.leaf_index, "
    "c.origin, c.tree_size, c.note "
    "FROM log_leaf l JOIN sat_record r ON r.id = l.entry_id "
    "LEFT JOIN sat_payload p ON p.record_id = r.id AND p.device_id = r.device_id "
    "AND p.logged_at = r.logged_at "
    "LEFT JOIN log_checkpoint c ON c.id = (SELECT n.id FROM log_checkpoint n "
    "WHERE n.family = l.family AND n.month = l.month ORDER BY n.tree_size DESC LIMIT 1) "
    "WHERE l.family = 'sat' AND l.entry_id = {mark}"
)
# the month too: the leaves' partition of the month alone is read (migration 0029)
_SEALED_LEAF_IN_MONTH = _SEALED_LEAF.format(mark="%s") + " AND r.logged_at = %s AND l.month = %s"


def sealed_leaf_of(
    conn: Connection, record_id: int, logged_at: datetime | None = None
) -> SealedLeaf | None:
    """A record's leaf object (read as stored), salt and place in its log, and its log's
    newest checkpoint, in one read; None if it is not (yet) a leaf. The caller has applied
    the rule, and passes the record's `logged_at` when it knows it."""
    if conn.dialect.name == "sqlite":
        row = conn.exec_driver_sql(_SEALED_LEAF.format(mark="?"), (record_id,)).first()
    elif logged_at is None:
        row = conn.exec_driver_sql(_SEALED_LEAF.format(mark="%s"), (record_id,)).first()
    else:
        # the time names the record's monthly partition: planned over one partition of the
        # trail and of the payloads instead of every month's, 0.3 ms instead of 3-8 ms at 10M.
        # Through the driver: SQLAlchemy's execution of it cost more than its round trip
        driver = driver_in_transaction(conn)
        month = month_of(logged_at.astimezone(timezone.utc))
        row = driver.execute(_SEALED_LEAF_IN_MONTH, (record_id, logged_at, month)).fetchone()
    if row is None:
        return None
    at, kind, request_id, srv, user_id, device_id, code, variant, payload, salt, *place = row
    month, index, origin, tree_size, note = place
    if salt is None:
        return None
    if isinstance(at, datetime):  # PostgreSQL's; SQLite's text is given as stored: one in
        at = leaf_time(at)  # another form was written behind servicetrail's back, and its
        # leaf does not match, as `log verify` says (record_leaf_hashes)
    leaf = record_leaf(
        at,
        kind,
        request_id,
        srv,
        user_id,
        device_id,
        code,
        variant,
        payload_commitment(bytes(salt), payload or ""),
    )
    newest = None if origin is None else NewestCheckpoint(origin, int(tree_size), note)
    return SealedLeaf(leaf, bytes(salt), month, int(index), newest)


def is_queued(conn: Connection, record_id: int) -> bool:
    """Whether the record waits in the queue for its leaf (store.merkle_log)."""
    queued = select(log_pending.c.entry_id).where(
        log_pending.c.family == FAMILY, log_pending.c.entry_id == record_id
    )
    return conn.execute(queued).first() is not None


_JOINS = (
    "FROM sat_record r LEFT JOIN sat_payload p ON p.record_id = r.id "
    "AND p.device_id = r.device_id AND p.logged_at = r.logged_at "
    "LEFT JOIN log_leaf l ON l.family = 'sat' AND l.entry_id = r.id{month} "
    "LEFT JOIN log_pending q ON q.family = 'sat' AND q.entry_id = r.id "
)
# the leaf in its record's month: the leaves are a partition a log (0029), and a record's
# probe by entry id alone asked every kept month's (`log verify` took twice as long)
_IN_ITS_MONTH = " AND l.month = to_char(r.logged_at AT TIME ZONE 'UTC', 'YYYY-MM')"
_TITLES = "r.id, {time}, r.kind, r.request_id, r.srv, r.user_id, r.device_id, r.response_code, "
# SQLite hands the payload over as its stored UTF-8 bytes (no decoding and encoding again)
_SQLITE_LEAVES = (
    "SELECT "
    + _TITLES.format(time="r.logged_at")
    + "r.command_variant, CAST(p.payload AS BLOB), coalesce(l.salt, q.salt) "
    + _JOINS.format(month="")
    + "WHERE r.id >= ? AND r.id < ? ORDER BY r.id"
)
# PostgreSQL commits to the payload itself: the hashing runs in the server's process, on the
# other core, and payloads never cross to the client
_POSTGRES_LEAVES = (
    "SELECT "
    + _TITLES.format(
        time="""to_char(r.logged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    )
    + "r.command_variant, encode(sha256(coalesce(l.salt, q.salt) "
    "|| convert_to(coalesce(p.payload, ''), 'UTF8')), 'hex') "
    + _JOINS.format(month=_IN_ITS_MONTH)
    + "WHERE r.id >= %s AND r.id < %s ORDER BY r.id"
)
_STREAM = 5000
# a statement's own options: Connection.execution_options() sets them on the connection in
# place, and the statements after it in the same transaction were streamed too, each a
# server-side cursor on PostgreSQL (session 57, 57e's warnings run)
_STREAMED = {"stream_results": True, "yield_per": _STREAM}


def probes_each(conn: Connection) -> None:
    """PostgreSQL, to the end of the transaction: `log verify`'s read of the records plans
    index probes, streamed. Left to itself the planner hashed every month's payloads for a
    slice (no partition-wise join, as a slice's ids span months) and at 10M records spilled
    more temporary files than the disk held; and, the leaves partitioned (0029), each of
    which has no statistics until 50,000 rows (0012), it planned them as nearly empty, read
    them whole once and filtered them again for every record (20,000 records: 22 s, not
    0.6)."""
    conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
    conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
    conn.exec_driver_sql("SET LOCAL enable_material = off")


def record_leaf_hashes(conn: Connection, low: int, high: int) -> Iterator[tuple[int, bytes | None]]:
    """Every stored record with an id in [low, high) as (id, its leaf hash recomputed from the
    row as stored), in id order: the `sat` family's leaf source for `log verify`. The hash is
    None for a record that has no salt (one written behind servicetrail's back)."""
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        probes_each(conn)
    rows = conn.exec_driver_sql(
        _POSTGRES_LEAVES if postgres else _SQLITE_LEAVES, (low, high), execution_options=_STREAMED
    )
    if postgres:
        for record_id, at, kind, request, srv, user, device, code, variant, commitment in rows:
            if commitment is None:
                yield record_id, None
                continue
            yield (
                record_id,
                leaf_hash_of(at, kind, request, srv, user, device, code, variant, commitment),
            )
        return
    for record_id, at, kind, request, srv, user, device, code, variant, payload, salt in rows:
        if salt is None:
            yield record_id, None
            continue
        if len(at) != 27 or at[-1] != "Z":
            # not the form servicetrail stores, in which the text orders the times: another
            # spelling of the same instant ('...+14:00') is a change, since it moves the
            # record out of every time window and page (its leaf, of the instant, matched;
            # audit 24b)
            yield record_id, None
            continue
        commitment = hashlib.sha256(salt + (payload or b"")).hexdigest()
        try:
            leaf = leaf_hash_of(at, kind, request, srv, user, device, code, variant, commitment)
        except (TypeError, ValueError):  # a column that is not UTF-8 text (log_audit)
            leaf = None
        yield record_id, leaf


@dataclass(frozen=True)
class DerivedFields:
    """A record's fields that DUIS ingest derives from its payload (SPEC section 4.1), with
    the payload: no leaf holds them, but the leaf commits to the payload they come from."""

    record_id: int
    logged_at: datetime
    execution_at: datetime | None
    subject_device_id: str
    payload: str


def records_with_derived_fields(conn: Connection) -> Iterator[DerivedFields]:
    """Every stored record that has an execution_at or a subject_device_id, in id order,
    streamed (few records have them: future-dated requests and non-device ones naming a
    Device)."""
    rows = conn.execute(
        select(r.id, r.logged_at, r.execution_at, r.subject_device_id, p.payload)
        .select_from(_WITH_PAYLOAD)
        .where((r.execution_at.is_not(None)) | (r.subject_device_id.is_not(None)))
        .order_by(r.id),
        execution_options=_STREAMED,
    )
    for record_id, logged_at, execution_at, subject, payload in rows:
        yield DerivedFields(record_id, logged_at, execution_at, subject or "", payload or "")


def queue_stored_records(conn: Connection) -> None:
    """Salt and queue every stored record not yet in a log (migration 0009's backfill), a
    batch at a time by id: read whole, the trail's payloads were all in memory at once (384 MB
    for 100,000 records; audit, session 19)."""
    done = select(log_leaf.c.entry_id).where(log_leaf.c.family == FAMILY)
    queued = select(log_pending.c.entry_id).where(log_pending.c.family == FAMILY)
    after = 0
    while True:
        rows = conn.execute(
            select(*LEAF_COLUMNS)
            .select_from(_WITH_PAYLOAD)
            .where(r.id > after, r.id.not_in(done), r.id.not_in(queued))
            .order_by(r.id)
            .limit(_BACKFILL_BATCH)
        ).fetchall()
        if not rows:
            return
        after = rows[-1].id
        batch = []
        for row in rows:
            salt = os.urandom(SALT_BYTES)
            data = canonical_json(stored_leaf(row, salt))
            batch.append(
                {
                    "family": FAMILY,
                    "entry_id": row.id,
                    "month": month_of(row.logged_at),
                    "leaf_hash": leaf_hash(data),
                    "salt": salt,
                }
            )
        conn.execute(log_pending.insert(), batch)
