"""Appending to the store: SAT records in idempotent batches, and the registry.

Each batch is one transaction, so a loader killed at any moment leaves whole batches
behind; running it again skips what is there (the natural key) and adds the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from ..domain.model import Device, Responsibility, SatRecord, User
from .schema import dcc_user, device, party, responsibility, sat_payload, sat_record

s = sat_record.c


class Outcome(StrEnum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    CORRECTED = "corrected"


class Conflict(ValueError):
    """A registry row that contradicts what the store holds; the message says how."""


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
    rows = [
        {"logged_at": r.logged_at, "kind": r.kind, "request_id": r.request_id, "srv": r.srv or None,
         "user_id": r.user_id, "device_id": r.device_id or None, "response_code": r.response_code or None}
        for r in fresh.values()
    ]
    conn.execute(insert(sat_record), rows)
    with_payload = [r for r in fresh.values() if r.payload]
    if with_payload:
        ids = dict(
            ((rid, kind, at), record_id) for rid, kind, at, record_id in conn.execute(
                select(s.request_id, s.kind, s.logged_at, s.id)
                .where(s.request_id.in_(bindparam("ids", expanding=True))),
                {"ids": sorted({r.request_id for r in with_payload})},
            )
        )
        conn.execute(insert(sat_payload),
                     [{"record_id": ids[r.key], "payload": r.payload} for r in with_payload])
    return len(fresh), len(batch) - len(fresh)


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
    rows = conn.execute(select(r.id, r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to)
                        .where(r.device_id == new.device_id, r.relation == new.relation)).all()
    same_start = None
    for row in rows:
        held = Responsibility(*row[1:])
        if held.valid_from == new.valid_from:
            same_start = row.id
            if held == new:
                return Outcome.DUPLICATE
            continue
        if held.overlaps(new):
            raise Conflict(
                f"overlaps the {new.relation} interval of {held.party_id} on {new.device_id} "
                f"({held.describe()})"
            )
    if same_start is not None:
        conn.execute(update(responsibility).where(r.id == same_start)
                     .values(party_id=new.party_id, valid_to=new.valid_to))
        return Outcome.CORRECTED
    conn.execute(insert(responsibility), {
        "device_id": new.device_id, "party_id": new.party_id, "relation": new.relation,
        "valid_from": new.valid_from, "valid_to": new.valid_to})
    return Outcome.LOADED


__all__ = ["Conflict", "Outcome", "append_records", "load_device", "load_responsibility", "load_user"]
