"""A watch's events read back through the rule (SPEC section 6): pages of them, the newest,
and what a Party has not read yet (the navigation's count, a watch's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..domain.records import NO_BODY, item
from ..domain.times import format_time
from ..domain.visibility import Viewer
from ..domain.watches import titles_only
from .engine import waiting_at_most
from .queries import viewer_for
from .read_transaction import owner_read_limits, read_as
from .visibility_index import REGISTRY_LOCK
from .visibility_sql import viewer_params
from .watch_sql import (
    events_page as events_page_statement,
    recent_events as recent_events_statement,
    skip_hidden_unread as skip_hidden_unread_statement,
    unread_by_watch,
    unread_in_watch as unread_in_watch_statement,
    watches_locked_in_id_order,
)
from .watch_tables import watch
from .watches import owned_watch


def event_json(row: Any) -> dict[str, Any]:
    """An event: the record as an item without its body's fields, even for own records.
    `row`: watch_id, event_id, matched_at, then the item columns of store.queries."""
    record = item(*(*row[3:17], *NO_BODY))
    return {
        "event_id": row[1],
        "watch_id": row[0],
        "matched_at": format_time(row[2]),
        "record": titles_only(record),
    }


def events_after(
    conn: Connection, viewer: Viewer, watch_id: int, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None] | None:
    """A page of the watch's events after `after`, those whose record the Party may still see,
    and the last event id on it (None for an empty page); None when the watch is not the
    Party's. One statement, bounded by `limit` and the statement time limit."""
    params = {**viewer_params(viewer), "watch_id": watch_id, "after": after, "lim": limit}
    with read_as(conn, viewer):  # the look-up too: under row-level security, as the viewer
        if owned_watch(conn, viewer.party_id, watch_id) is None:
            return None
        rows = conn.execute(events_page_statement(), params).all()
    events = [event_json(row) for row in rows]
    return events, events[-1]["event_id"] if events else None


NO_EVENT_YET = 2**63 - 1  # `before` it: every event


def recent_events(
    conn: Connection, viewer: Viewer, watch_id: int, limit: int, before: int = NO_EVENT_YET
) -> list[dict[str, Any]] | None:
    """The watch's newest events before `before` the Party may see, newest first; None if
    not the Party's."""
    params = {**viewer_params(viewer), "watch_id": watch_id, "lim": limit, "before": before}
    with read_as(conn, viewer):
        if owned_watch(conn, viewer.party_id, watch_id) is None:
            return None
        return [event_json(row) for row in conn.execute(recent_events_statement(), params)]


SKIP_WAIT_SECONDS = 0.05


UNREAD_CAP = 100  # the navigation shows "99+" past it


@dataclass(frozen=True)
class Unread:
    """The navigation's count (at most its cap), and the watches whose every unread event
    the Party may no longer see, each with its newest event (see skip_hidden_unread)."""

    count: int
    hidden_only: tuple[tuple[int, int], ...] = ()
    # (watch id, unread events the Party may see) of each watch with some; partial counts
    # (at least these) once `count` reached its cap
    by_watch: tuple[tuple[int, int], ...] = ()


def unread_of_party(conn: Connection, viewer: Viewer, cap: int = UNREAD_CAP) -> Unread:
    """How many of the Party's events it has not seen on the Watches page (at most `cap`),
    and which watches hold only hidden unread events. Those are known only when the count
    walked every unread event, below its cap."""
    params = {**viewer_params(viewer), "party_id": viewer.party_id, "lim": cap}
    # a generic plan: no value changes how it reads (from the Party's watches, each event's
    # record by its key), and the custom plan of every page was planned afresh over every
    # monthly partition: 3 ms of planning to run 0.2 ms (a demo store, 240 partitions, a
    # loaded machine), on every page of the screen (session 51)
    with read_as(conn, viewer, generic_plan=True):
        rows = conn.execute(unread_by_watch(), params).all()
    count = sum(row[3] for row in rows)
    by_watch = tuple((row[0], row[3]) for row in rows if row[3])
    if count >= cap:
        return Unread(count, by_watch=by_watch)
    hidden_only = tuple((row[0], row[2]) for row in rows if row[3] == 0 and row[2] > row[1])
    return Unread(count, hidden_only, by_watch)


def skip_hidden_unread(
    conn: Connection, party_id: str, hidden_only: Sequence[tuple[int, int]]
) -> None:
    """Move each watch's read position to its newest event, past unread events the Party may
    no longer see (a registry correction hid them). Every unread count walks every unread
    event, so a large hidden backlog slowed each page of the screen for good (audit 30c); a
    watch with an unread event the Party may see, found by the count or by this write, is
    left alone (it is shown, and marked read, on the Watches page). Never moves a position
    back. A later correction that shows those records again shows their events as read.

    A page asks this on its way: it waits at most SKIP_WAIT_SECONDS for a writer's lock (an
    ingest's), then the driver says the store is busy, and a later page skips them."""
    if not hidden_only:
        return
    owner_read_limits(conn)  # the walk's time limit, as the count's (PostgreSQL)
    with waiting_at_most(conn, SKIP_WAIT_SECONDS):
        _registry_held(conn)
        # the Party's User IDs now, no registry change until the update is done: one
        # registered since the count makes its records the Party's own (a User ID looked up
        # a row at a time inside the statement cost 15 times the walk)
        viewer = viewer_for(conn, party_id)
        if viewer is None:
            return
        newest_of = dict(hidden_only)
        if conn.dialect.name == "postgresql":
            conn.execute(watches_locked_in_id_order(list(newest_of), party_id))
        conn.execute(skip_hidden_unread_statement(party_id, newest_of), viewer_params(viewer))


def _registry_held(conn: Connection) -> None:
    """No registry change commits until the caller's transaction ends (two statements read
    the registry apart: review 32c). PostgreSQL: the registry's lock, shared, as an ingest
    batch takes it; SQLite: the write lock, which every registry change needs."""
    if conn.dialect.name == "postgresql":
        # through SQLAlchemy, so that a lock not had in time is its DBAPIError, the store
        # busy, as every other refusal here (the driver's own escaped the page: review 32d)
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({REGISTRY_LOCK})")
        return
    raw: Any = conn.connection.dbapi_connection
    if not raw.in_transaction:  # the driver begins one only at the first write
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # (its refusal wrapped as SQLAlchemy's)


def unread_in_watch(conn: Connection, viewer: Viewer, watch_id: int, cap: int) -> int:
    """How many of one watch's events the Party has not seen (at most `cap`)."""
    params = {**viewer_params(viewer), "party_id": viewer.party_id, "watch_id": watch_id}
    with read_as(conn, viewer):
        return conn.execute(unread_in_watch_statement(), {**params, "lim": cap}).scalar_one()


def read_position(conn: Connection, party_id: str, watch_id: int) -> int:
    """The newest event the Party had read of the watch (0 if none, or not its watch)."""
    row = owned_watch(conn, party_id, watch_id)
    return row.read_event_id if row is not None else 0


def mark_read(conn: Connection, party_id: str, watch_id: int, event_id: int) -> None:
    """The Party has seen the watch's events up to `event_id` (never moves back)."""
    w = watch.c
    conn.execute(
        update(watch)
        .where(w.id == watch_id, w.party_id == party_id, w.read_event_id < event_id)
        .values(read_event_id=event_id)
    )
