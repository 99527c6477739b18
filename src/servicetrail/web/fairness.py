"""Bounds on what one Party may have in flight in a server process (issue 10, findings 1 and 9).

Each request of a Party that reads the trail holds a *request* slot while it runs. A search
that names no Device ID and no Request ID scans the trail, and generating a report reads a
whole period: both also hold a *heavy* slot, of which all Parties together have half the
connection pool, so heavy work never leaves the quick searches without a connection. A
report being sent holds a *download* slot until its last byte has gone or the client has.

Past a bound the request is answered with 429 and Retry-After, not queued: a queued request
would hold a thread and, in time, a connection, which is what the bounds are there to
prevent. One wait is allowed: a broad search waits up to HEAVY_WAIT_SECONDS for its Party's
heavy slot, holding its request slot and its thread (so at most `request - 1` wait per
Party; when all Parties' heavy work is at its total, the answer is at once). A Party's
analysts share that one slot, and the screen's first page is a broad search: two tabs
opened at once were refused (audit of the screen, session 18), though a broad search now
takes tens of milliseconds. While another Party reads, a Party's reads also take turns,
in the event loop before their credential is looked up (web.read_turns). The bounds are per
server process (`serve --workers N` allows N times each), and each can be set in the
environment.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.requests import Request

from .. import settings
from ..domain.search import Search


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much one Party may have in flight in one server process."""

    request: int
    heavy: int
    download: int
    # open event streams (a watch's Server-Sent Events): each holds a connection for as long
    # as its client stays, so one Party's many cannot take the server's
    stream: int = 4

    @classmethod
    def configured(cls) -> Bounds:
        chosen = settings.current()
        return cls(
            chosen.party_requests, chosen.party_heavy, chosen.party_downloads, chosen.party_streams
        )


# Seconds a client is told to wait: searches are over in milliseconds (heavy ones within the
# statement time limit); a download lasts as long as its client takes.
RETRY_AFTER = {"request": 1, "heavy": 2, "download": 10, "stream": 30}
HEAVY_WAIT_SECONDS = 1.0
MESSAGES = {
    # any API request takes this slot (a watch's creation too), not only a search (audit 67b)
    "request": "your Party already has as many requests being answered on this server as it may "
    "({n}): retry in {s} s",
    "turn": "other Parties are reading on this server, and your Party's reads take turns with "
    "theirs ({n} at once): retry in {s} s",
    "heavy": "your Party already has as many broad searches or reports running on this server as "
    "it may ({n}): name a Device ID or a Request ID to narrow the search, or retry in {s} s",
    "heavy_total": "the server is busy with other broad searches and reports: retry in {s} s",
    "download": "your Party already has as many report downloads open on this server as it may "
    "({n}): let one finish, or retry in {s} s",
    "stream": "your Party already has as many event streams open on this server as it may ({n}): "
    "close one, or retry in {s} s",
    "anonymous_rate": "the server is answering as many requests without a sign-in as it may "
    "({n} a second, from everyone together): retry in {s} s",
    "first_lookup": "the server is checking as many credentials it has not seen yet as it may "
    "({n} a second, from everyone together), and your network keeps its place in the queue: "
    "retry in {s} s",
    "in_flight": "as many of your requests are already in flight on this server as may be ({n}): "
    "retry in {s} s",
}


class Busy(RuntimeError):
    """A bound is reached; the request is refused without running."""

    def __init__(self, bound: str, limit: int, retry_after: int) -> None:
        super().__init__(MESSAGES[bound].format(n=limit, s=retry_after))
        self.bound = bound
        self.retry_after = retry_after

    def sentence(self) -> str:
        text = str(self)
        return text[:1].upper() + text[1:] + "."


def is_heavy(search: Search) -> bool:
    """A search that names a Device ID or a Request ID reads a few short index ranges; any
    other one may scan the trail for seconds."""
    return not (search.device_id or search.request_id)


class Slots:
    """Slots taken together, given back together (once, whoever calls release first)."""

    def __init__(self, owner: PartyLimits, party_id: str, kinds: tuple[str, ...]) -> None:
        self._owner, self._party_id, self._kinds = owner, party_id, kinds
        self._held = True

    def release(self) -> None:
        self._owner._give_back(self)


class PartyLimits:
    """The slots held now, per Party and in all; thread-safe (sync routes run on a thread pool)."""

    def __init__(
        self,
        bounds: Bounds | None = None,
        heavy_total: int = 8,
        heavy_wait: float = HEAVY_WAIT_SECONDS,
    ) -> None:
        self.bounds = bounds or Bounds.configured()
        self.heavy_total = max(1, heavy_total)
        self.heavy_wait = heavy_wait
        self._held: Counter[tuple[str, str]] = Counter()
        self._heavy_now = 0
        self._lock = threading.Lock()
        self._heavy_freed = threading.Condition(self._lock)

    def take(self, party_id: str, *kinds: str, wait: float = 0.0) -> Slots:
        """All of `kinds` for the Party, or Busy (naming the first bound reached) and none.
        `wait`: seconds to wait for the Party's heavy slot, holding its other slots meanwhile
        (no other bound is waited for, the server's total of heavy work among them)."""
        with self._lock:
            refused = self._refusal(party_id, kinds)
            if refused is not None and refused.bound == "heavy" and wait > 0:
                refused = self._wait_for_heavy(party_id, kinds, time.monotonic() + wait)
            if refused is not None:
                raise refused
            self._count(party_id, kinds, 1)
        return Slots(self, party_id, kinds)

    def _wait_for_heavy(
        self, party_id: str, kinds: tuple[str, ...], deadline: float
    ) -> Busy | None:
        """Under the lock: the Party's other slots held while its heavy slot is waited for, so
        that its waiting searches count against its bound of requests (and at most that many
        threads wait)."""
        others = tuple(kind for kind in kinds if kind != "heavy")
        self._count(party_id, others, 1)
        try:
            while (refused := self._refusal(party_id, ("heavy",))) is not None:
                left = deadline - time.monotonic()
                if refused.bound != "heavy" or left <= 0:
                    return refused
                self._heavy_freed.wait(left)
            return None
        finally:
            self._count(party_id, others, -1)

    def _count(self, party_id: str, kinds: tuple[str, ...], step: int) -> None:
        for kind in kinds:
            self._held[kind, party_id] += step
            if not self._held[kind, party_id]:
                del self._held[kind, party_id]
        if "heavy" in kinds:
            self._heavy_now += step

    def _refusal(self, party_id: str, kinds: tuple[str, ...]) -> Busy | None:
        for kind in kinds:
            limit = getattr(self.bounds, kind)
            if self._held[kind, party_id] >= limit:
                return Busy(kind, limit, RETRY_AFTER[kind])
        if "heavy" in kinds and self._heavy_now >= self.heavy_total:
            return Busy("heavy_total", self.heavy_total, RETRY_AFTER["heavy"])
        return None

    @contextmanager
    def holding(self, party_id: str, *kinds: str, wait: float = 0.0) -> Iterator[None]:
        slots = self.take(party_id, *kinds, wait=wait)
        try:
            yield
        finally:
            slots.release()

    @contextmanager
    def search(
        self, party_id: str, search: Search | None = None, broad: bool = False
    ) -> Iterator[None]:
        """The slots a search (or the look-up of one record, `search=None`) holds while it
        runs. `broad`: another read that may walk a whole index for seconds, which holds a
        heavy slot too. Its Party's turn to read was taken before, in web.gate (web.read_turns
        says why there alone)."""
        heavy = broad or (search is not None and is_heavy(search))
        with (
            self.holding(party_id, "request", "heavy", wait=self.heavy_wait)
            if heavy
            else self.holding(party_id, "request")
        ):
            yield

    def held(self, party_id: str | None = None) -> dict[str, int]:
        """What is held now: by one Party, or by all (for the operator and the tests)."""
        with self._lock:
            found: Counter[str] = Counter()
            for (kind, party), count in self._held.items():
                if party_id is None or party == party_id:
                    found[kind] += count
            return {kind: count for kind, count in found.items() if count}

    def _give_back(self, slots: Slots) -> None:
        with self._lock:
            if not slots._held:
                return
            slots._held = False
            self._count(slots._party_id, slots._kinds, -1)
            if "heavy" in slots._kinds:
                self._heavy_freed.notify_all()


def share_of(party_id: str | None, username: str) -> str:
    """Whose slots an account's reads take: its Party's, or for an auditor (of no Party) its
    own (no Party ID has a colon)."""
    return party_id if party_id is not None else f"auditor:{username}"


def limits_of(request: Request) -> PartyLimits:
    return request.app.state.limits
