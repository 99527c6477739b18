"""Watches in the store (SPEC section 6): keeping them, matching new records into events, and
reading events back through the rule.

Matching runs apart from ingest (`match_new_records`, called by the server's and
`servicetrail deliver`'s background loop): it reads the trail after a durable cursor of
record ids, so a loader pays nothing for it and a crash of either side loses nothing. A
registry change first matches what is stored (`match_before_registry_change`). Each
step is one transaction: the events, the watches' event counters, the webhook outbox and
the cursor move together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, literal, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from .. import settings
from ..domain.ids import MAX_ID
from ..domain.records import NO_BODY, item
from ..domain.times import format_time
from ..domain.visibility import Viewer
from ..domain.watches import (
    MAX_WATCHES_PER_PARTY,
    Candidate,
    Listed,
    PartyWatches,
    Watch,
    WatchSpec,
    index_by_party,
    titles_only,
)
from .engine import foreign_keys_planned_once, waiting_at_most
from .queries import viewer_for
from .visibility_index import REGISTRY_LOCK
from .read_transaction import read_as
from .row_locks import lock_giving_way
from .schema import sqlite_time
from .visibility_sql import viewer_params
from .outbox import GONE_REASON, delete_deliveries_of
from .watch_sql import (
    events_page as events_page_statement,
    indexed_candidates,
    new_records_span,
    newest_record_id,
    recent_events as recent_events_statement,
    record_ids_between,
    skip_hidden_unread as skip_hidden_unread_statement,
    unread_by_watch,
    unread_in_watch as unread_in_watch_statement,
    kept_gone,
    watches_locked_in_id_order,
)
from .watch_tables import watch, watch_cursor, watch_event, webhook_outbox
from .read_transaction import owner_read_limits

UTC = timezone.utc
CURSOR = "watches"


class WatchLimit(ValueError):
    """A Party already keeps as many watches as it may."""


def _now() -> datetime:
    return datetime.now(UTC)


def _spec_of(row: Any) -> WatchSpec:
    devices, srvs = orjson.loads(row.devices), orjson.loads(row.srvs)
    return WatchSpec(
        row.name,
        devices if isinstance(devices, str) else Listed(devices),
        srvs if isinstance(srvs, str) else Listed(srvs),
        Listed(orjson.loads(row.kinds)),
        row.senders,
        row.webhook_url,
    )


def watch_json(
    row: Any,
    secret: str | None = None,
    with_state: bool = False,
    failing: dict[str, Any] | None = None,
    kept_gone: bool = False,
) -> dict[str, Any]:
    """A watch as the API shows it (SPEC section 6: its webhook `{"url", "secret"}` when just
    made, `{"url"}` after); `with_state`, for the screen and the CLI, adds whether deliveries
    still run (a 410 from the receiver turns them off) and why not, and `failing`: the
    deliveries waiting for a retry after a failed attempt, or None. `kept_gone`: its receiver
    answered 410 and the webhook waits to be turned off (outbox.disable_gone); its deliveries
    have already stopped, so it is shown off."""
    shown = {"id": row.id, **_spec_of(row).as_json()}
    if row.webhook_url is None:
        shown["webhook"] = None
    elif secret is not None:
        shown["webhook"] = {"url": row.webhook_url, "secret": secret}
    else:
        shown["webhook"] = {"url": row.webhook_url}
        if with_state:
            shown["webhook"]["enabled"] = row.webhook_disabled_at is None and not kept_gone
            shown["webhook"]["disabled_reason"] = row.webhook_disabled_reason or (
                GONE_REASON if kept_gone else None
            )
            shown["webhook"]["failing"] = failing
    return shown


def _ensure_cursor(conn: Connection) -> None:
    """The matcher starts from the newest record when the first watch is made: records
    stored before any watch existed can match none.

    One statement that adds the cursor unless it is there: the first watches of two Parties
    made at once no longer both found it missing and one failed on the other's row. It
    writes, so on SQLite it also takes the store's write lock before `create_watch` counts."""
    values = select(
        literal(CURSOR), newest_record_id().scalar_subquery(), newest_record_id().scalar_subquery()
    ).where(true())  # SQLite's rule for an upsert from a SELECT: it needs a WHERE
    add = (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(
        watch_cursor
    ).from_select(["name", "record_id", "seen_id"], values)
    conn.execute(add.on_conflict_do_nothing(index_elements=["name"]))


def _lock_party_watches(conn: Connection, party_id: str) -> None:
    """Held to the end of the transaction, so that a Party's creations are counted one after
    the other: eight at once with room for three made six. On SQLite the write lock that
    `_ensure_cursor` took already does it."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('servicetrail.watches'), hashtext(:p))"),
            {"p": party_id},
        )


def create_watch(
    conn: Connection, party_id: str, spec: WatchSpec, secret: str | None
) -> dict[str, Any]:
    """Store a watch for the Party (in the caller's transaction); only records stored after
    it can match it."""
    _ensure_cursor(conn)
    _lock_party_watches(conn, party_id)
    held = conn.execute(
        select(func.count()).select_from(watch).where(watch.c.party_id == party_id)
    ).scalar_one()
    if held >= MAX_WATCHES_PER_PARTY:
        raise WatchLimit(
            f"a Party may keep at most {MAX_WATCHES_PER_PARTY} watches; delete one first"
        )
    shown = spec.as_json()
    values = {
        "party_id": party_id,
        "name": spec.name,
        "devices": orjson.dumps(shown["devices"]).decode(),
        "srvs": orjson.dumps(shown["srvs"]).decode(),
        "kinds": orjson.dumps(shown["kinds"]).decode(),
        "senders": spec.senders,
        "created_at": _now(),
        "after_record_id": conn.execute(newest_record_id()).scalar_one(),
        "webhook_url": spec.webhook_url,
        "webhook_secret": secret if spec.webhook_url else None,
    }
    watch_id = conn.execute(insert(watch).returning(watch.c.id), values).scalar_one()
    row = conn.execute(select(watch).where(watch.c.id == watch_id)).one()
    return watch_json(row, secret if spec.webhook_url else None)


def list_watches(conn: Connection, party_id: str, with_state: bool = False) -> list[dict[str, Any]]:
    owner_read_limits(conn)
    rows = conn.execute(
        select(watch, kept_gone(watch.c.id).label("webhook_gone"))
        .where(watch.c.party_id == party_id)
        .order_by(watch.c.id)
    ).all()
    # a webhook turned off retries nothing (a delivery left behind by its 410 is not failing)
    on = [
        r.id for r in rows if r.webhook_url and r.webhook_disabled_at is None and not r.webhook_gone
    ]
    failing = _failing(conn, on) if with_state else {}
    return [
        watch_json(
            row, with_state=with_state, failing=failing.get(row.id), kept_gone=row.webhook_gone
        )
        for row in rows
    ]


MOST_FAILING_SHOWN = 1000  # counted up to this many a watch: the count is read, not walked


def _failing(conn: Connection, watch_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per watch with deliveries that failed and wait for a retry: how many (up to
    MOST_FAILING_SHOWN, then "at least"), and the attempts and error of the one retried last.
    A receiver that does not answer (or a name that does not resolve) is otherwise seen
    nowhere for days of retries. One statement finds the watches with any (a page of 200
    healthy watches made 200 reads), then two short index reads each of those: a dead
    receiver's 100,000 pending deliveries walked in full cost its Party's Watches page
    seconds (review 22e)."""
    o = webhook_outbox.c
    if not watch_ids:
        return {}
    retried = select(literal(1)).where(o.watch_id == watch.c.id, o.attempts > 0).exists()
    with_failures = conn.execute(
        select(watch.c.id).where(watch.c.id.in_(watch_ids), retried).order_by(watch.c.id)
    ).scalars()
    failing = {}
    for watch_id in list(with_failures):
        latest = conn.execute(
            select(o.attempts, o.last_error)
            .where(o.watch_id == watch_id, o.attempts > 0)
            .order_by(o.next_attempt_at.desc())  # the retry scheduled last: the last to fail
            .limit(1)
        ).first()
        if latest is None:
            continue
        some = (
            select(literal(1))
            .where(o.watch_id == watch_id, o.attempts > 0)
            .limit(MOST_FAILING_SHOWN + 1)
            .subquery()
        )
        waiting = conn.execute(select(func.count()).select_from(some)).scalar_one()
        failing[watch_id] = {
            "waiting": min(waiting, MOST_FAILING_SHOWN),
            "at_least": waiting > MOST_FAILING_SHOWN,
            "attempts": latest.attempts,
            "last_error": latest.last_error or "",
        }
    return failing


def _owned(conn: Connection, party_id: str, watch_id: int, *columns: Any) -> Any | None:
    """The Party's watch's `columns` (by default its id and read position, which the reader
    role may read: an events page may look it up inside its read as the viewer), or None."""
    if not 1 <= watch_id <= MAX_ID:
        return None
    wanted = columns or (watch.c.id, watch.c.read_event_id)
    return conn.execute(
        select(*wanted).where(watch.c.id == watch_id, watch.c.party_id == party_id)
    ).first()


def get_watch(conn: Connection, party_id: str, watch_id: int) -> dict[str, Any] | None:
    """The Party's watch, or None: another Party's watch is answered as a missing one."""
    owner_read_limits(conn)
    row = _owned(conn, party_id, watch_id, *watch.c)
    return watch_json(row) if row is not None else None


def delete_watch(conn: Connection, party_id: str, watch_id: int) -> bool:
    """Delete the Party's watch with its events and pending deliveries; False if it has none
    such. In a transaction at READ COMMITTED, the engine's default: each statement below
    sees what a matcher's step committed while the first waited for it."""
    if _owned(conn, party_id, watch_id) is None:
        return False  # at once: another Party's waited for the owner's deletion (review 35e)
    one_deletion_at_a_time(conn, watch_id)  # then one found deleted meanwhile deletes nothing
    # explicit: SQLite's key cascades only with foreign_keys on, PostgreSQL has none (0020).
    # The backlog first, before the watch's row is locked: a matcher's step that found events
    # for the watch waits on that lock, and every Party's matching (a registry correction,
    # and the ingest behind it) with it, for as long as the lock is held (review 33c: 11 s
    # behind a million events).
    _delete_events_of(conn, watch_id)
    # then the watch: on PostgreSQL this waits for a step that holds it (FOR KEY SHARE,
    # `_counters`), whose events are then committed, and deleted by the second pass; a step
    # after it finds no watch. Giving way while it waits (see there). The count, not the
    # check above: of several deletions at once, only the one that removed the watch says so
    # (the others answer 404, as for any watch that is not there).
    lock_giving_way(
        conn, select(watch.c.id).where(watch.c.id == watch_id).with_for_update(), "the watch"
    )
    deleted = conn.execute(delete(watch).where(watch.c.id == watch_id)).rowcount > 0
    _delete_events_of(conn, watch_id)
    return deleted


def one_deletion_at_a_time(conn: Connection, watch_id: int) -> None:
    """PostgreSQL: the watch's deletions one after another, each waiting for the one before
    to end before it takes anything (an advisory lock of the transaction; SQLite's writers
    are one at a time already). Two at once, the one that deleted the watch waited in its
    second pass for the events the other's first pass held, while the other waited for the
    watch: a cycle that killed the deletion that did the work, and every matcher step or
    Party marking events read that waited behind it (review 35d)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('servicetrail.watch_deletion'), :key)"),
            # the two-key form, under a first key of its own (create_watch's is a Party's)
            {"key": watch_id % (1 << 31)},
        )


def _delete_events_of(conn: Connection, watch_id: int) -> None:
    delete_deliveries_of(conn, watch_id)  # in the order a deliverer's round locks them
    conn.execute(delete(watch_event).where(watch_event.c.watch_id == watch_id))


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
        if _owned(conn, viewer.party_id, watch_id) is None:
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
        if _owned(conn, viewer.party_id, watch_id) is None:
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
    with read_as(conn, viewer):
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
    row = _owned(conn, party_id, watch_id)
    return row.read_event_id if row is not None else 0


def mark_read(conn: Connection, party_id: str, watch_id: int, event_id: int) -> None:
    """The Party has seen the watch's events up to `event_id` (never moves back)."""
    w = watch.c
    conn.execute(
        update(watch)
        .where(w.id == watch_id, w.party_id == party_id, w.read_event_id < event_id)
        .values(read_event_id=event_id)
    )


# --- the matcher --------------------------------------------------------------------------


@dataclass
class _Cached:
    key: tuple[Any, ...]
    index: dict[str, PartyWatches]
    after: dict[int, int]
    kinds: list[str]  # every kind some watch asks for


_watch_cache: dict[str, _Cached] = {}


def _watch_index(conn: Connection) -> _Cached:
    """Every watch, indexed per Party; re-read only when watches were added or deleted (a
    watch's filters never change: the API has no update)."""
    key = tuple(
        conn.execute(select(func.count(), func.max(watch.c.id), func.min(watch.c.id))).one()
    )
    url = str(conn.engine.url)
    cached = _watch_cache.get(url)
    if cached is None or cached.key != key:
        rows = conn.execute(select(watch)).all()
        watches = [Watch(r.id, r.party_id, _spec_of(r)) for r in rows]
        cached = _Cached(
            key,
            index_by_party(watches),
            {r.id: r.after_record_id for r in rows},
            sorted({kind for w in watches for kind in w.spec.kinds}),
        )
        _watch_cache[url] = cached
    return cached


def _lock_cursor(conn: Connection, wait: bool = False) -> Any | None:
    """The cursor, locked for this transaction; None when another matcher holds it (unless
    `wait`: then once it is done), or no watch was ever made."""
    c = watch_cursor.c
    query = select(c.record_id, c.seen_id, c.gap_since).where(c.name == CURSOR)
    if conn.dialect.name == "postgresql":
        return conn.execute(query.with_for_update(skip_locked=not wait)).first()
    driver: Any = conn.connection.driver_connection
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")  # the write lock: one matcher (and no loader) at a time
    return conn.execute(query).first()


def _counters(conn: Connection, watch_ids: list[int]) -> list[tuple[int, int, bool]]:
    """(id, last_event_id, whether its webhook delivers) of the watches still there (not one
    kept after a 410, whose webhook waits to be turned off: outbox.disable_gone). One
    array or JSON parameter, through the driver: an IN list of thousands of ids cost
    SQLAlchemy more to render than the query took (profiled).

    On PostgreSQL the rows are locked (FOR KEY SHARE) to the end of the step: a watch deleted
    between this read and the step's events made their foreign key fail, and with it the
    registry correction the step ran in (stress test, session 18). A deletion now waits for
    the step, then deletes the step's events with the watch's others (`delete_watch`)."""
    driver: Any = conn.connection.driver_connection
    columns = (
        "SELECT id, last_event_id, "
        "webhook_url IS NOT NULL AND webhook_disabled_at IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM webhook_gone g WHERE g.watch_id = watch.id) FROM watch WHERE "
    )
    if conn.dialect.name == "postgresql":
        rows = driver.execute(
            columns + "id = ANY(%s) ORDER BY id FOR KEY SHARE", (watch_ids,)
        ).fetchall()
    else:
        rows = driver.execute(
            columns + "id IN (SELECT value FROM json_each(?))", (orjson.dumps(watch_ids).decode(),)
        ).fetchall()
    return [(watch_id, last, bool(hooked)) for watch_id, last, hooked in rows]


def match_new_records(
    conn: Connection,
    batch: int | None = None,
    wait: bool = False,
    gaps_final: bool = False,
) -> int:
    """One step of the matcher, in the caller's transaction (commit it): the records after the
    cursor (at most `batch`) become events of the watches they match. Returns how many
    records it read; 0 when there was nothing new (or another matcher is at work, unless
    `wait`: then this one waits for it). `gaps_final`: no loader can still fill a gap in the
    ids, so none is waited for."""
    # the events' matched_at and a gap's first sight: the clock's, never a caller's (no caller
    # passed one, and a naive time failed deep in binary COPY: review 32c)
    now = _now()
    batch = settings.current().match_batch if batch is None else batch
    cursor = _lock_cursor(conn, wait)
    if cursor is None:
        return 0
    done, seen, gap_since = cursor
    ids = list(
        conn.execute(record_ids_between().limit(batch), {"after": done, "upto": MAX_ID}).scalars()
    )
    if not ids:
        return 0
    upto = ids[-1]
    whole = next((i for i, record_id in enumerate(ids) if record_id != done + 1 + i), len(ids))
    # On PostgreSQL, ids come from a sequence: a loader's transaction still open leaves a gap
    # below ids already committed. The matcher waits `match_gap_seconds` for a gap to fill (a
    # batch of 20,000 records commits in seconds) before taking it as one that rolled back.
    if whole == len(ids):
        new_done, gap_since = upto, None
    elif gaps_final or (
        gap_since is not None
        and (now - gap_since).total_seconds() >= settings.current().match_gap_seconds
    ):
        new_done, gap_since = upto, None  # the gap's transaction rolled back, or never was
    else:
        # the wait is timed from when this gap was first met: progress means a new gap
        new_done, gap_since = done + whole, (now if whole else gap_since or now)
        if upto <= seen and whole == 0:
            # nothing new since the last step: the same gap, still open
            conn.execute(
                update(watch_cursor)
                .where(watch_cursor.c.name == CURSOR)
                .values(gap_since=gap_since)
            )
            return 0
    _match(conn, done, upto, seen, now)
    conn.execute(
        update(watch_cursor)
        .where(watch_cursor.c.name == CURSOR)
        .values(record_id=new_done, seen_id=max(seen, upto), gap_since=gap_since)
    )
    return len(ids)


def _match(conn: Connection, after: int, upto: int, seen: int, now: datetime) -> None:
    """Events for the records in (after, upto]; those up to `seen` may have been matched
    before (past a gap), and already are events are left alone."""
    cached = _watch_index(conn)
    if not cached.index:
        return
    # watch -> (record id, its time, its Device)
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    index, after_of = cached.index, cached.after
    lo, hi = conn.execute(new_records_span(), {"after": after, "upto": upto}).one()
    if lo is None:
        return
    params = {
        "after": after,
        "upto": upto,
        "lo": lo,
        "hi": hi,
        "kinds": cached.kinds,
        "parties": sorted(index),
    }
    for record_id, logged_at, kind, srv, device_id, party_id, own, held in conn.execute(
        indexed_candidates(), params
    ):
        party_watches = index.get(party_id)
        if party_watches is None:
            continue
        for matched in party_watches.matching(
            Candidate(record_id, kind, srv or "", device_id, bool(own), bool(held))
        ):
            if record_id > after_of.get(matched.watch_id, MAX_ID):
                found[matched.watch_id].append((record_id, logged_at, device_id))
    if not found:
        return
    if after < seen:
        _drop_known(conn, found, after, seen)
    events, outbox, counters = [], [], []
    stamp = sqlite_time(now) if conn.dialect.name == "sqlite" else now
    # a watch deleted meanwhile is not among them
    for watch_id, last, hooked in _counters(conn, sorted(found)):
        records = sorted(found[watch_id])  # event ids follow record ids
        if not records:
            continue
        events += [
            (watch_id, last + n, record_id, logged_at, device_id, stamp)
            for n, (record_id, logged_at, device_id) in enumerate(records, start=1)
        ]
        if hooked:
            outbox += [(watch_id, last + n, stamp) for n in range(1, len(records) + 1)]
        counters.append((last + len(records), watch_id))
    _write_events(conn, events, outbox, counters)


_EVENT_COLUMNS = "watch_id, event_id, record_id, record_logged_at, record_device_id, matched_at"
_EVENT_TYPES = ("int8", "int8", "int8", "timestamptz", "varchar", "timestamptz")
_OUTBOX_TYPES = ("int8", "int8", "timestamptz")


def _write_events(
    conn: Connection,
    events: list[tuple[Any, ...]],
    outbox: list[tuple[Any, ...]],
    counters: list[tuple[Any, ...]],
) -> None:
    """The step's rows, through the driver: SQLAlchemy's per-row parameter processing cost
    several times the inserts themselves (a step can make hundreds of thousands of events).
    Times are already in the engine's form (the candidates read them unconverted)."""
    driver: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        # an outbox row's foreign key names its event (and on SQLite an event's its watch)
        with foreign_keys_planned_once(driver), driver.cursor() as cursor:
            # binary: the text form's per-row formatting cost the client 3.7 us an event
            # (200 watches matching 2,000 records: 1.5 s of CPU, against 0.2 s)
            if events:
                with cursor.copy(
                    f"COPY watch_event ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for row in events:
                        copy.write_row(row)
            if outbox:
                with cursor.copy(
                    "COPY webhook_outbox (watch_id, event_id, next_attempt_at) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_OUTBOX_TYPES)
                    for row in outbox:
                        copy.write_row(row)
            if counters:
                cursor.executemany("UPDATE watch SET last_event_id = %s WHERE id = %s", counters)
        return
    if events:
        driver.executemany(
            f"INSERT INTO watch_event ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", events
        )
    if outbox:
        driver.executemany(
            "INSERT INTO webhook_outbox (watch_id, event_id, next_attempt_at) VALUES (?, ?, ?)",
            outbox,
        )
    if counters:
        driver.executemany("UPDATE watch SET last_event_id = ? WHERE id = ?", counters)


def _drop_known(conn: Connection, found: dict[int, list[Any]], after: int, seen: int) -> None:
    """Leave out the records a step before this one already made events of (read past a gap)."""
    e = watch_event.c
    known = set(
        conn.execute(
            select(e.watch_id, e.record_id).where(e.record_id > after, e.record_id <= seen)
        ).tuples()
    )
    for watch_id, records in found.items():
        found[watch_id] = [r for r in records if (watch_id, r[0]) not in known]


def match_before_registry_change(conn: Connection) -> None:
    """SPEC section 6: a record is matched as the registry stood when it was stored ("a later
    registry correction that grants visibility creates no event"). Matching runs apart from
    ingest, so a correction loaded before the matcher reached a record judged it by the new
    registry, and made an event. A registry change therefore first matches every record
    stored, in the change's own transaction once it holds the registry's lock.

    That lock holds every loader out: on PostgreSQL an ingest batch takes it (shared) before
    it draws its ids, and SQLite has one writer. So no id below the newest can still come,
    and the gaps met here are passed at once. Waited for instead, the records read past a gap
    were read again once it passed, under the corrected registry."""
    while match_new_records(conn, wait=True, gaps_final=True):
        pass


def catch_up(engine: Engine, steps: int = 1000) -> int:
    """Match steps, each its own transaction, until nothing is new (or `steps` were taken);
    returns how many records were read."""
    read = 0
    for _ in range(steps):
        if not _anything_new(engine):  # a plain read: no write lock taken for nothing
            break
        with engine.begin() as conn:
            found = match_new_records(conn)
        if not found:
            break
        read += found
    return read


def _anything_new(engine: Engine) -> bool:
    """Whether a matching step could do anything: a record past the newest one read, or a gap
    still waited for. False before any watch was made."""
    c = watch_cursor.c
    # Ended by COMMIT, not ROLLBACK (the same for a read): psycopg forgets a connection's
    # prepared statements on a ROLLBACK, and `serve` polls this several times a second on
    # the connections its searches use, each of which then planned its next search afresh
    # over every partition (11 ms of PostgreSQL's CPU at 10M records).
    with engine.begin() as conn:
        cursor = conn.execute(select(c.seen_id, c.gap_since).where(c.name == CURSOR)).first()
        if cursor is None:
            return False
        return (
            cursor.gap_since is not None
            or conn.execute(newest_record_id()).scalar_one() > cursor.seen_id
        )


def cursor_position(conn: Connection) -> int | None:
    """Every record up to this id is matched (None before the first watch)."""
    return conn.execute(
        select(watch_cursor.c.record_id).where(watch_cursor.c.name == CURSOR)
    ).scalar()


def unmatched_backlog(conn: Connection) -> int:
    """How many records are stored past the matcher's cursor (for the operator and tests)."""
    done = cursor_position(conn)
    if done is None:
        return 0
    return max(0, conn.execute(newest_record_id()).scalar_one() - done)


__all__ = [
    "WatchLimit",
    "catch_up",
    "create_watch",
    "cursor_position",
    "delete_watch",
    "events_after",
    "get_watch",
    "list_watches",
    "mark_read",
    "match_before_registry_change",
    "match_new_records",
    "one_deletion_at_a_time",
    "read_position",
    "recent_events",
    "skip_hidden_unread",
    "unread_of_party",
    "unmatched_backlog",
    "watch_json",
]
