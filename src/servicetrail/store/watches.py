"""Watches in the store (SPEC section 6): keeping them (a Party's to make, list and delete).
The matcher that turns new records into their events is store.watch_matcher; reading the
events back through the rule, and what is unread, store.watch_events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, literal, select, text, true
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from ..domain.ids import MAX_ID
from ..domain.watches import MAX_WATCHES_PER_PARTY, Listed, WatchSpec
from .engine import reading
from .outbox import delete_deliveries_of
from .outbox_gone import GONE_REASON
from .read_transaction import owner_read_limits
from .row_locks import lock_giving_way
from .outbox_sql import failed_window, kept_gone
from .watch_sql import newest_record_id
from .watch_tables import (
    FAILED_DELIVERY,
    MATCHER_CURSOR,
    watch,
    watch_cursor,
    watch_event,
    webhook_outbox,
)
from .upsert import dialect_insert

UTC = timezone.utc


class WatchLimit(ValueError):
    """A Party already keeps as many watches as it may."""


def _now() -> datetime:
    return datetime.now(UTC)


def spec_of(row: Any) -> WatchSpec:
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
    answered 410 and the webhook waits to be turned off (outbox_gone.disable_gone); its deliveries
    have already stopped, so it is shown off."""
    shown = {"id": row.id, **spec_of(row).as_json()}
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
        literal(MATCHER_CURSOR),
        newest_record_id().scalar_subquery(),
        newest_record_id().scalar_subquery(),
    ).where(true())  # SQLite's rule for an upsert from a SELECT: it needs a WHERE
    add = dialect_insert(conn, watch_cursor).from_select(["name", "record_id", "seen_id"], values)
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


def list_watches(
    conn: Connection, party_id: str, with_state: bool = False, watch_id: int | None = None
) -> list[dict[str, Any]]:
    """The Party's watches (only `watch_id`, when given: one of its own, or none, found as
    `owned_watch` finds it, with the work of a missing one for another Party's)."""
    owner_read_limits(conn)
    chosen = select(watch, kept_gone(watch.c.id).label("webhook_gone")).where(
        watch.c.party_id == party_id
    )
    if watch_id is not None:
        chosen = chosen.where(owned_by(party_id, watch_id))
    rows = conn.execute(chosen.order_by(watch.c.id)).all()
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


MOST_FAILING_SHOWN = 1000  # counted up to this many a watch, then "at least"
FAILING_WINDOW = MOST_FAILING_SHOWN + 1  # the failed deliveries a read looks at, at most


def _failing(conn: Connection, watch_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per watch with deliveries that failed and wait for a retry: how many of its Party's
    records (up to MOST_FAILING_SHOWN, then "at least"), and the attempts and error of the one
    retried last. A receiver that does not answer (or a name that does not resolve) is
    otherwise seen nowhere for days of retries. One statement finds the watches with any (a
    page of 200 healthy watches made 200 reads), then two reads of at most FAILING_WINDOW
    deliveries each of those (outbox_sql.failed_window): a dead receiver's 100,000 pending
    deliveries walked in full cost its Party's Watches page seconds (review 22e), and so did
    20,000 that a correction hid (audit 61c).

    Bounded, the answer is what the windows hold: the count, of the FAILING_WINDOW due next,
    those the Party may see ("at least" as soon as the window is full, whatever it held: it
    says no more of what lies past the window than a count of visible ones would); the last
    error, of the first visible one of the FAILING_WINDOW retried last, else of the window
    due next (new failures are retried soonest, behind old ones hidden late in the schedule).
    A watch none of whose deliveries in either window its Party may see is shown not failing,
    until the deliverer drops the hidden ones as they come due."""
    o = webhook_outbox.c
    if not watch_ids:
        return {}
    # one failed delivery, by a probe of the failed ones' index (0030) that stops at it. As
    # EXISTS, PostgreSQL read an outbox it had never analysed by a bitmap of the watch's
    # whole backlog (200,000: 58 ms of a Watches page, audit 62g); by 0011's index, it
    # walked each watch's healthy deliveries whole (50 watches of 4,000: 108-483 ms); with
    # `watch_id = id`, analysed while one watch held the outbox, a Seq Scan up to the first
    # failed row (10-38 ms). The watch bounded as a range, in the index's order (as
    # outbox_sql.due_watches' probe): any other plan sorts every failed row first (63c).
    w = watch.c
    retried = (
        select(o.watch_id)
        .where(o.watch_id >= w.id, o.watch_id <= w.id, FAILED_DELIVERY)
        .order_by(o.watch_id, o.next_attempt_at)
        .limit(1)
        .scalar_subquery()
        .is_not(None)
    )
    chosen = select(w.id).where(w.id.in_(watch_ids), retried).order_by(w.id)
    with_failures = conn.execute(chosen).scalars().all()
    failing: dict[int, dict[str, Any]] = {}
    postgresql = conn.dialect.name == "postgresql"
    with _sorts_off(conn) if postgresql and with_failures else nullcontext():
        for watch_id in with_failures:
            found = _failing_one(conn, watch_id, postgresql)
            if found is not None:
                failing[watch_id] = found
    return failing


def _failing_one(conn: Connection, watch_id: int, postgresql: bool) -> dict[str, Any] | None:
    """One watch's failing state from its two windows, as `_failing` has it."""
    asked = {"watch_id": watch_id, "window": FAILING_WINDOW}
    latest = conn.execute(failed_window(True, postgresql), asked).first()
    due_next = conn.execute(failed_window(False, postgresql), asked).all()
    seen = [row for row in due_next if row.visible]
    if latest is None and seen:  # the window due next holds the one retried last
        latest = max(seen, key=lambda row: row.next_attempt_at)
    if latest is None:
        return None
    return {
        # one the Party may see is there, if only past the window due next
        "waiting": min(max(len(seen), 1), MOST_FAILING_SHOWN),
        "at_least": len(due_next) == FAILING_WINDOW,
        "attempts": latest.attempts,
        "last_error": latest.last_error or "",
    }


@contextmanager
def _sorts_off(conn: Connection) -> Iterator[None]:
    """PostgreSQL's `enable_sort` off within the block, for the windows of `_failing` alone
    (outbox_sql.failed_window), whose plans without a sort walk an index in the window's
    order: the watch's entries of the failed ones' `(watch_id, next_attempt_at)` (0030). An
    outbox PostgreSQL has not analysed yet (a new store's first backlog, for a minute or so)
    it takes for one row, and each window sorted the watch's whole backlog: 200,000
    deliveries, 0.40 s a read against 0.06 s (BENCHMARKS.md, audit 61h).

    In a savepoint of the caller's transaction: an error in the block (a statement timeout,
    or one its caller catches and reads on after) rolls the setting back with it. Set back
    after the block alone, an error skipped that, and the rest of the transaction planned
    with sorts off (62g); set back in a `finally`, a statement in a transaction the error had
    aborted would fail in place of the error."""
    with conn.begin_nested():
        sql = "SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)"
        was = str(conn.execute(text(sql)).one()[0])
        yield
        # a savepoint's release keeps what was set in it
        conn.execute(text("SELECT set_config('enable_sort', :was, true)"), {"was": was})


def owned_watch(conn: Connection, party_id: str, watch_id: int, *columns: Any) -> Any | None:
    """The Party's watch's `columns` (by default its id and read position, which the reader
    role may read: an events page may look it up inside its read as the viewer), or None."""
    if not 1 <= watch_id <= MAX_ID:
        return None
    wanted = columns or (watch.c.id, watch.c.read_event_id)
    return conn.execute(select(*wanted).where(owned_by(party_id, watch_id))).first()


def owned_by(party_id: str, watch_id: int) -> ColumnElement[bool]:
    """The Party's watch `watch_id`, as every look-up of one watch asks for it. `id + 0`: no
    engine may find the row by its key and then refuse it by its party_id, which read another
    Party's watch and not a missing one (a row more, the time it takes). The Party's own
    watches are searched instead (ix_watch_party_id, 200 at most): the same work whatever the
    id (tests/store/test_watch_lookup_work.py)."""
    return and_(watch.c.party_id == party_id, (watch.c.id + 0) == watch_id)


def get_watch(conn: Connection, party_id: str, watch_id: int) -> dict[str, Any] | None:
    """The Party's watch, or None: another Party's watch is answered as a missing one."""
    owner_read_limits(conn)
    row = owned_watch(conn, party_id, watch_id, *watch.c)
    return watch_json(row) if row is not None else None


def delete_watch(
    conn: Connection, party_id: str, watch_id: int, leave_backlog: bool = False
) -> bool:
    """Delete the Party's watch with its events and pending deliveries; False if it has none
    such. In a transaction at READ COMMITTED, the engine's default: each statement below
    sees what a matcher's step committed while the first waited for it. `leave_backlog`
    (PostgreSQL): the watch alone, its events and deliveries left to `shed_deleted_watches`
    (see `delete_watch_at_once`)."""
    if owned_watch(conn, party_id, watch_id) is None:
        return False  # at once: another Party's waited for the owner's deletion (review 35e)
    one_deletion_at_a_time(conn, watch_id)  # then one found deleted meanwhile deletes nothing
    if leave_backlog:
        assert conn.dialect.name == "postgresql", "SQLite's events go with their watch (key)"
        lock_giving_way(
            conn, select(watch.c.id).where(watch.c.id == watch_id).with_for_update(), "the watch"
        )
        return conn.execute(delete(watch).where(watch.c.id == watch_id)).rowcount > 0
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


# A watch's backlog goes before the watch, this many events (and their deliveries) a
# transaction. On SQLite a transaction that deletes holds the store's one write lock, and
# every Party's read waits for it to append its access-log entry (as ingest waits to write):
# the deletion of a watch with a million events held it 4.4 s, and another Party's device
# search waited 4.4 s (audit 49d); in steps of this many (about 12 ms), 0.3 s at most, and the
# deletion took 12 s. On PostgreSQL readers never wait on a delete, but a deliverer's round
# settling one of the watch's deliveries waits for the transaction deleting it, and every
# delivery of that worker, any Party's, waits with the round: one transaction for a million
# events and deliveries held it 21-56 s (review 50d, bench/watch_deletion.py).
SHED_STEP = 2_000


def shed_backlog(
    engine: Engine,
    party_id: str,
    watch_id: int,
    step: int | None = None,
    steps: int | None = None,
) -> bool:
    """The events (and their deliveries) of the Party's watch deleted, oldest first, `step`
    at a time, each step its own transaction; on SQLite each is followed by a pause as long,
    so that other writers take the lock between them. What is left under a step, and what
    the matcher adds meanwhile, goes with the watch in delete_watch's transaction. A watch
    being deleted may meanwhile list fewer events; a deletion cut short leaves the watch,
    with fewer events, to be deleted again. Two deletions of the watch at once take turns a
    step at a time (`one_deletion_at_a_time`). `steps`: at most that many; returns False
    when they ran out with a step's worth or more left."""

    def still_ours(conn: Connection) -> bool:  # another Party's (or none): delete_watch says so
        return owned_watch(conn, party_id, watch_id) is not None

    return _shed(engine, watch_id, still_ours, step or SHED_STEP, steps)[0]


def _shed(
    engine: Engine,
    watch_id: int,
    still: Callable[[Connection], bool],
    step: int,
    steps: int | None,
    to_the_end: bool = False,
) -> tuple[bool, int]:
    """`shed_backlog`'s steps while `still` holds; (done, steps taken). `to_the_end`: what
    is left under a step too, in a last step (no transaction of the watch's deletion takes
    it)."""
    e = watch_event.c
    after = 0  # each step seeks past the last: PostgreSQL's index keeps the deleted a while
    taken = 0
    while steps is None or taken < steps:
        started = time.monotonic()
        with engine.begin() as conn:
            if not still(conn):
                return True, taken
            one_deletion_at_a_time(conn, watch_id)
            ours = (e.watch_id == watch_id) & (e.event_id > after)
            last = conn.execute(
                select(e.event_id).where(ours).order_by(e.event_id).offset(step - 1).limit(1)
            ).scalar()
            if last is None and to_the_end:
                last = conn.execute(select(func.max(e.event_id)).where(ours)).scalar()
            if last is None:
                return True, taken
            delete_deliveries_of(conn, watch_id, events=(after, last))
            conn.execute(delete(watch_event).where(ours, e.event_id <= last))
        after = last
        taken += 1
        if engine.dialect.name == "sqlite":
            time.sleep(time.monotonic() - started)
    return False, taken


# What a request deletes of a watch's backlog before it answers (PostgreSQL): 20,000 events,
# well under a second; the rest is the worker's (`shed_deleted_watches`). A million took
# 20-55 s in the request, and a proxy's 30-s limit answered an error for a deletion that went
# on to its end (review 50d).
ANSWER_STEPS = 10


def delete_watch_at_once(engine: Engine, party_id: str, watch_id: int) -> bool:
    """What the API and the screen do to delete a watch (204, SPEC section 6: done when
    answered): on PostgreSQL the watch is gone when this returns, with its backlog up to
    ANSWER_STEPS steps; what is left of a larger one is no one's to read (every read of
    events, and a deliverer's lease, goes through the watch's row, which is gone, and its id
    never comes back) and the webhook worker, which every server runs, sheds it a few steps a
    round (`shed_deleted_watches`). SQLite's events are keyed to their watch, and go with it
    (`delete_watch_and_backlog`). False if the Party has no such watch."""
    if engine.dialect.name != "postgresql":
        return delete_watch_and_backlog(engine, party_id, watch_id)
    whole = shed_backlog(engine, party_id, watch_id, steps=ANSWER_STEPS)
    with engine.begin() as conn:
        return delete_watch(conn, party_id, watch_id, leave_backlog=not whole)


# The watches whose rows are gone and whose events are not (PostgreSQL). Ids never come
# back, so such a watch's id lies in a gap between live watches' ids (or past the newest):
# a loose index scan of the events within each gap, a probe of the primary key a deleted
# watch with events, and one a gap. Walked through every watch with events instead, it
# probed each live watch too (13,000 watches with events: 250 ms of the server's CPU every
# SHED_LOOK_SECONDS, per worker, with nothing to shed; finding 51e 3). One statement: the
# gaps and the events are of one snapshot.
ORPHANED_WATCHES = (
    "WITH RECURSIVE gaps(lo, hi) AS ("
    "SELECT lo, hi FROM (SELECT lag(id, 1, 0::bigint) OVER (ORDER BY id) AS lo, id AS hi "
    "FROM watch) live WHERE hi > lo + 1 "
    "UNION ALL SELECT coalesce(max(id), 0), 9223372036854775807 FROM watch), "
    "ids(id, hi) AS ("
    "SELECT (SELECT min(e.watch_id) FROM watch_event e WHERE e.watch_id > lo "
    "AND e.watch_id < hi), hi FROM gaps UNION ALL "
    "SELECT (SELECT min(e.watch_id) FROM watch_event e WHERE e.watch_id > ids.id "
    "AND e.watch_id < ids.hi), hi FROM ids WHERE ids.id IS NOT NULL) "
    "SELECT id FROM ids WHERE id IS NOT NULL ORDER BY id"
)


def orphaned_watches(conn: Connection) -> list[int]:
    """PostgreSQL: the ids of deleted watches whose events are left (`delete_watch_at_once`)."""
    return [int(i) for i in conn.execute(text(ORPHANED_WATCHES)).scalars()]


def shed_deleted_watches(engine: Engine, steps: int) -> int:
    """PostgreSQL: the events and deliveries that `delete_watch_at_once` left of deleted
    watches, `steps` steps of SHED_STEP at most, in steps as `shed_backlog`'s; returns the
    steps taken (0: none left)."""
    if engine.dialect.name != "postgresql":
        return 0
    # ended by COMMIT (`reading`): a worker looks every 10 s, and the ROLLBACK of a read had
    # psycopg forget every statement prepared on the connection, which its next round or
    # search then planned afresh (audit 56c)
    with reading(engine) as conn:
        orphaned = orphaned_watches(conn)
    taken = 0
    for watch_id in orphaned:

        def gone(conn: Connection, watch_id: int = watch_id) -> bool:
            return conn.execute(select(watch.c.id).where(watch.c.id == watch_id)).first() is None

        taken += _shed(engine, watch_id, gone, SHED_STEP, steps - taken, to_the_end=True)[1]
        if taken >= steps:
            break
    return taken


def delete_watch_and_backlog(engine: Engine, party_id: str, watch_id: int) -> bool:
    """What every interface's "delete this watch" does: the backlog shed a step at a time,
    then the watch with what is left in one transaction (`delete_watch`); False if
    the Party has no such watch."""
    shed_backlog(engine, party_id, watch_id)
    with engine.begin() as conn:
        return delete_watch(conn, party_id, watch_id)


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
