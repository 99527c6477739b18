"""A Party's requests take turns with other Parties' in the event loop, before anything of
theirs is looked up in the store.

While another Party reads, a Party runs CONTENDED_READS requests at once: its twelve clients
of light reads (a device's 1,000-record pages, the record page) ran six at once and took the
worker's CPU, and another Party's device search took 11-28 times as long at p95 (audit 27b).
That turn was taken in the route (web.fairness), after the request's token or session had
been looked up in the store (a round trip, on a thread): one Party's 12 connections of the
cheapest reads (the logs' checkpoints, records that do not exist) kept a dozen look-ups
running, and on PostgreSQL another Party's device searches took 7-10 times as long at p95
(audit 49d 2). web.gate knows a request's Party without the store, from its credential once
seen (state.SeenCredentials), so it takes the turn here first: the Party's flood waits on its
own turns, holding only its connections (each counts against its Party's share in web.gate,
so at most that many wait), and the others pass.

A turn is held until the answer starts: by then the request's look-ups, its query and its
page are done (a report's too: its answer starts once the whole report is in its spool).
What a stream or a report download sends after that is bounded by its own slots, not by the
Party's turns to read: a turn held through an event stream, open for hours, would leave the
Party one read fewer for each. Credentials not yet seen (after a restart, or made up) take
no turn here: they have their small share per address (web.gate), and each is seen after its
first look-up. The route took the same turn a second time, which only those could ever wait
for; it no longer does (session 51): one turn, in one place.
"""

from __future__ import annotations

import os
import time
from collections import Counter

from .waiters import Waiters

# Reads a Party may have running while another Party has read in the last CONTENDED_SECONDS:
# one fewer than there are cores (p95 47 -> 11 ms under audit 27b's attack; 20 ms at one a
# core), the rest waiting their turn up to TURN_WAIT_SECONDS, then 429; alone on the server a
# Party has all of its share.
CONTENDED_READS = max(1, (os.cpu_count() or 1) - 1)
CONTENDED_SECONDS = 1.0
TURN_WAIT_SECONDS = 1.0


class ReadTurns:
    """Requests running per share (a Party's, an auditor's), and when each share last started
    or ended one; the loop is one thread: no lock."""

    def __init__(
        self,
        at_once: int = CONTENDED_READS,
        quiet: float = CONTENDED_SECONDS,
        wait: float = TURN_WAIT_SECONDS,
    ) -> None:
        self.at_once, self.quiet, self.wait = at_once, quiet, wait
        self._running: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._waiting = Waiters()

    async def take(self, key: str) -> bool:
        """A turn for the share (True), waiting up to `wait` seconds while `at_once` of its
        requests run and another share reads (or read within `quiet` seconds); False: none
        came free within that."""
        deadline = time.monotonic() + self.wait
        while self._running[key] >= self.at_once and self._contended(key):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # woken when one of the share's turns ends; else looks again once contention may
            # have ended (the other share quiet for `quiet` seconds)
            await self._waiting.wait(key, min(left, self.quiet))
        self._running[key] += 1
        self._last[key] = time.monotonic()
        return True

    def give_back(self, key: str) -> None:
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]
        self._last[key] = time.monotonic()
        self._waiting.wake(key)  # one turn came free: one waiting request takes it

    def _contended(self, key: str) -> bool:
        """Whether another share is running a request, or started or ended one a moment ago."""
        since = time.monotonic() - self.quiet
        for other, at in list(self._last.items()):
            if other == key:
                continue
            if at >= since or self._running[other]:
                return True
            del self._last[other]  # long quiet: forgotten (they grew with every Party)
        return False

    def running(self) -> dict[str, int]:
        """For the tests and the operator."""
        return dict(self._running)
