"""Webhooks whose receivers answered 410 Gone (SPEC section 6): kept in `webhook_gone` by
the round that heard it, turned off by a round's first transaction (`disable_gone`), their
queues dropped by its second (`drop_turned_off`), then forgotten.

Apart from store.outbox, which leases deliveries and records what became of them: turning a
webhook off takes locks of its own (the watch's row, the registry lock shared), whose order
against the matcher and a watch's deletion is what the long docstrings here are about, and
the outbox needs none of it to lease or settle a delivery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, literal, select, update
from sqlalchemy.engine import Connection

from .outbox import drop_some
from .upsert import dialect_insert
from .visibility_index import REGISTRY_LOCK
from .watch_tables import watch, webhook_gone, webhook_outbox

GONE_REASON = "the receiver answered 410 Gone"


def disable_gone(conn: Connection, watch_ids: Iterable[int], now: datetime) -> TurnedOff:
    """Turn off the webhooks of these watches, whose receivers answered 410 Gone, and of those
    kept in `webhook_gone` by earlier rounds (any worker's), in the caller's transaction,
    which should hold nothing else. True when every one of `watch_ids` was turned off; the
    caller then drops the queues of those turned off in a transaction of its own
    (`drop_turned_off`), which forgets them: until it commits they stay kept, so a worker
    stopped between the two leaves the drop to the next round, whoever runs it (review 36e).

    It waits for no watch's row (PostgreSQL). A watch whose row another transaction holds
    for an update (a Party marking its events read, a deletion) is skipped and stays kept
    for a later round: waiting for it inside a round closed a cycle with a delete of the
    watch (review 34b), and outside one, every worker's round waited on any kept watch's row
    (review 36a). All of them stay kept while a registry change is at work or waiting: it
    matches in steps of its transaction, each in id order but a later one's watch maybe
    before an earlier one's, and a turning off between two steps closed a cycle with it
    (review 35a); waiting for it, behind the ingest batches it waits for, stalled the rounds
    with no end (review 35d). Keeping takes no lock on the watch: no worker leases anything
    of a kept watch (`due_watches`), a matcher's step that begins after it queues nothing
    for it, and a later round of any worker, after a restart too, turns it off. Kept in one
    worker's memory, another worker, or the same one restarted, sent the receiver more
    (session 35)."""
    reported = sorted(set(watch_ids))
    _keep(conn, reported, now)
    kept = sorted(set(conn.execute(select(webhook_gone.c.watch_id)).scalars()))
    if not kept:
        return TurnedOff(True)
    gone = kept
    if conn.dialect.name == "postgresql":
        taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock_shared({REGISTRY_LOCK})")
        if not taken.scalar_one():
            return TurnedOff(not reported)
        w = watch.c
        free = select(w.id).where(w.id.in_(gone)).order_by(w.id)
        gone = list(conn.execute(free.with_for_update(key_share=True, skip_locked=True)).scalars())
    conn.execute(
        update(watch)
        .where(watch.c.id.in_(gone), watch.c.webhook_disabled_at.is_(None))
        .values(webhook_disabled_at=now, webhook_disabled_reason=GONE_REASON)
    )
    g = webhook_gone.c
    deleted = ~exists(select(literal(1)).where(watch.c.id == g.watch_id))
    _forget(conn, g.watch_id.in_(kept) & deleted)  # nothing to drop: the deletion did
    return TurnedOff(set(reported) <= set(gone), tuple(gone))


@dataclass(frozen=True, slots=True)
class TurnedOff:
    """What `disable_gone` did: true when every watch reported was turned off; `watches`:
    those it turned off (or found off), whose queues are for `drop_turned_off`."""

    every_reported: bool
    watches: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return self.every_reported


def drop_turned_off(conn: Connection, watch_ids: Iterable[int]) -> None:
    """Delete the queues of these watches, whose webhooks `disable_gone` turned off, and
    forget that they were kept, in a transaction of the caller's that should hold nothing
    else. It waits for nothing. A watch whose row it could not take FOR UPDATE just now stays
    kept for a later round: a matcher's step holds it FOR KEY SHARE to its end, and the
    deliveries that step writes, uncommitted, were not there to delete; forgotten, they
    stayed (review 36f). So does one whose deliveries another transaction holds (a round
    settles or releases them).

    Left, what the matcher had queued for a kept watch waited for a moment when nothing else
    was due (review 36a); deleted inside `disable_gone`, holding the watch's row and the
    registry lock, a backlog of 1M held a registry change and the ingest behind it for 1.3 s
    (review 36c)."""
    ids = sorted(set(watch_ids))
    if conn.dialect.name == "postgresql" and ids:
        # only asked, and let go at once: held while a large queue was deleted, the lock
        # stood a matcher's step and a Party marking its events read behind it (150k
        # deliveries: 0.27 s; review 36g). A step that begins after this one sees the watch
        # kept, and queues nothing for it.
        free = select(watch.c.id).where(watch.c.id.in_(ids)).order_by(watch.c.id)
        asked = conn.begin_nested()
        ids = list(conn.execute(free.with_for_update(skip_locked=True)).scalars())
        asked.rollback()
    if not ids:
        return
    drop_some(conn, ids)
    o, g = webhook_outbox.c, webhook_gone.c
    emptied = [
        w
        for w in ids
        if conn.execute(select(literal(1)).where(o.watch_id == w).limit(1)).first() is None
    ]
    if emptied:
        _forget(conn, g.watch_id.in_(emptied))


def _forget(conn: Connection, which: Any) -> None:
    """Delete the kept rows `which` picks, skipping any another transaction holds (another
    worker forgetting the same watch): waiting for it, a round stood behind that worker's."""
    g = webhook_gone.c
    chosen = select(g.watch_id).where(which)
    if conn.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    conn.execute(delete(webhook_gone).where(g.watch_id.in_(chosen.scalar_subquery())))


def _keep(conn: Connection, watch_ids: list[int], now: datetime) -> None:
    """Keep these watches in `webhook_gone`, in key order: two workers keeping the same
    watches wait in line, not in a cycle. No lock on the watch's row."""
    if not watch_ids:
        return
    keep = dialect_insert(conn, webhook_gone).on_conflict_do_nothing()
    conn.execute(keep, [{"watch_id": w, "reported_at": now} for w in watch_ids])
