"""The per-Party visibility index (`sat_visibility`): which Parties may see each record.

Derived data, kept by the writers in the transaction that changes what it derives from:
- an ingest batch adds the rows of its new records (`index_new`);
- a registry change re-derives the rows of exactly the records it can change: those of the
  Device in the time range an interval gained or lost, for the Parties concerned
  (`refresh`), or those of a User ID given to a Party (`refresh_user`).

Each row is what `domain.visibility.audiences` says, so the rule of `decide()` stays the
authority; readers (store.queries) also apply the rule on top of every row they take from
here, so a stale row could only hide a record, never show one. A property test holds the
table to `decide()` after random interleavings of ingests and registry corrections.

On PostgreSQL an ingest batch holds a shared lock and a registry change an exclusive one
(`REGISTRY_LOCK`): a batch that read the registry before a correction commits its rows
before the correction re-derives them, and one that reads it after sees the correction.
On SQLite the database's single writer gives the same order.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, delete, insert, select
from sqlalchemy.engine import Connection

from ..domain.visibility import Access, audiences_at
from .schema import UtcDateTime, dcc_user, responsibility, sat_record, sat_visibility

OWN, MP141 = 1, 3  # the rule that grants the row, as stored in `access`
ACCESS_CODE = {Access.OWN: OWN, Access.MP141: MP141}
CODE_ACCESS = {code: access for access, code in ACCESS_CODE.items()}
REGISTRY_LOCK = "hashtext('servicetrail.registry')"
COLUMNS = ("party_id", "access", "logged_at", "record_id", "kind", "srv")
_COPY_TYPES = ["varchar", "int2", "int8", "int8", "varchar", "varchar"]
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# A new record as index_new takes it: (id, logged_at in the engine's form, kind, srv or None,
# user_id, device_id)
NewRecord = tuple


def lock_registry(conn: Connection) -> None:
    """Taken by every registry change before it writes (see the module's note)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({REGISTRY_LOCK})")


# --- an ingest batch ---------------------------------------------------------------------

def index_new(conn: Connection, records: Sequence[NewRecord]) -> int:
    """Add the index rows of records this transaction has just written; returns how many."""
    if not records:
        return 0
    driver = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        driver.execute(f"SELECT pg_advisory_xact_lock_shared({REGISTRY_LOCK})")
    owners = _owners_raw(driver, postgres, {r[4] for r in records})
    shared = {r[5] for r in records if r[5]}
    spans = _spans_raw(driver, postgres, shared) if shared else {}
    rows = []
    for record_id, at, kind, srv, user_id, device_id in records:
        for party_id, access in audiences_at(kind, device_id, at, owners.get(user_id), spans.get(device_id, ())).items():
            rows.append((party_id, ACCESS_CODE[access], at, record_id, kind, srv))
    if postgres:
        with driver.cursor() as cursor, cursor.copy(
                f"COPY sat_visibility ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    else:
        driver.executemany(f"INSERT INTO sat_visibility ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def _owners_raw(driver: Any, postgres: bool, user_ids: set[str]) -> dict[str, str]:
    if postgres:
        rows = driver.execute("SELECT user_id, party_id FROM dcc_user WHERE user_id = ANY(%s)",
                              (list(user_ids),)).fetchall()
    else:
        rows = driver.execute("SELECT user_id, party_id FROM dcc_user WHERE user_id IN "
                              "(SELECT value FROM json_each(?))", (orjson.dumps(list(user_ids)).decode(),)).fetchall()
    return dict(rows)


def _spans_raw(driver: Any, postgres: bool, device_ids: set[str]) -> dict[str, list[tuple]]:
    """Each device's Responsibility spans (party_id, valid_from, valid_to) with times in the
    engine's form, as the batch's rows carry them."""
    spans: dict[str, list[tuple]] = {}
    if postgres:
        rows = driver.execute("SELECT device_id, party_id, valid_from, valid_to FROM responsibility "
                              "WHERE device_id = ANY(%s)", (list(device_ids),)).fetchall()
        for device_id, party_id, start, end in rows:
            spans.setdefault(device_id, []).append(
                (party_id, (start - _PG_EPOCH) // _MICROSECOND,
                 None if end is None else (end - _PG_EPOCH) // _MICROSECOND))
        return spans
    rows = driver.execute("SELECT device_id, party_id, valid_from, valid_to FROM responsibility "
                          "WHERE device_id IN (SELECT value FROM json_each(?))",
                          (orjson.dumps(list(device_ids)).decode(),)).fetchall()
    for device_id, party_id, start, end in rows:
        spans.setdefault(device_id, []).append((party_id, start, end))
    return spans


# --- a registry change -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Touched:
    """Records of `device_id` logged in [start, end) (end None: open) whose visibility to
    `parties` a registry change may have changed."""

    device_id: str
    start: datetime
    end: datetime | None
    parties: frozenset[str]


def touched_by(device_id: str, before: tuple[str, datetime, datetime | None] | None,
               after: tuple[str, datetime, datetime | None] | None) -> Touched | None:
    """What replacing one interval (party_id, valid_from, valid_to) by another (either None:
    none) on a device can change. The same Party keeping the interval with another end
    changes only the span between the two ends; anything else, the whole of both."""
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


_RECORD_COLUMNS = (sat_record.c.id, sat_record.c.logged_at, sat_record.c.kind, sat_record.c.srv,
                   sat_record.c.user_id, sat_record.c.device_id)


@lru_cache(maxsize=2)
def _records_of_device(open_end: bool):
    s = sat_record.c
    when = [s.device_id == bindparam("device_id"), s.logged_at >= bindparam("start", type_=UtcDateTime)]
    if not open_end:
        when.append(s.logged_at < bindparam("end", type_=UtcDateTime))
    return select(*_RECORD_COLUMNS).where(*when)


@lru_cache(maxsize=1)
def _statements():
    v = sat_visibility.c
    remove = delete(sat_visibility).where(and_(
        v.party_id == bindparam("p"), v.access == bindparam("a"),
        v.logged_at == bindparam("at", type_=UtcDateTime), v.record_id == bindparam("rid")))
    add = insert(sat_visibility)
    return remove, add


def refresh(conn: Connection, touched: Iterable[Touched]) -> int:
    """Re-derive the rows of the records `touched` names, for the Parties it names, from the
    registry as this transaction sees it; returns how many records were looked at."""
    parties_of: dict[int, set[str]] = {}
    records: dict[int, Any] = {}
    for t in touched:
        query = _records_of_device(t.end is None)
        for row in conn.execute(query, {"device_id": t.device_id, "start": t.start, "end": t.end}):
            records[row.id] = row
            parties_of.setdefault(row.id, set()).update(t.parties)
    return _rederive(conn, records, parties_of)


def refresh_user(conn: Connection, user_id: str, party_id: str) -> int:
    """A User ID newly given to `party_id`: its records become that Party's own."""
    rows = conn.execute(select(*_RECORD_COLUMNS).where(sat_record.c.user_id == user_id)).all()
    return _rederive(conn, {r.id: r for r in rows}, {r.id: {party_id} for r in rows})


def _rederive(conn: Connection, records: dict[int, Any], parties_of: dict[int, set[str]]) -> int:
    if not records:
        return 0
    owners = dict(conn.execute(select(dcc_user.c.user_id, dcc_user.c.party_id)
                               .where(dcc_user.c.user_id.in_({r.user_id for r in records.values()}))).all())
    spans: dict[str, list[tuple]] = {}
    devices = sorted({r.device_id for r in records.values() if r.device_id})
    for start in range(0, len(devices), 500):
        r = responsibility.c
        for device_id, party_id, valid_from, valid_to in conn.execute(
                select(r.device_id, r.party_id, r.valid_from, r.valid_to).where(r.device_id.in_(devices[start:start + 500]))):
            spans.setdefault(device_id, []).append((party_id, valid_from, valid_to))
    removals, additions = [], []
    for record_id, record in records.items():
        parties = parties_of[record_id]
        for party_id in parties:
            removals += [{"p": party_id, "a": code, "at": record.logged_at, "rid": record_id} for code in (OWN, MP141)]
        granted = audiences_at(record.kind, record.device_id, record.logged_at, owners.get(record.user_id),
                               spans.get(record.device_id, ()))
        for party_id, access in granted.items():
            if party_id in parties:
                additions.append({"party_id": party_id, "access": ACCESS_CODE[access], "logged_at": record.logged_at,
                                  "record_id": record_id, "kind": record.kind, "srv": record.srv})
    remove, add = _statements()
    conn.execute(remove, removals)
    if additions:
        conn.execute(add, additions)  # the records' months, and so these partitions, exist
    return len(records)


__all__ = ["ACCESS_CODE", "CODE_ACCESS", "MP141", "OWN", "Touched", "index_new", "lock_registry", "refresh",
           "refresh_user", "touched_by"]
