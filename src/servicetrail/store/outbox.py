"""The webhook outbox (SPEC section 6): deliveries due, leased to one deliverer at a time,
and what became of them. Durable: a delivery leaves the store only when it is done (2xx),
given up (the schedule ran out), refused for good (410 disables the webhook) or not to be
made (the watch's Party may no longer see the record). A deliverer killed mid-flight leaves
its leased rows to come due again when the lease ends: at least once, never lost. Leases are
short and renewed while a deliverer holds them (`renew`), so that is seconds after a kill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from ..domain.records import NO_BODY, item
from ..domain.times import format_time
from ..domain.watches import titles_only
from .outbox_sql import (
    due_deliveries,
    due_watches,
    held_keys,
    held_pairs,
    kept_gone,
    renewed_keys,
    visible_deliveries,
)
from .engine import planned_generically
from .watch_tables import watch, webhook_outbox


@dataclass(frozen=True, slots=True)
class Due:
    """One delivery to make: the event (titles only) and where and how to send it."""

    watch_id: int
    event_id: int
    attempts: int
    url: str
    secret: str
    event: dict[str, Any]
    party_id: str = ""  # the watch's Party, for the delivery's access-log entry


# From the watches with deliveries due (id, URL, Party): how many of each to lease now.
Share = Callable[[list[tuple[int, str, str]]], Mapping[int, int]]


def _write_lock(conn: Connection) -> None:
    """SQLite: one deliverer leases at a time (PostgreSQL locks rows: see `lease_due`)."""
    if conn.dialect.name != "postgresql":
        driver: Any = conn.connection.driver_connection
        if not driver.in_transaction:
            driver.execute("BEGIN IMMEDIATE")


def lease_due(
    conn: Connection,
    now: datetime,
    limit: int,
    lease: timedelta,
    share: Share | None = None,
    accept: Callable[[Due], bool] = lambda _: True,
    then: Callable[[list[Due]], None] | None = None,
) -> list[Due]:
    """Up to `limit` deliveries due at `now`, at most what `share` gives each watch (by
    default, up to `limit` each), oldest first within a watch; those `accept` takes are
    leased until `now + lease`, in the caller's transaction, and the others stay due.
    Deliveries whose record the Party may no longer see are dropped on the way. `then` is
    given those leased, in the same transaction and generic plans (the access log's entries
    for them: `logged_reads.lease_deliveries`).

    Each watch's rows come by an index probe of their own (`outbox_sql.due_deliveries`): a
    watch given nothing (its receiver is busy) costs nothing, however much of it is due."""
    if conn.execute(_first_due(), {"now": now}).first() is None:
        return []  # nothing due: no lock taken (the worker asks ten times a second)
    looked = conn.execute(due_watches(conn.dialect.name == "postgresql"), {"now": now})
    watches = [(w, url, party) for w, url, party in looked]
    if not watches:
        # due, but no webhook on is: deliveries a 410 left to another transaction (a round's,
        # a lease's), which it then retried, released or let go, and no round will ever
        # lease now (review 34c). Gone in batches, when nothing else is due.
        _write_lock(conn)
        _drop_turned_off(conn, now)
        return []
    wanted = share(watches) if share is not None else {w: limit for w, _, _ in watches}
    if not any(take > 0 for take in wanted.values()):
        return []  # due, but for receivers or Parties with enough waiting: no lock either
    _write_lock(conn)
    statement = due_deliveries(locked=conn.dialect.name == "postgresql")
    if conn.dialect.name == "postgresql":
        # its page is locked already (`due_deliveries`): this reads each row as it is now,
        # as it was locked, not as the statement's snapshot had it
        statement = statement.with_for_update(of=webhook_outbox, skip_locked=True)
    due: list[Due] = []
    hidden: list[tuple[int, int]] = []
    # one generic plan: planned for its values, the page cost 4-9 ms of planning against
    # 1 ms of running (the record's partitions, the rule's subqueries); its pick is written
    # so that any plan reads it by `(watch_id, next_attempt_at)` (`due_deliveries`). What
    # follows reads rows by their keys, whatever the values: the drops and the lease by
    # (watch, event), and `then`'s inserts, one an entry, which planned for their values
    # cost a lease of 256 a quarter more (83-95 ms against 58-72, audit 56c). The probe and
    # the watches above stay planned for their values: generic, `now` unknown, the probe read
    # the whole outbox where nothing was due (200,000 rows: 40 ms against 0.015), and the
    # watches' look walked them all (13,000 watches, 2M rows: 108 ms against 0.06).
    with planned_generically(conn):
        for watch_id, _, _ in watches:
            take = min(wanted.get(watch_id, 0), limit - len(due))
            if take <= 0:
                continue
            rows = conn.execute(statement, {"now": now, "lim": take, "watch_id": watch_id}).all()
            hidden += [(r.watch_id, r.event_id) for r in rows if not r.visible]
            due += [d for d in map(_due, rows) if d is not None and accept(d)]
        if hidden:
            _delete(conn, hidden)
        if due:
            _lease(conn, due, now + lease)
        if due and then is not None:
            then(due)
    return due


@lru_cache(maxsize=1)
def _first_due() -> Select[Any]:
    """The delivery due first, if it is due by `now`: read from `next_attempt_at`'s index in
    its order, which stops at its first entry. Asked for any due row, PostgreSQL walked the
    outbox whole where none was due, whenever its statistics said most were: never analysed,
    or analysed before a dead receiver's 200,000 retries were put off hours (44-68 ms a look,
    and an idle deliverer looks ten times a second; audit 62g)."""
    o = webhook_outbox.c
    return (
        select(literal(1))
        .where(o.next_attempt_at <= bindparam("now"))
        .order_by(o.next_attempt_at)
        .limit(1)
    )


def _lease(conn: Connection, due: list[Due], until: datetime) -> None:
    if conn.dialect.name == "postgresql":
        # one statement on the two arrays, its rows locked above: one a delivery, each was
        # planned for its values (18,504 leased: 0.25-0.46 s of planning in the deliveries
        # bench)
        held = held_keys()
        o = webhook_outbox.c
        conn.execute(
            update(webhook_outbox)
            .where(o.watch_id == held.c.watch_id, o.event_id == held.c.event_id)
            .values(next_attempt_at=until),
            held_pairs(sorted((d.watch_id, d.event_id) for d in due)),
        )
        return
    conn.execute(
        update(webhook_outbox)
        .where(
            webhook_outbox.c.watch_id == bindparam("w", type_=BigInteger),
            webhook_outbox.c.event_id == bindparam("e", type_=BigInteger),
        )
        .values(next_attempt_at=until),
        [{"w": d.watch_id, "e": d.event_id} for d in due],
    )


TURNED_OFF_BATCH = 1000


def _drop_turned_off(conn: Connection, now: datetime) -> None:
    """Delete up to TURNED_OFF_BATCH due deliveries whose watch has no webhook on, skipping
    any another transaction holds (it waits on nothing: see `lock_in_key_order`)."""
    o, w = webhook_outbox.c, watch.c
    on = select(literal(1)).where(
        w.id == o.watch_id, w.webhook_url.is_not(None), w.webhook_disabled_at.is_(None)
    )
    stranded = (
        select(o.watch_id, o.event_id)
        .where(o.next_attempt_at <= now, ~exists(on))
        .limit(TURNED_OFF_BATCH)
    )
    if conn.dialect.name == "postgresql":
        taken = _taken_once(stranded.with_for_update(of=webhook_outbox, skip_locked=True))
        stranded = select(taken.c.watch_id, taken.c.event_id)
    conn.execute(delete(webhook_outbox).where(tuple_(o.watch_id, o.event_id).in_(stranded)))


def hidden_since_lease(conn: Connection, keys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Of deliveries leased and waiting to be sent ((watch id, event id) pairs), those not to
    be made any more: the watch's Party may no longer see the record (a registry correction
    committed since the lease), the watch is gone, or its receiver answered 410 (to any
    worker). Their rows are deleted."""
    visible: set[tuple[int, int]] = set()
    if conn.dialect.name == "postgresql":
        visible.update(conn.execute(visible_deliveries(True), held_pairs(keys)).tuples())
    else:  # SQLite's pairs as a list, in chunks under its limit of bind parameters
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            visible.update(conn.execute(visible_deliveries(), {"keys": chunk}).tuples())
    hidden = [key for key in keys if key not in visible]
    if hidden:
        _delete(conn, hidden)
    return hidden


def renew(
    conn: Connection, leases: Mapping[tuple[int, int], datetime], until: datetime
) -> list[tuple[int, int]]:
    """Leases a worker still holds, extended to `until` (its heartbeat): of these deliveries
    ((watch id, event id) -> the end its lease was given), those whose row still holds that
    end; returns them. A row whose end has changed is not the worker's any more: recorded,
    released, deleted, or leased again by another worker once its lease had lapsed (the worker
    stalled), and renewed on the time alone, it was held by two. In the caller's transaction,
    which has locked them (`lock_in_key_order`), so it waits on nothing."""
    o = webhook_outbox.c
    if conn.dialect.name == "postgresql":
        if not leases:
            return []
        # the pairs and their ends as three arrays: as an IN list of pairs the statement was
        # new text for each count of deliveries, planned again each round (256 held: 5.4-5.9
        # ms a renewal, 3.7-4.0 ms so)
        held = renewed_keys()
        statement = (
            update(webhook_outbox)
            .where(
                o.watch_id == held.c.watch_id,
                o.event_id == held.c.event_id,
                o.next_attempt_at == held.c.lease_end,
            )
            .values(next_attempt_at=bindparam("until"))
            .returning(o.watch_id, o.event_id)
        )
        keys = sorted(leases)
        ends = {**held_pairs(keys), "lease_ends": [leases[k] for k in keys]}
        return sorted(conn.execute(statement, {**ends, "until": until}).tuples())
    by_end: dict[datetime, list[tuple[int, int]]] = {}
    for key, end in leases.items():
        by_end.setdefault(end, []).append(key)
    renewed: list[tuple[int, int]] = []
    for end, keys in sorted(by_end.items()):  # a few ends: one for each lease or renewal
        keys.sort()
        for start in range(0, len(keys), 500):
            statement = (
                update(webhook_outbox)
                .where(
                    tuple_(o.watch_id, o.event_id).in_(keys[start : start + 500]),
                    o.next_attempt_at == end,
                )
                .values(next_attempt_at=until)
                .returning(o.watch_id, o.event_id)
            )
            renewed += conn.execute(statement).tuples()
    return renewed


def release(conn: Connection, keys: list[tuple[int, int]], now: datetime) -> None:
    """Leased deliveries ((watch id, event id) pairs) that a deliverer stopping cleanly did
    not send: due again at `now`, not when their lease ends minutes later (the next worker
    sent a deploy's queued deliveries 4.6 minutes late; audit 21a). Not an attempt: their
    count and schedule stay as they were. A lease that has ended is someone else's now."""
    conn.execute(
        update(webhook_outbox)
        .where(
            webhook_outbox.c.watch_id == bindparam("w", type_=BigInteger),
            webhook_outbox.c.event_id == bindparam("e", type_=BigInteger),
            webhook_outbox.c.next_attempt_at > now,
        )
        .values(next_attempt_at=now),
        [{"w": w, "e": e} for w, e in sorted(keys)],  # key order: see `lock_in_key_order`
    )


def _due(r: Any) -> Due | None:
    if not r.visible:
        return None
    record = titles_only(item(*(*r[7:21], *NO_BODY)))
    return Due(
        r.watch_id,
        r.event_id,
        r.attempts,
        r.webhook_url,
        r.webhook_secret,
        {
            "event_id": r.event_id,
            "watch_id": r.watch_id,
            "matched_at": format_time(r.matched_at),
            "record": record,
        },
        r.watch_party_id,
    )


def lock_in_key_order(conn: Connection, keys: Iterable[tuple[int, int]]) -> None:
    """PostgreSQL: lock deliveries ((watch id, event id) pairs) in key order, before the
    transaction changes any of them, and wait on nothing once it has: each round of a
    deliverer does so. Changed in the order they came (delivered, then retried, then those
    hidden since), a round and a delete of a watch (in the table's order) each held a
    delivery the other waited for: a deadlock, one of them rolled back (session 33's
    stress; review 34a). Rows gone meanwhile are simply not there. SQLite has one writer
    at a time: nothing to order."""
    keys = sorted(set(keys))
    if conn.dialect.name != "postgresql" or not keys:
        return
    o = webhook_outbox.c
    held = held_keys()
    locked = (
        select(o.watch_id)
        .select_from(
            webhook_outbox.join(
                held, and_(o.watch_id == held.c.watch_id, o.event_id == held.c.event_id)
            )
        )
        .order_by(o.watch_id, o.event_id)
        .with_for_update(of=webhook_outbox)
        .subquery()
    )
    conn.execute(select(func.count()).select_from(locked), held_pairs(keys))


def delete_deliveries_of(
    conn: Connection,
    watch_id: int,
    skip_locked: bool = False,
    at_most: int | None = None,
    events: tuple[int, int] | None = None,
) -> int:
    """Delete the watch's deliveries, on PostgreSQL each locked in key order as
    `lock_in_key_order` locks them, and only those the statement began with: one committed
    while it waited (a new match), met in the table's order, was held by a round that waited
    on this transaction (review 34a); a later pass takes it. `skip_locked`: those another
    transaction holds are left to it (a round's 410: another round settles its own).
    `at_most`: the oldest that many. `events` (after, through): only the deliveries
    of those events. Returns how many were deleted."""
    o = webhook_outbox.c
    which = o.watch_id == watch_id
    if events is not None:
        which = which & (o.event_id > events[0]) & (o.event_id <= events[1])
    if conn.dialect.name != "postgresql":
        if at_most is not None:
            oldest = select(o.event_id).where(which).order_by(o.event_id).limit(at_most)
            which = which & o.event_id.in_(oldest)
        return conn.execute(delete(webhook_outbox).where(which)).rowcount
    locked: Any = select(o.event_id).where(which).order_by(o.event_id)
    locked = locked.with_for_update(skip_locked=skip_locked)
    if at_most is not None:
        locked = select(_taken_once(locked.limit(at_most)).c.event_id)
    # the watch named outside too: by the pair alone, the delete read the whole outbox
    # (1M of a watch's deliveries among 3M: 3.8 s, against 1.4 s so)
    return conn.execute(delete(webhook_outbox).where(which, o.event_id.in_(locked))).rowcount


def _taken_once(chosen: Select[Any]) -> Any:
    """A LIMIT ... FOR UPDATE SKIP LOCKED choice, run once (PostgreSQL): as a subquery of
    `IN`, the planner may run it again for each row it joins, and each run picks the next rows
    not yet taken; a drop of at most 2 deleted all 7 of a watch's deliveries (audit 50d)."""
    return chosen.cte("taken").prefix_with("MATERIALIZED")


def _delete(conn: Connection, keys: list[tuple[int, int]]) -> None:
    conn.execute(
        delete(webhook_outbox).where(
            webhook_outbox.c.watch_id == bindparam("w", type_=BigInteger),
            webhook_outbox.c.event_id == bindparam("e", type_=BigInteger),
        ),
        [{"w": w, "e": e} for w, e in sorted(keys)],  # key order: see `lock_in_key_order`
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: delivered, gone (410), or failed with a reason."""

    watch_id: int
    event_id: int
    attempts: int  # before this attempt
    status: str  # "delivered", "gone" or "failed"
    error: str = ""
    # the end of the lease the attempt was made on, as the row held it (None: not known):
    # a failure is recorded only on a row that still holds it
    lease_end: datetime | None = None
    # the attempt's own words (the HTTP client's), for the operator's log alone: `error` is
    # what the Party is shown (webhooks.posting.shown_error)
    detail: str = ""


def record_outcomes(
    conn: Connection,
    outcomes: list[Outcome],
    now: datetime,
    schedule: list[float],
    locked: bool = False,
) -> int:
    """Apply a round of attempts in one transaction; returns how many were given up.

    `schedule`: seconds from an attempt to the next (attempt n + 1 waits schedule[n - 1]);
    after the last, the delivery is given up. A 410's webhook is turned off beforehand, in
    a transaction of its own (`disable_gone`); its other deliveries go here, but those
    another transaction holds (a round's, a lease's): that one settles them, and a delivery
    of a webhook turned off is dropped, not retried. Having locked its deliveries, a round
    waits on no other row: waiting on the watch's, a round deadlocked with a delete of the
    watch, which waited on deliveries the round held (reviews 33d, 34a, 34b). `locked`: the
    caller's transaction has locked these deliveries already (`lock_in_key_order`), as a
    round locks all it holds before it records anything; a row lock is held to the
    transaction's end, and a delivery gone is not made again, so a second lock found the
    same rows (1.5 ms a round of 256 held)."""
    if not locked:
        lock_in_key_order(conn, [(o.watch_id, o.event_id) for o in outcomes])
    done = [(o.watch_id, o.event_id) for o in outcomes if o.status == "delivered"]
    drop_some(conn, sorted({o.watch_id for o in outcomes if o.status == "gone"}))
    failed = [o for o in outcomes if o.status == "failed"]
    turned_off = _turned_off(conn, {o.watch_id for o in failed})
    done += [(o.watch_id, o.event_id) for o in failed if o.watch_id in turned_off]
    if done:
        _delete(conn, done)
    retry, given_up = [], []
    for o in failed:
        if o.watch_id in turned_off:
            continue
        tried = o.attempts + 1
        if tried > len(schedule):
            given_up.append((o.watch_id, o.event_id))
        else:
            wait = timedelta(seconds=schedule[tried - 1])
            retry.append(
                {
                    "w": o.watch_id,
                    "e": o.event_id,
                    "n": tried,
                    "at": now + wait,
                    "err": o.error[:200],
                    "end": o.lease_end,
                }
            )
    if given_up:
        _delete(conn, given_up)
    _retry(conn, [r for r in retry if r["end"] is None])
    # A failure on a lease that lapsed (its worker stalled) and that another worker has taken
    # since is that one's to record: recorded, it made the row due again in 5 s under the
    # other's attempt, and a third worker sent it while the second still did (audit 47i)
    _retry(conn, [r for r in retry if r["end"] is not None], fenced=True)
    return len(given_up)


def _retry(conn: Connection, retry: list[dict[str, Any]], fenced: bool = False) -> None:
    if not retry:
        return
    o = webhook_outbox.c
    statement = update(webhook_outbox).where(
        o.watch_id == bindparam("w", type_=BigInteger),
        o.event_id == bindparam("e", type_=BigInteger),
    )
    if fenced:
        statement = statement.where(o.next_attempt_at == bindparam("end"))
    statement = statement.values(
        attempts=bindparam("n"), next_attempt_at=bindparam("at"), last_error=bindparam("err")
    )
    conn.execute(statement, retry)


# Deliveries a round's drop deletes at most. On SQLite its transaction holds the store's one
# write lock, which every Party's read waits for to append its access-log entry: a receiver
# that answered 410 over a backlog of 1M deliveries held it 3.5 s, and another Party's search
# waited 3.3 s (audit 49d). On PostgreSQL another worker's round settling one of those
# deliveries waited for the whole drop (1M: 2.1 s; audit 50d).
DROPPED_PER_ROUND = 5_000


def drop_some(conn: Connection, watch_ids: list[int]) -> None:
    """The deliveries of these watches, whose receivers answered 410, deleted;
    DROPPED_PER_ROUND at most, the rest by later rounds' `drop_turned_off`
    (store.outbox_gone): the watches stay kept until none is left, and no worker leases
    anything of theirs meanwhile. Not the steps of a watch's deletion (watches.shed_backlog),
    which lead with the events and commit their own transactions until done: here the watch
    and its events stay, the drop rides in a round's transaction, and any worker's later
    round takes up the rest."""
    left = DROPPED_PER_ROUND
    for watch_id in watch_ids:
        if left <= 0:
            return
        left -= delete_deliveries_of(conn, watch_id, skip_locked=True, at_most=left)


def _turned_off(conn: Connection, watch_ids: set[int]) -> set[int]:
    """Of these watches, those whose webhook is off, or about to be (its receiver answered
    410: outbox_gone.disable_gone), or that are gone: their deliveries are not to be
    retried. Read, not locked."""
    if not watch_ids:
        return set()
    on = conn.execute(
        select(watch.c.id).where(
            watch.c.id.in_(sorted(watch_ids)),
            watch.c.webhook_url.is_not(None),
            watch.c.webhook_disabled_at.is_(None),
            ~kept_gone(watch.c.id),
        )
    ).scalars()
    return watch_ids - set(on)


def pending_count(conn: Connection, watch_id: int | None = None) -> int:
    query = select(func.count()).select_from(webhook_outbox)
    if watch_id is not None:
        query = query.where(webhook_outbox.c.watch_id == watch_id)
    return conn.execute(query).scalar_one()
