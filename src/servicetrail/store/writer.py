"""Appending to the store: SAT records in idempotent batches, and the registry.

Each batch is one transaction, so a loader killed at any moment leaves whole batches
behind; running it again skips what is there (the natural key) and adds the rest.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ..domain.model import Device, Responsibility, SatRecord, User
from .partitions import ensure_months
from .schema import dcc_user, device, party, responsibility

UTC = timezone.utc


class Outcome(StrEnum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    CORRECTED = "corrected"


class Conflict(ValueError):
    """A registry row that contradicts what the store holds; the message says how."""


RECORD_COLUMNS = ("id", "logged_at", "kind", "request_id", "srv", "user_id", "device_id", "response_code")
PAYLOAD_COLUMNS = ("record_id", "logged_at", "device_id", "user_id", "payload")
# logged_at goes to PostgreSQL as "int8": binary COPY carries no types, and timestamptz's binary
# form is exactly an int8 of microseconds since 2000-01-01 UTC. An int crosses the pipe from
# the parsing worker several times cheaper than a datetime, and needs no conversion here.
_RECORD_TYPES = ["int8", "int8", "varchar", "varchar", "varchar", "varchar", "varchar", "varchar"]
_PAYLOAD_TYPES = ["int8", "int8", "varchar", "varchar", "text"]
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_SQLITE_INSERT_RECORD = f"INSERT INTO sat_record ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * 8)})"
_SQLITE_INSERT_PAYLOAD = f"INSERT INTO sat_payload ({', '.join(PAYLOAD_COLUMNS)}) VALUES ({', '.join('?' * 5)})"
# json_each keeps the statement the same whatever the batch size, and the planner still
# probes the natural-key index once per Request ID
_SQLITE_EXISTING = ("SELECT request_id, kind, logged_at FROM sat_record "
                    "WHERE request_id IN (SELECT value FROM json_each(?))")
# the time range lets PostgreSQL skip every monthly partition the batch cannot be in
# Request IDs are EUI-64s, colons and digits, never commas: one text parameter is far cheaper
# to send than an array of thousands
_PG_EXISTING = ("SELECT request_id, kind, logged_at FROM sat_record "
                "WHERE request_id = ANY(string_to_array(%s, ',')) AND logged_at BETWEEN %s AND %s")

# A record as the store takes it: (logged_at, kind, request_id, srv or None, user_id, device_id,
# response_code or None, payload), logged_at already in the engine's form: SQLite's fixed-width
# text, or PostgreSQL's microseconds since 2000. Rows are made where the parsing happens, in an
# ingest worker, so the writing process does no conversion.
Row = tuple


def _sqlite_text(value: datetime) -> str:
    """schema.sqlite_time, twice as fast (isoformat pads the year to four digits too)."""
    if value.tzinfo is not UTC:  # parse_time's times are UTC already
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; times are UTC-aware everywhere")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _sqlite_row(logged_at: datetime, kind: str, request_id: str, srv: str, user_id: str, device_id: str,
                response_code: str, payload: str) -> Row:
    return (_sqlite_text(logged_at), kind, request_id, srv or None, user_id, device_id, response_code or None,
            payload)


def _postgres_row(logged_at: datetime, kind: str, request_id: str, srv: str, user_id: str, device_id: str,
                  response_code: str, payload: str) -> Row:
    if logged_at.tzinfo is None:
        raise ValueError("naive datetime given to the store; times are UTC-aware everywhere")
    return ((logged_at - _PG_EPOCH) // _MICROSECOND, kind, request_id, srv or None, user_id, device_id,
            response_code or None, payload)


def _pg_time(micros: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=micros)


def row_maker(dialect: str) -> Callable[..., Row]:
    """A function of a record's eight fields, in SatRecord order, that gives this engine's Row."""
    return _postgres_row if dialect == "postgresql" else _sqlite_row


def record_row(make: Callable[..., Row], r: SatRecord) -> Row:
    # str(): a Kind member is a str subclass, which the parsing worker's transport does not carry
    return make(r.logged_at, str(r.kind), r.request_id, r.srv, r.user_id, r.device_id, r.response_code, r.payload)


def append_records(conn: Connection, batch: Sequence[SatRecord]) -> tuple[int, int]:
    """Append the batch's new records in the caller's transaction; returns (loaded, duplicates)."""
    make = row_maker(conn.dialect.name)
    return append_rows(conn, [record_row(make, r) for r in batch])


def append_rows(conn: Connection, rows: Sequence[Row]) -> tuple[int, int]:
    """append_records for rows made by row_maker: the loader's hot path, on the raw driver.

    SQLAlchemy's per-row parameter processing cost more than the insert itself, so the
    statements go to the DBAPI connection of the caller's transaction directly.
    """
    fresh: dict[tuple, Row] = {}
    for row in rows:
        fresh.setdefault((row[2], row[1], row[0]), row)  # the natural key: request_id, kind, logged_at
    if not fresh:
        return 0, len(rows)
    driver = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    request_ids = {key[0] for key in fresh}
    if postgres:
        times = [key[2] for key in fresh]
        with driver.cursor() as cursor:
            cursor.execute(_PG_EXISTING, (",".join(request_ids), _pg_time(min(times)), _pg_time(max(times))))
            existing = [(r, k, (t - _PG_EPOCH) // _MICROSECOND) for r, k, t in cursor.fetchall()]
    else:
        if not driver.in_transaction:
            # take the write lock before reading max(id) and the existing keys: a concurrent
            # loader then waits (busy_timeout) instead of colliding on ids or keys later
            driver.execute("BEGIN IMMEDIATE")
        existing = driver.execute(_SQLITE_EXISTING, (orjson.dumps(list(request_ids)).decode(),)).fetchall()
    for key in existing:
        fresh.pop(tuple(key), None)
    if not fresh:
        return 0, len(rows)
    new = list(fresh.values())
    if postgres:
        ensure_months(conn, [_pg_time(day * _DAY_US) for day in {row[0] // _DAY_US for row in new}])
        with driver.cursor() as cursor:
            cursor.execute("SELECT nextval('sat_record_id_seq') FROM generate_series(1, %s)", (len(new),))
            ids = [i for (i,) in cursor.fetchall()]
            with cursor.copy(f"COPY sat_record ({', '.join(RECORD_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_RECORD_TYPES)
                for record_id, row in zip(ids, new):
                    copy.write_row((record_id, *row[:7]))
            if any(row[7] for row in new):
                with cursor.copy(f"COPY sat_payload ({', '.join(PAYLOAD_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                                 ) as copy:
                    copy.set_types(_PAYLOAD_TYPES)
                    for record_id, row in zip(ids, new):
                        if row[7]:
                            copy.write_row((record_id, row[0], row[5], row[4], row[7]))
    else:
        # ids from max(id): the write lock taken above keeps any other writer out until commit
        top = driver.execute("SELECT coalesce(max(id), 0) FROM sat_record").fetchone()[0]
        ids = range(top + 1, top + 1 + len(new))
        driver.executemany(_SQLITE_INSERT_RECORD, [(record_id, *row[:7]) for record_id, row in zip(ids, new)])
        driver.executemany(_SQLITE_INSERT_PAYLOAD, [(record_id, row[0], row[5], row[4], row[7])
                                                    for record_id, row in zip(ids, new) if row[7]])
    return len(new), len(rows) - len(new)


def load_user(conn: Connection, user: User, party_name: str) -> Outcome:
    """Register a User ID for its Party (creating or renaming the Party). Checks before it writes."""
    held = conn.execute(select(dcc_user.c.party_id, dcc_user.c.role)
                        .where(dcc_user.c.user_id == user.user_id)).first()
    if held is not None and tuple(held) != (user.party_id, user.role):
        raise Conflict(f"user_id {user.user_id} is already registered to {held.party_id} as {held.role}")
    known_name = conn.execute(select(party.c.name).where(party.c.party_id == user.party_id)).scalar()
    if known_name is None:
        conn.execute(insert(party), {"party_id": user.party_id, "name": party_name})
    elif known_name != party_name:
        # a company renamed: the registry's latest word is its name
        conn.execute(update(party).where(party.c.party_id == user.party_id).values(name=party_name))
    if held is not None:
        return Outcome.DUPLICATE
    conn.execute(insert(dcc_user), {"user_id": user.user_id, "party_id": user.party_id, "role": user.role})
    return Outcome.LOADED


def load_device(conn: Connection, dev: Device) -> Outcome:
    held = conn.execute(select(device.c.device_type, device.c.smets)
                        .where(device.c.device_id == dev.device_id)).first()
    if held is None:
        conn.execute(insert(device), {"device_id": dev.device_id, "device_type": dev.device_type,
                                      "smets": dev.smets})
        return Outcome.LOADED
    if tuple(held) == (dev.device_type, dev.smets):
        return Outcome.DUPLICATE
    raise Conflict(f"device {dev.device_id} is already registered as {held.device_type} SMETS{held.smets}")


def load_responsibility(conn: Connection, new: Responsibility) -> Outcome:
    """Add an interval, or correct one with the same start; never let two overlap.

    A correction (same device, relation and start, another end or Party) is how a
    registry closes an open interval or fixes a mistake; SPEC section 3 says a late
    correction changes what is visible from then on, past records included.
    """
    if conn.execute(select(party.c.party_id).where(party.c.party_id == new.party_id)).first() is None:
        raise Conflict(f"unknown party_id {new.party_id!r}: load it with 'servicetrail load users' first")
    if conn.execute(select(device.c.device_id).where(device.c.device_id == new.device_id)).first() is None:
        raise Conflict(f"unknown device_id {new.device_id}: load it with 'servicetrail load devices' first")
    r = responsibility.c
    rows = conn.execute(select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to)
                        .where(r.device_id == new.device_id, r.relation == new.relation)).all()
    same_start = False
    for row in rows:
        held = Responsibility(*row)
        if held.valid_from == new.valid_from:
            same_start = True
            if held == new:
                return Outcome.DUPLICATE
            continue
        if held.overlaps(new):
            raise Conflict(
                f"overlaps the {new.relation} interval of {held.party_id} on {new.device_id} "
                f"({held.describe()})"
            )
    if same_start:
        conn.execute(update(responsibility)
                     .where(r.device_id == new.device_id, r.relation == new.relation,
                            r.valid_from == new.valid_from)
                     .values(party_id=new.party_id, valid_to=new.valid_to))
        return Outcome.CORRECTED
    conn.execute(insert(responsibility), {
        "device_id": new.device_id, "party_id": new.party_id, "relation": new.relation,
        "valid_from": new.valid_from, "valid_to": new.valid_to})
    return Outcome.LOADED


__all__ = ["Conflict", "Outcome", "Row", "append_records", "append_rows", "record_row", "row_maker", "load_device", "load_responsibility", "load_user"]
