"""The access log (SPEC section 8): appending an entry, and reading entries back.

Written by `store.logged_reads` only (every interface's read of SAT records goes through it);
read by a Party's accounts (their own Party's entries, under row-level security on
PostgreSQL as well as by the statement) and by auditors (everyone's).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Select, String, and_, or_, select, type_coerce
from sqlalchemy.engine import Connection

from ..domain.access_log import (
    AccessEntry,
    Reader,
    Tally,
    bounded_actor,
    bounded_filters,
)
from ..domain.ids import party_case_hint
from ..domain.search import MAX_PAGE, Cursor
from ..domain.visibility import Viewer
from .access_tables import EVERY_PARTYS_ENTRIES, access_log
from .access_writer import insert_in_transaction, write_committed, write_in_transaction
from .parties import party_meant
from .read_transaction import read_as, time_limit
from .schema import party, sqlite_time

EXPORT_PAGE = 1000


def _now() -> datetime:
    return datetime.now(timezone.utc)


def append_entry(
    conn: Connection, reader: Reader, action: str, filters: Mapping[str, Any], tally: Tally
) -> AccessEntry:
    """Appends one entry and returns once it is committed (group commit: store.access_writer),
    so the caller answers only once it is stored; the entry returned has no id then (0),
    since batched rows are not read back. On PostgreSQL, an entry after a read is written in
    the read's transaction and commits it (store.access_writer.write_in_transaction)."""
    entry = _new_entry(reader, action, filters, tally, _now())
    row = _row(entry)
    if conn.in_transaction():
        if conn.dialect.name == "postgresql":
            return replace(entry, id=write_in_transaction(conn, row))
        # the read's transaction ends first, by COMMIT: psycopg forgets its prepared
        # statements on a ROLLBACK (see web.api.list_records)
        conn.commit()
    write_committed(conn, row)
    return entry


def append_entries(
    conn: Connection, reads: Sequence[tuple[Reader, str, Mapping[str, Any], Tally]]
) -> None:
    """One entry per (reader, action, filters, tally), in the caller's transaction, which must
    commit before anything is sent (webhook leases: one entry per delivery, hundreds a lease)."""
    at = _now()
    rows = [_row(_new_entry(*read, at)) for read in reads]
    if rows:
        insert_in_transaction(conn, rows)


def _new_entry(
    reader: Reader, action: str, filters: Mapping[str, Any], tally: Tally, at: datetime
) -> AccessEntry:
    return AccessEntry(
        id=0,  # the store's
        at=at,
        party_id=reader.party_id,
        actor=bounded_actor(reader.actor),
        interface=reader.interface,
        action=action,
        filters=bounded_filters(filters),
        records_returned=tally.records_returned,
        mp141_records_returned=tally.mp141_records_returned,
        device_ids=tuple(sorted(tally.device_ids)),
    )


def _row(entry: AccessEntry) -> dict[str, Any]:
    row = {field.name: getattr(entry, field.name) for field in fields(entry) if field.name != "id"}
    row["filters"] = orjson.dumps(entry.filters).decode()
    row["device_ids"] = orjson.dumps(list(entry.device_ids)).decode()
    return row


# Entries are read with `at` as stored: an entry edited outside servicetrail (SQLite keeps
# times as text) is shown as it is stored, and `log verify` names it changed; one such row
# used to fail every read of the log and `log verify` itself, hiding every other finding.
# A field that is not what it holds (a time with its zone, an object of filters, a list of
# Device IDs) is its stored text.
_STORED = select(
    *(c for c in access_log.c if c.name != "at"),
    type_coerce(access_log.c.at, String).label("at"),
)


def _stored_time(value: Any) -> datetime | str:
    if isinstance(value, datetime):  # PostgreSQL's timestamptz: always a time
        return value.astimezone(timezone.utc)
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    # SQLite's text is what windows and cursors compare: another spelling of the same
    # instant ('...+14:00') hid the entry from them, and its leaf, of the instant, matched
    # (audit 24b); only the form servicetrail stores is read as a time
    if parsed.tzinfo is None or sqlite_time(parsed) != value:
        return str(value)
    return parsed


def _stored_json(value: Any, kind: type) -> Any:
    """The field's JSON if it is what the field holds (an object, a list of strings), else
    its text as stored."""
    try:
        parsed: Any = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return str(value)
    if not isinstance(parsed, kind):
        return str(value)
    if isinstance(parsed, list) and not all(isinstance(item, str) for item in parsed):
        return str(value)
    return parsed


def _entry(row: Any) -> AccessEntry:
    device_ids = _stored_json(row.device_ids, list)
    return AccessEntry(
        id=row.id,
        at=_stored_time(row.at),
        party_id=row.party_id,
        actor=row.actor,
        interface=row.interface,
        action=row.action,
        filters=_stored_json(row.filters, dict),
        records_returned=row.records_returned,
        mp141_records_returned=row.mp141_records_returned,
        device_ids=tuple(device_ids) if isinstance(device_ids, list) else device_ids,
    )


def _next_page(entries: list[AccessEntry]) -> Cursor | None:
    """The cursor after the page's last entry whose time is a time (entries with a damaged
    one may come again on the next page; with none, paging stops)."""
    for entry in reversed(entries):
        if isinstance(entry.at, datetime):
            return Cursor(entry.at, entry.id)
    return None


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries: a Party's (None: everyone's, for an auditor), `at` in [from, to), and
    for the screen's narrower questions ("which of our reads returned other Users' titles,
    and who made them"), reads that returned MP141 titles only, one action, one actor."""

    party_id: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    only_mp141: bool = False
    action: str | None = None
    actor: str | None = None


def _entries(wanted: EntryFilter, cursor: Cursor | None) -> Select[Any]:
    c = access_log.c
    query = _STORED.order_by(c.at.desc(), c.id.desc())
    if wanted.party_id is not None:
        query = query.where(c.party_id == wanted.party_id)
    else:  # everyone's: the index by time that no Party's read may take (access_tables)
        query = query.where(EVERY_PARTYS_ENTRIES)
    # the narrower filters walk the same (party, at) index: bounded by the time limit
    if wanted.only_mp141:
        query = query.where(c.mp141_records_returned > 0)
    if wanted.action is not None:
        query = query.where(c.action == wanted.action)
    if wanted.actor is not None:
        query = query.where(c.actor == wanted.actor)
    if wanted.time_from is not None:
        query = query.where(c.at >= wanted.time_from)
    if wanted.time_to is not None:
        query = query.where(c.at < wanted.time_to)
    if cursor is not None:
        query = query.where(
            or_(c.at < cursor.logged_at, and_(c.at == cursor.logged_at, c.id < cursor.record_id))
        )
    return query


def _as_reader(conn: Connection, party_id: str | None) -> AbstractContextManager[Any]:
    """A Party's read runs as the reader role (row-level security keeps it to its entries);
    an auditor's, which may see every Party's, as the owner."""
    if party_id is None:
        return time_limit(conn)
    return read_as(conn, Viewer(party_id, frozenset()))


def entries_page(
    conn: Connection, wanted: EntryFilter, limit: int, cursor: Cursor | None = None
) -> tuple[list[AccessEntry], Cursor | None]:
    """A page of entries, newest first, and the cursor of the next (None on the last)."""
    limit = max(1, min(limit, MAX_PAGE))
    with _as_reader(conn, wanted.party_id):
        rows = conn.execute(_entries(wanted, cursor).limit(limit + 1)).all()
    conn.commit()
    entries = [_entry(row) for row in rows[:limit]]
    return entries, _next_page(entries) if len(rows) > limit else None


class NoSuchParty(ValueError):
    """An auditor asked for the entries of a Party the store does not hold; `meant`: the one
    it holds of that ID in upper case, if any (an auditor may see every Party's name)."""

    def __init__(self, party_id: str, meant: str | None = None) -> None:
        super().__init__(party_id)
        self.meant = meant

    def words(self) -> str:
        """What the API and the screen say of it."""
        hint = f"; {party_case_hint(self.meant)}" if self.meant else ""
        return f"no such Party in the store{hint}"


def readable_page(
    conn: Connection,
    reader_party: str | None,
    asked: EntryFilter,
    limit: int,
    cursor: Cursor | None = None,
) -> tuple[list[AccessEntry], Cursor | None]:
    """A page of the entries an account may read (SPEC section 8), for the API and the screen
    alike: a Party's account (`reader_party`) reads its own Party's, whatever Party it asks
    for; an auditor's (None) every Party's, or the asked Party's alone. An auditor's Party
    that the store does not hold is NoSuchParty: answered with no entries, a typo read as
    "nobody looked" (audit 25d)."""
    asked_party = asked.party_id
    if reader_party is None and asked_party and not _party_exists(conn, asked_party):
        raise NoSuchParty(asked_party, party_meant(conn, asked_party))
    party = reader_party if reader_party is not None else (asked_party or None)
    return entries_page(conn, replace(asked, party_id=party), limit, cursor)


def _party_exists(conn: Connection, party_id: str) -> bool:
    # a look-up by primary key: bounded as it stands
    found = conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first()
    conn.commit()
    return found is not None


def iter_entries(conn: Connection, wanted: EntryFilter) -> Iterator[AccessEntry]:
    """Every entry asked for, newest first, a page at a time (for the CLI)."""
    cursor: Cursor | None = None
    while True:
        entries, cursor = entries_page(conn, wanted, EXPORT_PAGE, cursor)
        yield from entries
        if cursor is None:
            return


def entries_after(conn: Connection, after_id: int, limit: int) -> list[AccessEntry]:
    """Entries by increasing id after `after_id`: the order they become Merkle leaves in."""
    rows = conn.execute(
        _STORED.where(access_log.c.id > after_id).order_by(access_log.c.id).limit(limit)
    ).all()
    return [_entry(row) for row in rows]


__all__ = [
    "EntryFilter",
    "NoSuchParty",
    "append_entry",
    "entries_after",
    "entries_page",
    "iter_entries",
    "readable_page",
]
