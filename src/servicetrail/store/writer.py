"""Appending to the store: SAT records in idempotent batches, and the registry.

Each batch is one transaction, so a loader killed at any moment leaves whole batches
behind; running it again skips what is there (the natural key) and adds the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection

from ..domain.model import Device, Responsibility, SatRecord, User
from .partitions import ensure_months
from .schema import dcc_user, device, party, responsibility, sat_payload, sat_record

s = sat_record.c


class Outcome(StrEnum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    CORRECTED = "corrected"


class Conflict(ValueError):
    """A registry row that contradicts what the store holds; the message says how."""


RECORD_COLUMNS = ("id", "logged_at", "kind", "request_id", "srv", "user_id", "device_id", "response_code")
PAYLOAD_COLUMNS = ("record_id", "logged_at", "device_id", "user_id", "payload")


def _copy_rows(conn: Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """PostgreSQL's COPY: several times faster than INSERT for a batch (storage notes)."""
    if not rows:
        return
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _allocate_ids(conn: Connection, count: int) -> Sequence[int]:
    """Ids for new records, taken before the insert so payload rows need no look-up.

    SQLite has one writer: a concurrent loader that took the same ids makes our insert
    fail on the primary key, and the caller retries the batch. PostgreSQL's sequence
    hands out ids that are never reused.
    """
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT nextval('sat_record_id_seq') FROM generate_series(1, :n)"),
                            {"n": count}).scalars().all()
    top = conn.execute(select(func.coalesce(func.max(s.id), 0))).scalar_one()
    return range(top + 1, top + 1 + count)


def append_records(conn: Connection, batch: Sequence[SatRecord]) -> tuple[int, int]:
    """Append the batch's new records in the caller's transaction; returns (loaded, duplicates)."""
    fresh: dict[tuple, SatRecord] = {}
    for record in batch:
        fresh.setdefault(record.key, record)
    request_ids = sorted({r.request_id for r in fresh.values()})
    existing = conn.execute(
        select(s.request_id, s.kind, s.logged_at).where(s.request_id.in_(bindparam("ids", expanding=True))),
        {"ids": request_ids},
    ).all() if request_ids else []
    for key in existing:
        fresh.pop(tuple(key), None)
    if not fresh:
        return 0, len(batch)
    new = list(fresh.values())
    ids = _allocate_ids(conn, len(new))
    records = [(record_id, r.logged_at, r.kind, r.request_id, r.srv or None, r.user_id, r.device_id,
                r.response_code or None) for record_id, r in zip(ids, new)]
    payloads = [(record_id, r.logged_at, r.device_id, r.user_id, r.payload)
                for record_id, r in zip(ids, new) if r.payload]
    if conn.dialect.name == "postgresql":
        ensure_months(conn, {r.logged_at for r in new})
        _copy_rows(conn, "sat_record", RECORD_COLUMNS, records)
        _copy_rows(conn, "sat_payload", PAYLOAD_COLUMNS, payloads)
    else:
        conn.execute(insert(sat_record), [dict(zip(RECORD_COLUMNS, row)) for row in records])
        if payloads:
            conn.execute(insert(sat_payload), [dict(zip(PAYLOAD_COLUMNS, row)) for row in payloads])
    return len(new), len(batch) - len(new)


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


__all__ = ["Conflict", "Outcome", "append_records", "load_device", "load_responsibility", "load_user"]
