"""The delivery worker's store work, a round at a time: the attempts' outcomes recorded, the
deliveries gone hidden found, the leases held renewed and the next lease taken; and at the
stop, what is still queued released. Each transaction waits for another's lock a while at
most, and one PostgreSQL fails in a deadlock is run again at once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from sqlalchemy.engine import Connection, Engine

from ..store.engine import planned_generically, waiting_at_most
from ..store.limits import deadlocked
from ..store.logged_reads import lease_deliveries
from ..store.outbox import (
    Due,
    Outcome,
    Share,
    hidden_since_lease,
    lock_in_key_order,
    record_outcomes,
    release,
    renew,
)
from ..store.outbox_gone import disable_gone, drop_turned_off

log = logging.getLogger("servicetrail.webhooks")
UTC = timezone.utc
ROUND_TRIES = 3  # a round that PostgreSQL failed in a deadlock is run again at once
Key = tuple[int, int]  # (watch_id, event_id): a delivery


class Settled(NamedTuple):
    """What a round did: leased these, found these hidden, renewed these leases; those it
    leased or renewed end at `store_end` in the store."""

    leased: list[Due]
    hidden: list[Key]
    renewed: list[Key]
    store_end: datetime


class StoreRounds:
    """One worker's transactions on `engine`: its retry `schedule`, the `lease` it takes and
    renews, how long it waits for another's lock (`lock_wait`, seconds), and what a lease
    takes: as `share` gives each watch, the deliveries `accept` takes."""

    def __init__(
        self,
        engine: Engine,
        schedule: list[float],
        lease: timedelta,
        lock_wait: float,
        share: Share,
        accept: Callable[[Due], bool],
    ) -> None:
        self.engine = engine
        self.schedule = schedule
        self.lease = lease
        self.lock_wait = lock_wait
        self.share = share
        self.accept = accept

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A round's transaction, in which another's lock is waited for `lock_wait` at most, on
        PostgreSQL as on SQLite (its busy timeout): a round there waited for ever behind a
        `LOCK TABLE` or a long transaction holding its rows, the worker stalled with nothing
        in its log (review 48a). Failed, the round pauses the worker, which says why."""
        with self.engine.begin() as conn, waiting_at_most(conn, self.lock_wait):
            yield conn

    def settle(
        self,
        outcomes: list[Outcome],
        room: int,
        waiting: list[Key],
        renewing: Mapping[Key, datetime],
    ) -> tuple[Settled, int]:
        """`round`, run again when PostgreSQL broke a deadlock by failing it: nothing of it
        was kept, and the same round again is what was wanted (a round failing paused the
        worker, and what it had leased came due again minutes later, delivered twice)."""
        tries = ROUND_TRIES
        while True:
            try:
                return self.round(outcomes, room, waiting, renewing)
            except Exception as e:  # psycopg's own too: the lease's entries go through it
                tries -= 1
                if not deadlocked(e) or not tries:
                    raise
                log.info("a webhook round met another change in a deadlock; it runs again")

    def round(
        self,
        outcomes: list[Outcome],
        room: int,
        waiting: list[Key],
        renewing: Mapping[Key, datetime],
    ) -> tuple[Settled, int]:
        """Up to three transactions: the receivers that answered 410 turned off
        (`disable_gone`), their deliveries dropped, then the attempts recorded, the hidden
        found, the leases held renewed and up to `room` due deliveries leased (as `share`
        gives each watch, those `accept` takes) in one, whose deliveries are locked first, in
        key order, so that it waits on nothing after (`outbox.lock_in_key_order`). With how
        many deliveries it gave up (their last attempt failed)."""
        given_up = 0
        with self.transaction() as conn:  # holding nothing else (see there)
            # this round's 410s, and those kept by earlier rounds, this worker's or another's:
            # turned off, or kept in the store while a registry change is at work or their
            # rows are held, and leased by no one meanwhile; their 410s are recorded now all
            # the same, which deletes their deliveries (a 410 put off to a later round was
            # sent again when its lease ended: review 35e)
            turned_off = disable_gone(
                conn, {o.watch_id for o in outcomes if o.status == "gone"}, datetime.now(UTC)
            )
        if turned_off.watches:
            with self.transaction() as conn:  # holding nothing else (see there)
                drop_turned_off(conn, turned_off.watches)
        with self.transaction() as conn:
            held = [*((o.watch_id, o.event_id) for o in outcomes), *waiting, *renewing]
            # what it holds, by key: the lease, whose plan depends on the backlog, is not;
            # a worker holding nothing (idle, it looks every 0.1-0.8 s) sends nothing more
            with planned_generically(conn) if held else contextlib.nullcontext():
                lock_in_key_order(conn, held)
                if outcomes:
                    given_up = record_outcomes(  # its deliveries among those locked above
                        conn, outcomes, datetime.now(UTC), self.schedule, locked=True
                    )
                hidden = hidden_since_lease(conn, waiting) if waiting else []
                now = datetime.now(UTC)  # after the locks: the leases it gives run from here
                renewed = renew(conn, renewing, now + self.lease) if renewing else []
            leased = (
                lease_deliveries(conn, now, room, self.lease, self.share, self.accept)
                if room
                else []
            )
        return Settled(leased, hidden, renewed, now + self.lease), given_up

    def release(self, unsent: list[Key]) -> None:
        """What is still queued released, so that the next worker sends it now."""
        with self.transaction() as conn:
            release(conn, unsent, datetime.now(UTC))
