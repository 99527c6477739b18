"""A delivery worker's deliveries in memory: those leased ahead and queued for a slot, those
in flight, and which to start next. No I/O and no clock of its own: the worker's loop calls
it, on the loop's thread alone (the lease's thread reads `held`, `queued_for` and
`queued_at`, which are kept as they change, never the queues themselves).

The fairness between Parties lives here (deliver.py says why each bound is what it is):
- at most `per_host` attempts in flight to one receiver (host and port), `per_party` to one
  Party's receivers together, and of a receiver's slots, `per_party_host` to one Party while
  another Party waits for that receiver too (a receiver a Party has to itself: all but one
  slot, kept for another Party's first delivery);
- a free slot goes to the Party with the fewest attempts in flight, then the fewest to that
  receiver, then the one served least lately, whatever receiver it waits for: a Party with
  nothing in flight has the next slot that frees (or one of the next, tied with others).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, KeysView, Mapping
from dataclasses import dataclass
from datetime import datetime

from ..store.outbox import Due

Host = tuple[str, int]  # a receiver: host and port
Key = tuple[int, int]  # a delivery: (watch id, event id)


@dataclass(slots=True)
class Lease:
    """A delivery's lease, while the delivery is held here (queued or in flight)."""

    # when it stops being ours (the worker's monotonic clock, from before its lease began):
    # one whose lease ends before its attempt could is not started
    ends: float
    # when it ends in the store, as the lease or its last renewal set it (None: it is not
    # renewed): a renewal extends only a lease the row still holds (store.outbox.renew)
    store_end: datetime | None = None
    # its renewal failed while its attempt was in flight: `store_end` is the end it had,
    # which its outcome is fenced by, and it is renewed no more
    lost: bool = False

    @property
    def renewing(self) -> datetime | None:
        """The end a renewal must find in the store: None when it is not renewed."""
        return None if self.lost else self.store_end


class Queues:
    """A queue for each Party at each receiver, oldest first, and the attempts in flight."""

    def __init__(self, per_host: int, per_party: int, per_party_host: int) -> None:
        self.per_host = per_host
        self.per_party = per_party
        self.per_party_host = per_party_host
        # (party, receiver) -> deliveries, oldest first
        self._queued: dict[tuple[str, Host], deque[Due]] = defaultdict(deque)
        # the lease of each delivery queued or in flight
        self._leases: dict[Key, Lease] = {}
        # of attempts ended and not yet recorded, the end their lease held in the store (a
        # failure is recorded only on a row that still holds it: store.outbox.record_outcomes).
        # Apart from `_leases`: once its attempt has ended, a delivery is no longer held here,
        # and a lease may take it again (its lease lapsed) before its outcome is recorded
        self._ended: dict[Key, datetime] = {}
        self._in_flight: Counter[Host] = Counter()
        self._party_in_flight: Counter[str] = Counter()
        self._party_host_in_flight: Counter[tuple[str, Host]] = Counter()
        # counted as they change, not from the queues: the lease's thread reads them while the
        # loop changes the queues; by receiver too, since each Party's queue to a receiver has
        # a receiver's room of its own (deliver.Deliverer._share)
        self._party_queued: Counter[str] = Counter()
        self._party_host_queued: Counter[tuple[str, Host]] = Counter()
        # when each Party last started an attempt to a receiver (a count, not a time)
        self._turns = itertools.count(1)
        self._last_turn: dict[tuple[str, Host], int] = {}

    def __len__(self) -> int:
        """Deliveries queued (not those in flight)."""
        return sum(len(q) for q in self._queued.values())

    def keys(self, leased_after: float = -math.inf) -> list[Key]:
        """The queued deliveries, as (watch id, event id); those whose lease ends after
        `leased_after` (monotonic clock)."""
        return [
            key
            for q in self._queued.values()
            for key in ((d.watch_id, d.event_id) for d in q)
            if self._ends_of(key) > leased_after
        ]

    def parties_waiting(self) -> set[str]:
        """The Parties with deliveries queued or in flight."""
        return {party for party, _ in self._queued} | {
            party for party, count in self._party_in_flight.items() if count
        }

    def queued_for(self, party: str) -> int:
        """Deliveries queued for `party` (read on the lease's thread)."""
        return self._party_queued[party]

    def queued_at(self, party: str, host: Host) -> int:
        """Deliveries queued for `party` to one receiver (read on the lease's thread)."""
        return self._party_host_queued[(party, host)]

    def add(
        self, delivery: Due, host: Host, lease_ends: float, store_end: datetime | None = None
    ) -> None:
        """A delivery just leased, queued last for its Party at its receiver; `store_end`:
        when its lease ends in the store (None: it is not renewed)."""
        key = (delivery.watch_id, delivery.event_id)
        self._leases[key] = Lease(lease_ends, store_end)
        self._queued[(delivery.party_id, host)].append(delivery)
        self._party_queued[delivery.party_id] += 1
        self._party_host_queued[(delivery.party_id, host)] += 1

    def start(self, free: int, starts_by: float) -> list[tuple[Due, Host]]:
        """Up to `free` deliveries taken from their queues and counted in flight, each slot
        to the Party the module's rule picks. A delivery whose lease ends at or before
        `starts_by` (now plus an attempt's time and the time to record it) is not started,
        and takes no slot: one whose lease is renewed (`add`'s `store_end`) waits in its queue
        for the next round, which renews it or finds it another worker's (`renewed`); one
        that is not is dropped unsent, due in the store again."""
        parties_at: dict[Host, set[str]] = defaultdict(set)
        for party, host in self._queued:
            parties_at[host].add(party)
        for (party, host), count in self._party_host_in_flight.items():
            if count:
                parties_at[host].add(party)
        # a receiver others wait for too is at most half any one's; one a Party has to itself
        # is its own but a slot, kept for another Party's first delivery: attempts in flight
        # are not taken back, and those of an endpoint that never answers held the receiver
        # whole until they timed out (audit 26b)
        host_cap = {
            host: self.per_party_host if len(parties) > 1 else max(1, self.per_host - 1)
            for host, parties in parties_at.items()
        }
        started: list[tuple[Due, Host]] = []
        # queues whose first delivery waits for its lease's renewal (those behind it wait
        # too: a queue is sent in the order it was leased)
        renewing: set[tuple[str, Host]] = set()
        while len(started) < free:
            ready = [
                (party, host)
                for party, host in self._queued
                if (party, host) not in renewing
                and self._in_flight[host] < self.per_host
                and self._party_in_flight[party] < self.per_party
                and self._party_host_in_flight[(party, host)] < host_cap[host]
            ]
            if not ready:
                break
            # taken receiver by receiver, a slot freed by a hostile Party's timed-out attempt
            # went back to the next hostile Party's receiver, and two of them held the worker
            # for good (audit 30c); taken in the order they were leased, a receiver's one slot
            # went back to a hostile Party's queue each time one of its attempts timed out
            party_here = min(
                ready,
                key=lambda ph: (
                    self._party_in_flight[ph[0]],
                    self._party_host_in_flight[ph],
                    self._last_turn.get(ph, 0),
                ),
            )
            party, host = party_here
            first = self._queued[party_here][0]
            lease = self._leases.get((first.watch_id, first.event_id))
            if lease is not None and lease.renewing is not None and lease.ends <= starts_by:
                # its renewal is late, a round held up by a busy store (SQLite's write lock
                # behind an ingest's batch): dropped, the worker's whole queue went unsent
                # after a pause of seconds, and the round under way renewed the rows of
                # deliveries nobody held any more, for a lease more (audit 47i)
                renewing.add(party_here)
                continue
            delivery = self._queued[party_here].popleft()
            if not self._queued[party_here]:
                del self._queued[party_here]
            self._unqueued(delivery, host)
            key = (delivery.watch_id, delivery.event_id)
            if self._ends_of(key) <= starts_by:
                # sent on a lease that had ended, it went out twice: it was due again in the
                # store, and another worker's (review 31a: 11 attempts after their lease)
                self._let_go(key)
                continue
            self._in_flight[host] += 1
            self._party_in_flight[party] += 1
            self._party_host_in_flight[party_here] += 1
            self._last_turn[party_here] = next(self._turns)  # once it is in flight
            started.append((delivery, host))
        return started

    def finished(self, delivery: Due, host: Host) -> None:
        """An attempt `start` gave out has ended, whatever came of it: its slot is free."""
        self._in_flight[host] -= 1
        if not self._in_flight[host]:
            del self._in_flight[host]
        self._party_in_flight[delivery.party_id] -= 1
        party_here = (delivery.party_id, host)
        self._party_host_in_flight[party_here] -= 1
        if not self._party_host_in_flight[party_here]:
            del self._party_host_in_flight[party_here]
            self._forget_turn_when_idle(party_here)
        key = (delivery.watch_id, delivery.event_id)
        lease = self._leases.get(key)
        if lease is not None and lease.store_end is not None:
            self._ended[key] = lease.store_end
        self._let_go(key)

    def ended_on(self, key: Key) -> datetime | None:
        """The end the lease of an attempt that ended (`finished`) held in the store, taken
        when its outcome is: None when not known."""
        return self._ended.pop(key, None)

    def forget_ended(self) -> None:
        """Forget the ends of attempts that ended with no outcome to record."""
        self._ended.clear()

    def lease_ends(self, delivery: Due) -> float:
        """When the lease of a delivery `start` gave out ends (monotonic clock)."""
        return self._ends_of((delivery.watch_id, delivery.event_id))

    @property
    def held(self) -> KeysView[Key]:
        """The deliveries leased here, queued or in flight: the next lease leaves them be."""
        return self._leases.keys()

    def _ends_of(self, key: Key) -> float:
        lease = self._leases.get(key)
        return math.inf if lease is None else lease.ends

    def drop(self, dropped: Callable[[Key], bool]) -> None:
        """Take the queued deliveries that `dropped` picks out of their queues, unsent."""
        for party_here, queued in list(self._queued.items()):
            kept: deque[Due] = deque()
            for delivery in queued:
                key = (delivery.watch_id, delivery.event_id)
                if dropped(key):
                    self._let_go(key)
                    self._unqueued(delivery, party_here[1])
                else:
                    kept.append(delivery)
            if kept:
                self._queued[party_here] = kept
            else:
                del self._queued[party_here]

    def to_renew(self, ending_before: float) -> dict[Key, datetime]:
        """The deliveries held here, queued or in flight, whose lease ends before
        `ending_before` (monotonic clock), each with the end its lease holds in the store."""
        return {
            key: end
            for key, lease in self._leases.items()
            if lease.ends < ending_before and (end := lease.renewing) is not None
        }

    def renewed(
        self,
        asked: Mapping[Key, datetime],
        renewed: Iterable[Key],
        lease_ends: float,
        store_end: datetime,
    ) -> None:
        """A round asked to renew the leases `asked` (`to_renew`) and renewed `renewed`,
        until `store_end` in the store and, here, `lease_ends`. A queued one not renewed is no
        longer ours (its row was deleted, or another worker leased it after its lease
        lapsed): dropped unsent. One in flight goes on: it started with its attempt's time
        and the time to record it left on its lease. One that finished meanwhile is left."""
        done = set(renewed)
        lost: set[Key] = set()
        for key, end in asked.items():
            lease = self._leases.get(key)
            if lease is None or lease.renewing != end:
                if key in done and self._ended.get(key) == end:
                    # its attempt ended while the round renewed it: the row holds the new end
                    self._ended[key] = store_end
                continue
            if key in done:
                lease.ends, lease.store_end = lease_ends, store_end
            else:
                # asked no more: in flight, it is not ours past its attempt
                lease.lost = True
                lost.add(key)
        if lost:
            self.drop(lost.__contains__)

    def _let_go(self, key: Key) -> None:
        """A delivery no longer held here (finished, dropped or not started)."""
        self._leases.pop(key, None)

    def _unqueued(self, delivery: Due, host: Host) -> None:
        """A delivery out of its queue (started, or dropped): counted so."""
        self._party_queued[delivery.party_id] -= 1
        party_here = (delivery.party_id, host)
        self._party_host_queued[party_here] -= 1
        if not self._party_host_queued[party_here]:
            del self._party_host_queued[party_here]
            self._forget_turn_when_idle(party_here)

    def _forget_turn_when_idle(self, party_here: tuple[str, Host]) -> None:
        """A Party with nothing queued or in flight at a receiver has its turn forgotten
        (kept, they grew with every receiver a Party's watches ever named)."""
        if not self._party_host_queued[party_here] and not self._party_host_in_flight[party_here]:
            self._last_turn.pop(party_here, None)
