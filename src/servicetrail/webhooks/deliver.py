"""The delivery worker: matches new records into events, and posts the outbox's due events
to their webhooks (Standard Webhooks), from `servicetrail serve` and `servicetrail deliver`.

Bounded everywhere a receiver could hold it up:
- at most CONCURRENCY deliveries in flight, and PER_HOST to one receiver (host and port),
  of which one Party at most half while others' wait for it too; a slot that frees goes to
  the Party with the fewest in flight, so a Party whose deliveries wait behind others'
  receivers that never answer is sent as their attempts time out (one time limit beside two
  such Parties), once each Party that came before it has had an attempt;
  each Party's share of the queue leaves as much again for one more Party (`shares.share_of`),
  and a Party under its share is leased even when the queue is full,
  so that the next Party's deliveries are leased at once, however many Parties wait;
  deliveries are leased ahead into a queue per receiver (QUEUE_FACTOR times PER_HOST), and
  a receiver whose queue is more than half full gets no share of the next lease (its due
  rows are not even read), so a slow one cannot fill the worker, its queue or its leases;
- each attempt ends within TIMEOUT_SECONDS (connect, send, answer, all together), reads at
  most MAX_RESPONSE_BYTES of the answer, and follows no redirect; one that got no answer ends
  for its Party at that limit, however soon it failed (`_until_time_limit`);
- the address is resolved and checked (webhooks.outbound) before every connection (an
  answer is reused for RESOLVE_SECONDS), and the connection goes to that checked address,
  not to a second resolution of the name.

What waits in a queue was visible when it was leased; each round checks it again, so that a
registry correction that hides a record stops its deliveries within a round (at most
IDLE_MAX_SECONDS), not when the lease ends minutes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from urllib.parse import urlsplit
from dataclasses import replace
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Engine

from .. import settings
from ..domain.times import seconds_text
from ..store.engine import BUSY_TIMEOUT_MS
from ..store.limits import store_busy
from ..store.schema_watch import StoreUpgraded
from ..store.outbox import Due, Outcome
from ..store.watch_matcher import catch_up
from ..store.watches import shed_deleted_watches
from .addresses import Addresses
from .outbound import loopback_allowed
from .posting import client_session, post, shown_error
from .queues import Queues
from .shares import host_of, lease_shares, share_of
from .rounds import Settled, StoreRounds
from .worker_report import FailureLog, Stats

if TYPE_CHECKING:  # imported (off the loop) for the first delivery due (`Deliverer.run`)
    import aiohttp

__all__ = ["Deliverer", "client_session", "retry_schedule"]

log = logging.getLogger("servicetrail.webhooks")
UTC = timezone.utc

# Standard Webhooks' schedule: the waits before attempts 2, 3, ... (then it is given up)
STANDARD_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
IDLE_SECONDS = 0.1  # how often a worker looks for due deliveries and records to match
# ... doubling while it finds nothing, up to this. Each look is a few statements, and every
# `serve` worker runs one: at 0.1 s two idle workers spent 50 ms of CPU a second (5% of the
# server's CPU under a search load at 10M records); a delivery after a quiet spell waits at
# most this much longer (the target is 2 s from commit to arrival).
IDLE_MAX_SECONDS = 0.8
# the backlogs deleted watches left (store.watches.shed_deleted_watches): looked for this
# often, and while there are some, this many steps (of 2,000 events) a round
SHED_LOOK_SECONDS = 10.0
SHED_STEPS = 2
# Deliveries leased ahead per receiver, in multiples of what it may have in flight. Enough to
# keep a fast receiver busy while the next lease is made: at 4, a lease round trip on a loaded
# PostgreSQL outlasted the queue (195 deliveries/s); at 16, 693/s on the same machine.
QUEUE_FACTOR = 16
# What an attempt leaves of its delivery's lease, after its own time, for its outcome to be
# recorded (in the next round, a transaction on a thread): this, or a quarter of a shorter
# lease. One started with no more than its own time left ended as its lease did, and a worker
# that leased it before the outcome was recorded sent it again (session 40: a webhook-id twice,
# two workers on two busy cores).
RECORDED_WITHIN_SECONDS = 5.0
# A lease is short, and renewed while its worker holds the delivery, queued or in flight: each
# round renews those leased or renewed more than this ago. Sized to the worker's whole queue
# instead (its last delivery's wait: 15 s x 18 + 5 = 275 s), a worker killed between an
# attempt and its record left that delivery for as long before another sent it again (audit
# 47a: 274.5 s). The lease is an attempt's time, the time to record it, this, and as much
# again for a round that comes late (a busy store): a round later than that lets the queued
# deliveries go unsent (Queues.start), never sent on a lease that may have lapsed.
RENEW_SECONDS = 5.0
# how long the worker pauses after a failure (a store that cannot be reached, say), doubling
# while it keeps failing
PAUSE_SECONDS, PAUSE_MAX_SECONDS = 0.5, 30.0
# ... and how often, while paused, it asks a store it has found away whether it is back (one
# `SELECT 1`): it carried on up to PAUSE_MAX_SECONDS after the store's return (audit 54g)
PROBE_SECONDS = 1.0


def retry_schedule() -> list[float]:
    """SERVICETRAIL_WEBHOOK_RETRY_SECONDS (checked by settings), else Standard Webhooks'."""
    waits = settings.current().webhook_retry_seconds
    return list(STANDARD_SCHEDULE if waits is None else waits)


class Deliverer:
    """One worker's loop: match, lease what is due, post it, record what came of it."""

    def __init__(
        self,
        engine: Engine,
        schedule: list[float] | None = None,
        concurrency: int | None = None,
        per_host: int | None = None,
        timeout: float | None = None,
        lease_seconds: float | None = None,
        lock_wait_seconds: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        chosen = settings.current()
        concurrency = chosen.webhook_concurrency if concurrency is None else concurrency
        per_host = chosen.webhook_per_host if per_host is None else per_host
        timeout = chosen.webhook_timeout if timeout is None else timeout
        self.engine = engine
        schedule = retry_schedule() if schedule is None else schedule
        self.concurrency = max(1, concurrency)
        self.per_host = max(1, per_host)
        # a Party's receivers together get at most half the worker's slots: one Party's
        # watches pointed at receivers that never answer (each a slot for the whole timeout)
        # filled the worker, and no other Party's webhook was sent. A half, so that one of a
        # Party's receivers (at most per_host slots, a quarter by default) leaves room for its
        # others; and not less with more Parties, which left healthy Parties' receivers half
        # idle (review 30d): a slot that frees goes to the Party with the fewest in flight
        self.per_party = max(1, self.concurrency // 2)
        # and of one receiver's slots, at most half while another Party's deliveries wait for
        # it too: a receiver many Parties share (a webhook provider) was held whole by one
        # Party's endpoint there that never answers, and the others' deliveries to it waited
        # (2 of 40 sent in 80 s; audit, session 17). A receiver one Party has to itself is
        # all its own (halved, a Party's own receiver got half the throughput; review)
        self.per_party_host = max(1, self.per_host // 2)
        self.timeout = timeout
        # Deliveries are leased ahead, up to QUEUE_FACTOR times what a receiver may have in
        # flight, and wait in memory for a slot to that receiver. Their leases are renewed
        # while they wait and while their attempts run (RENEW_SECONDS): a row comes due again
        # only if its worker died or stalled; one whose lease lapsed meanwhile is dropped
        # unsent (Queues.start, Queues.renewed).
        self.queue_depth = self.per_host * QUEUE_FACTOR
        self.queued_at_most = self.concurrency * QUEUE_FACTOR  # every receiver's queues together
        if lease_seconds is None:
            lease_seconds = timeout + RECORDED_WITHIN_SECONDS + 2 * RENEW_SECONDS
        self.lease = timedelta(seconds=lease_seconds)
        self.rounds = StoreRounds(
            engine, schedule, self.lease, lock_wait_seconds, self._share, self._not_held
        )
        self.recorded_within = min(RECORDED_WITHIN_SECONDS, lease_seconds / 4)
        self.renew_after = min(RENEW_SECONDS, lease_seconds / 5)
        self.stats = Stats()
        self.failure_log = FailureLog()
        self.queues = Queues(self.per_host, self.per_party, self.per_party_host)
        # the Parties with deliveries queued or in flight, as the loop saw them before a lease
        # (_share runs on the lease's thread, and must not walk the loop's counters)
        self._waiting_parties: frozenset[str] = frozenset()
        self._outcomes: list[Outcome] = []
        self.addresses = Addresses()
        self._tasks: set[asyncio.Task[None]] = set()
        # of those, attempts that got no answer, held to their time limit: no connection, and
        # no slot of the worker's concurrency (`_until_time_limit`)
        self._held: set[asyncio.Task[None] | None] = set()
        # opened by the first delivery due (`_dispatch`), closed as `run` ends
        self._session: aiohttp.ClientSession | None = None
        self._running = False  # within `run`: deliveries may start
        self._stopping = False  # set once `stop` is: attempts in flight end, none start
        self._wake = asyncio.Event()

    def _not_held(self, due: Due) -> bool:
        """Whether a due delivery may be leased: none already held here."""
        return (due.watch_id, due.event_id) not in self.queues.held

    def _share(self, due: list[tuple[int, str, str]]) -> dict[int, int]:
        """How many of each due watch's deliveries to lease (`shares.lease_shares`), run on
        the lease's thread: the Parties waiting as the loop saw them before the lease."""
        return lease_shares(
            due, self.queues, self.queue_depth, self.queued_at_most, self._waiting_parties
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Match and deliver until `stop` is set. A store that fails (PostgreSQL stopped or
        restarting, an SQLite file locked or unreadable), or any other error, pauses the worker
        instead of ending it: it says so in the log, waits (PAUSE_SECONDS, doubling up to
        PAUSE_MAX_SECONDS) and carries on. Attempts in flight go on meanwhile, and the next
        round that succeeds records what came of them, a failure only on the lease it was
        made on (`Outcome.lease_end`). Cancelled with the round, they had reached the
        receiver already, and each was sent again when its lease ended (finding 47i 2: 15 of
        120 twice, the store locked 20 s). Only a shutdown ends them: the stop, once they
        have had their time; a cancel or KeyboardInterrupt at once (what the worker leased
        comes due again when the lease ends, so nothing is lost: a receiver may see an event
        twice, and tells by its webhook-id, as Standard Webhooks says)."""
        self._wake = asyncio.Event()
        self._stopping = False
        self.addresses.open()  # its futures this run's loop's
        self._running = True
        try:
            await self._rounds_until(stop)
            await self._wind_down()
        finally:
            self._running = False
            # a shutdown, or attempts past the stop's wait: ended before the session closes
            # under them (which would count as failed attempts)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            session, self._session = self._session, None
            try:
                if session is not None:
                    await session.close()
            finally:
                self.addresses.close()

    async def _rounds_until(self, stop: asyncio.Event) -> None:
        """`_rounds` until `stop`, paused after each failure (see `run`)."""
        pause = PAUSE_SECONDS
        away = False  # a probe found the store away during this run of failures
        while not stop.is_set():
            started = time.monotonic()
            busy = None
            try:
                await self._rounds(stop)
                return
            except StoreUpgraded:
                raise  # no pause mends it: a restart of the new version does
            except Exception as e:
                busy = store_busy(e)
                if busy is not None:
                    log.warning("the webhook worker pauses %.1f s: %s", pause, busy.reason)
                else:
                    log.exception("the webhook worker failed; it carries on in %.1f s", pause)
            if time.monotonic() - started > PAUSE_MAX_SECONDS:
                pause = PAUSE_SECONDS  # it had been working: a new failure, not the same one
                away = False
            away = await self._paused(stop, pause, away if busy is not None else None)
            pause = min(pause * 2, PAUSE_MAX_SECONDS)

    async def _paused(self, stop: asyncio.Event, pause: float, away: bool | None) -> bool:
        """Wait `pause`, or less once the store is back: a store failure (`away` not None)
        is probed every PROBE_SECONDS, and the pause ends when a probe finds it back after
        one (now or in an earlier pause of these failures) found it away. A store that
        answers the probe all along (a write lock held, a lock wait past its limit) keeps
        the whole pause: the probe says nothing of those. Whether the store was found away."""
        ends = time.monotonic() + pause
        while not stop.is_set():
            left = ends - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), left if away is None else min(left, PROBE_SECONDS)
                )
            if away is None or stop.is_set() or time.monotonic() >= ends:
                continue
            if not await asyncio.to_thread(self._store_answers):
                away = True
            elif away:
                return False  # back: the rounds again at once
        return bool(away)

    def _store_answers(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def _rounds(self, stop: asyncio.Event) -> None:
        """Rounds of matching, settling, leasing and dispatching, until `stop`."""
        last_match, idle_wait = 0.0, IDLE_SECONDS
        last_shed, shed = 0.0, 0
        while not stop.is_set():
            matched = 0
            if time.monotonic() - last_match >= idle_wait:
                matched = await asyncio.to_thread(catch_up, self.engine, 20)
                last_match = time.monotonic()
            if shed or time.monotonic() - last_shed >= SHED_LOOK_SECONDS:
                # what a server's deletion of a watch left of its backlog (PostgreSQL), a few
                # steps a round while there is some
                shed = await asyncio.to_thread(shed_deleted_watches, self.engine, SHED_STEPS)
                last_shed = time.monotonic()
            self._wake.clear()
            room = self.queued_at_most - len(self.queues)
            queued = self.queues.keys()
            self._waiting_parties = frozenset(self.queues.parties_waiting())
            # outcomes, what is queued checked again and the next lease in one transaction,
            # of at least a round of deliveries even when the queue is full: `_share` gives
            # nothing to a Party already holding its share, and a Party under it (one that
            # has just come) is leased its round. Each Party's share was fixed when it was
            # leased, so hostile Parties arriving one after another held a half, a third, a
            # quarter... of the queue, more than all of it, and a newcomer waited for their
            # attempts to time out one by one (review 30f: 12 s at a 2 s limit). The queue may
            # then hold more than `queued_at_most`, by what each Party's share allowed when it
            # came.
            a_round = min(
                self.concurrency, share_of(self.queued_at_most, len(self._waiting_parties))
            )
            leased_at = time.monotonic()
            ends = leased_at + self.lease.total_seconds()  # of what the round leases or renews
            renewing = self.queues.to_renew(ends - self.renew_after)
            # taken here, on the loop's thread, which alone appends to them (review 36c)
            outcomes = self._take_outcomes()
            leased, hidden, renewed, store_end = await asyncio.to_thread(
                self._settle_and_lease, max(room, a_round), queued, outcomes, renewing
            )
            if hidden:
                self.stats.hidden += len(hidden)
                self.queues.drop(set(hidden).__contains__)
            if renewing:
                self.queues.renewed(renewing, renewed, ends, store_end)
            # a 410 that came while the round leased: what it leased of that watch is not
            # sent (the next round records the 410, which deletes it); queued, the receiver
            # had more after saying it was gone (review 35g)
            gone = {o.watch_id for o in self._outcomes if o.status == "gone"}
            if gone:
                leased = [d for d in leased if d.watch_id not in gone]
            # queued here, on the loop's thread, which alone changes the queues
            for delivery in leased:
                self.queues.add(delivery, host_of(delivery.url), ends, store_end)
            if self._session is None and len(self.queues):
                # aiohttp, which loads the system's CA certificates as it is imported, is
                # imported off the loop before the first delivery opens the session: on it,
                # 0.18 s of CPU (1-2.6 s at load 15-20) held every request this server's
                # worker was answering, and the leases this round renews (audit 67c)
                await asyncio.to_thread(importlib.import_module, "aiohttp")
            self._dispatch()
            if stop.is_set():
                break
            busy = matched or leased or self._tasks or len(self.queues)
            idle_wait = IDLE_SECONDS if busy else min(idle_wait * 2, IDLE_MAX_SECONDS)
            if not leased or self._tasks:
                # until a round of attempts has ended (see _attempt), or a while
                waiting = asyncio.ensure_future(self._wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    (waiting, stopping),
                    timeout=idle_wait,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiting.cancel()
                stopping.cancel()

    async def _wind_down(self) -> None:
        """At the stop: what is in flight finishes (each is bounded by the timeout), nothing
        new starts (an attempt started now would meet the session closed under it), and the
        last outcomes are recorded and what is still queued released."""
        self._stopping = True
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout + 1)
        # only those still leased here: one whose lease lapsed while attempts ended may be
        # another worker's now, and released, it would be due under that worker (sent twice)
        unsent = self.queues.keys(leased_after=time.monotonic())
        outcomes = self._take_outcomes()  # on the loop's thread, as each round's
        await asyncio.to_thread(self._settle_and_release, unsent, outcomes)
        self.queues.drop(lambda _: True)

    def _take_outcomes(self) -> list[Outcome]:
        """The attempts' outcomes not yet recorded, each with the end its lease holds in the
        store now (renewed while its attempt ended too), taken on the loop's thread."""
        outcomes, self._outcomes = self._outcomes, []
        taken = [
            o
            if o.lease_end is not None  # put back by a round that failed
            else replace(o, lease_end=self.queues.ended_on((o.watch_id, o.event_id)))
            for o in outcomes
        ]
        self.queues.forget_ended()  # attempts that ended with no outcome (late, cancelled)
        return taken

    def _dispatch(self) -> None:
        """Start queued deliveries while slots are free (which, and for whom: `Queues.start`).
        Nothing new once the worker stops. The HTTP session is opened by the first delivery
        that starts (`posting.client_session`): most servers' workers never send one."""
        if not self._running or self._stopping:
            return
        # an attempt that calls this as it ends has given its slot back (`_attempt`): counted
        # as taken till its task was done, the slot of a worker at its concurrency waited
        # for the next round
        free = self.concurrency - len(self._tasks - self._held - {asyncio.current_task()})
        if free <= 0 or not len(self.queues):
            return
        if self._session is None:
            self._session = client_session(self.concurrency, self.timeout)
        session = self._session
        for delivery, host in self.queues.start(free, self._starts_by()):
            task = asyncio.create_task(self._attempt(session, delivery, host))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _settle_and_lease(
        self,
        room: int,
        waiting: list[tuple[int, int]],
        outcomes: list[Outcome],
        renewing: Mapping[tuple[int, int], datetime] | None = None,
    ) -> Settled:
        """Record the attempts made since the last round (`outcomes`, taken from `_outcomes`
        on the loop's thread, where attempts append to it), find which of the `waiting`
        deliveries are hidden now (and forget them in the store), renew the leases of
        `renewing` (held here: each with the end its lease holds) and lease up to `room` due
        deliveries (none already held here). Outcomes not recorded are put back for the next
        round."""
        renewing = renewing or {}
        if not outcomes and not room and not waiting and not renewing:
            return Settled([], [], [], datetime.now(UTC))
        try:
            settled, given_up = self.rounds.settle(outcomes, room, waiting, renewing)
        except BaseException:
            self._outcomes[:0] = outcomes  # not recorded: kept for the next round
            raise
        # once recorded: counted before, a failed round's outcomes, put back, were counted
        # again by the next; and a round run again after a deadlock counts once
        self.failure_log.add(outcomes)
        self.stats.given_up += given_up
        return settled

    def _settle_and_release(self, unsent: list[tuple[int, int]], outcomes: list[Outcome]) -> None:
        """The last round's `outcomes` recorded, and what is still queued here released, so
        that the next worker sends it now (killed instead, its lease ends on its own)."""
        try:
            self._settle_and_lease(0, [], outcomes)
        except Exception as e:
            # the store down at the stop: the worker's last word on those attempts (a round
            # counts its failures once recorded, and this one never will be; review 37a)
            failed = sum(o.status == "failed" for o in outcomes)
            log.warning(
                "the last %d webhook attempts (%d of them failed) were not recorded; their "
                "deliveries come due again when their leases end: %s",
                len(outcomes),
                failed,
                e,
            )
        if not unsent:
            return
        try:
            self.rounds.release(unsent)
        except Exception as e:  # nothing is lost: their leases end on their own
            log.warning("%d queued deliveries wait for their leases to end: %s", len(unsent), e)

    async def _attempt(
        self, session: aiohttp.ClientSession, delivery: Due, host: tuple[str, int]
    ) -> None:
        """One attempt (its slot to `host` already taken by _dispatch); the slot goes at once
        to the next delivery queued for that receiver, once it ends: when its answer came, or
        at its time limit (`_until_time_limit`)."""
        if self.queues.lease_ends(delivery) <= self._starts_by():
            # the loop stalled between its dispatch and now (other work on a busy machine):
            # sent now, it could end with no time left on its lease to record it (another
            # worker could lease it and send it again). Not sent, no attempt counted: it is
            # due again when its lease ends.
            self.queues.finished(delivery, host)
            self.stats.late += 1
        else:
            answered: list[int] = []  # the status, once it came
            started = time.monotonic()
            try:
                try:
                    async with asyncio.timeout(self.timeout):
                        status, error = await self._post(session, delivery, answered)
                except TimeoutError:
                    status, error = (answered[0], "") if answered else (None, self._no_answer)
                if status is None and not _local(delivery.url):
                    await self._until_time_limit(started)
            finally:
                self.queues.finished(delivery, host)
            self._outcome(delivery, status, error)
        self._dispatch()
        # a round of attempts ended: record them and lease more (the main loop)
        if len(self._outcomes) >= self.per_host or not (self._tasks - {asyncio.current_task()}):
            self._wake.set()

    async def _until_time_limit(self, started: float) -> None:
        """An attempt that got no answer (started at `started`) ends at its time limit, as
        one whose receiver stayed silent does, whatever failed: a refused connection, a failed
        TLS handshake, a name that did not resolve or resolved where servicetrail will not
        send. Its Party's words for all of them are one (`posting.shown_error`), but a
        refusal recorded at once and a silence at the limit told a closed port from a
        filtered one by when its watch showed the failure (`watch list`, the API's watch, the
        screen), and so did the pace of its later deliveries to that receiver, one limit each
        for a silence: a logged-in User's scan of every host and port the server reaches
        (finding 56c). So until then its outcome is not recorded, and it keeps its place in
        `Queues` (its Party's and its receiver's counts of attempts in flight, its lease
        renewed), and its delivery's next attempt and its failure come as a silence's would.
        It holds no connection, no store connection (the round records it later) and no slot
        of the worker's concurrency: the next delivery starts now, so a Party's dead URLs
        cost the worker less than its silent ones (a slot each for the limit), and slow only
        their own Party and receiver, as `Queues` bounds them (a Party at most half the
        worker, a receiver others wait for at most half theirs). An answer, any status, is
        recorded when it comes: it says the port is open, and says so itself.

        An `http://` receiver's failure is recorded when it comes, as before: such a URL goes
        to loopback alone, and only under SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK=1 (SPEC 6: for
        local receivers and tests), where a User's answered attempts already tell the
        server's open local ports from its closed ones; there, a local receiver not yet
        started was retried on SPEC's schedule after its refusal, not a time limit later."""
        left = started + self.timeout - time.monotonic()
        if left <= 0:
            return  # a silence: the limit has come
        task = asyncio.current_task()
        self._held.add(task)
        try:
            self._dispatch()  # its slot of the worker's to the next delivery, now
            await asyncio.sleep(left)
        finally:
            self._held.discard(task)

    def _starts_by(self) -> float:
        """An attempt starts only on a lease that ends after this: it leaves the attempt its
        time and its outcome the time to be recorded (RECORDED_WITHIN_SECONDS)."""
        return time.monotonic() + self.timeout + self.recorded_within

    def _outcome(self, delivery: Due, status: int | None, error: str) -> None:
        """What came of an attempt, counted and kept for the next round to record."""
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif status == 410:
            outcome = "gone"
            self._forget_watch(delivery.watch_id)
        else:
            outcome = "failed"
            error = error or f"answered {status}"
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if error:
            self.stats.count_error(error)
        shown = shown_error(status, error, self.timeout) if error else ""
        self._outcomes.append(
            Outcome(
                delivery.watch_id,
                delivery.event_id,
                delivery.attempts,
                outcome,
                shown,
                detail=error,
            )
        )

    def _forget_watch(self, watch_id: int) -> None:
        """Drop a watch's deliveries still queued here: its receiver said 410 Gone, and the
        round's outcomes (`record_outcomes`) disable its webhook and delete its outbox. Only
        attempts already in flight when the 410 came can still reach it."""
        self.queues.drop(lambda key: key[0] == watch_id)

    @property
    def _no_answer(self) -> str:
        return f"no answer in {seconds_text(self.timeout)}"

    async def _post(
        self, session: aiohttp.ClientSession, delivery: Due, answered: list[int] | None = None
    ) -> tuple[int | None, str]:
        """An attempt's status (None: none came) and error; `answered` is given the status as
        soon as it comes, for the caller whose time runs out while the body is read."""
        answered = [] if answered is None else answered
        return await post(session, delivery, self.addresses, self._no_answer, answered)


def _local(url: str) -> bool:
    """An http:// receiver the setting allows: loopback alone (`Deliverer._until_time_limit`)."""
    return urlsplit(url).scheme == "http" and loopback_allowed()  # its scheme as parse_url reads it
