"""The first look-ups of credentials not yet seen, from networks that have sent no made-up
ones: one budget a second for all of them, taken in turn by network, each in its place.

web.suspects sends an address's credentials not yet seen to the budget of what carries none
once it sent one the store did not know; a network is remembered once SPREAD of its parts did,
and its other addresses wait here in its turn, each as a member with a place of its own within
it (web.gate: a Party among them keeps its place, audit 52c 1; each its own network, a /48's
new /64s took the whole budget). But a network that has sent none is fresh: a botnet
across many /24s had 4 free look-ups a minute in each, and made-up tokens from a new address
of a new /24 on each request were all looked up (bench/attack.py scattered: 12,092 answered
401 in 20 s on SQLite, 600 a second).

A plain cap on those look-ups would refuse every Party's first request after a restart while
the flood fills it (session 17). So they are taken in turn: a network (an IPv4 /24, an IPv6
/48) waits in its place, and a network that was refused keeps its place for PLACE_SECONDS,
so a Party asking again after its Retry-After is ahead of every network that first asked after
it (with no place kept, a Party amid 100 connections of such a flood was refused 15-47 times
in a row, each try behind the flood's newest: tests/web/test_gate.py). It waits at most for
the networks that asked before it, each of which is served once and then
goes to the back (or, made up, is remembered by web.suspects and draws on the budget of what
carries none). A valid credential needs one look-up: it is then seen (state.SeenCredentials),
and its network vouched for (web.gate), whose credentials not yet seen take no place here.

A remembered network's turn also takes one of its own budget, HELD_RATE a second: its turns
alone, when no fresh network waited, took the whole budget, and a /48's new /64s were looked
up 50 times a second beside its used ones' share of the budget of what carries none (finding
52g 1). Spent, it waits out of the queue and comes back in its place, so the networks behind
it are not held up. A Party's address inside it waits behind the network's addresses that
asked before it and keep asking (each served once, then held by its own mark), HELD_RATE a
second: nothing tells them apart before the look-up.

A request whose wait ran out while a look-up of its network's (of its member's, in a
remembered network) was under way waits for that look-up's answer instead, up to LOOKUP_WAIT:
found, it goes with it (let_through); not found, it is refused then. Refused at its own
timer, a browser's other requests after a restart were answered 429 while its first, served,
was still being looked up on a loaded machine (CI, session 57: [200, 429, 429]); the Party
asked again for nothing.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter, OrderedDict, deque
from itertools import count
from typing import TypeVar

from .token_bucket import TokenBucket

V = TypeVar("V")

# first look-ups a second, all fresh networks together, and as many at once after a quiet spell
# (a restart: every Party's first request is one; each network of Parties once, then vouched)
FIRST_LOOKUP_RATE = 50
FIRST_LOOKUP_BURST = 100
# how long a refused network keeps its place: a client told to retry in 1 s, or a person
# reloading the page
PLACE_SECONDS = 30.0
MOST_PLACES = 100_000
# first look-ups a second of one remembered network (web.suspects), its addresses together,
# within the budget of all: one turn a round gave it the whole budget when no one else waited,
# and a /48's new /64s were looked up 50 times a second beside its own addresses' 50 on the
# budget of what carries none (finding 52g 1). Its Parties' addresses each need one (then
# vouched for, web.gate): a site's analysts after a restart, a few a second
HELD_RATE = 5
HELD_BURST = 5
# how long past its own wait a request waits for the answer of its network's look-up under
# way: one indexed statement, seconds at the very worst; past it, refused as before
LOOKUP_WAIT = 5.0


class FirstLookups:
    """The loop is one thread: no lock."""

    def __init__(
        self,
        rate: float = FIRST_LOOKUP_RATE,
        burst: float = FIRST_LOOKUP_BURST,
        place_seconds: float = PLACE_SECONDS,
        held_rate: float = HELD_RATE,
        held_burst: float = HELD_BURST,
    ) -> None:
        self._bucket = TokenBucket(rate, burst)
        self._held_shape = (held_rate, held_burst)
        # remembered network -> its own budget, the least lately used forgotten first (a
        # full one is as good as none)
        self._held: OrderedDict[str, TokenBucket] = OrderedDict()
        self._place_seconds = place_seconds
        self._order = count()
        # network -> its place, while a request of it waits
        self._places: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[str | None, asyncio.Future[bool]]]] = {}
        # within a network, a member (an address) -> its place, while a request of it waits;
        # refused ones keep theirs as networks do
        self._member_places: dict[str, int] = {}
        self._member_waiting: dict[str, int] = {}
        self._member_kept: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._queue: list[tuple[int, str]] = []  # (place, network); stale entries skipped
        # network -> (its place, until when it keeps it), refused ones, oldest first
        self._kept: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        # (network, member) -> its look-ups under way, and its requests out of time that wait
        # for their answer
        self._looking: Counter[tuple[str, str | None]] = Counter()
        self._overdue: dict[tuple[str, str | None], list[asyncio.Future[bool]]] = {}

    async def take(self, network: str, wait: float, member: str | None = None) -> bool:
        """Whether the network's request may be looked up, waiting up to `wait` seconds for
        its turn; False: refused, and the network keeps its place. Of a network's requests, a
        member's (an address's, web.gate) go in the member's place, which it keeps as a network
        does; the others in the order they came. A member is given for a remembered network's
        (web.suspects): those draw on the network's own budget too (HELD_RATE). Taken, its
        look-up is under way until `looked_up` is told, once."""
        now = time.monotonic()
        if not self._queue and network not in self._waiting and self._both(network, member, now):
            self._looking[network, member] += 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if network not in self._waiting:
            place = self._place_of(network, now)
            self._places[network] = place
            self._waiting[network] = deque()
            heapq.heappush(self._queue, (place, network))
        self._waiting[network].append((member, waiter))
        if member is not None:
            if member not in self._member_places:
                self._member_places[member] = _place_of(self._member_kept, member, now, self._order)
            self._member_waiting[member] = self._member_waiting.get(member, 0) + 1
        timeout = loop.call_later(wait, self._out_of_time, network, member, waiter)
        self._schedule(0)
        taken = False
        try:
            taken = await waiter  # counted as under way when it was let go (`_go`)
            return taken
        finally:
            timeout.cancel()
            if not taken and waiter.done() and not waiter.cancelled() and waiter.result():
                self.looked_up(network, member)  # let go, but its request left before it ran
            queue = self._waiting.get(network)
            if queue is not None and (member, waiter) in queue:
                queue.remove((member, waiter))
                self._member_done(member, served=False)
                if not queue:  # refused: it keeps its place for when it asks again
                    del self._waiting[network]
                    self._keep(network, self._places.pop(network), time.monotonic())

    def let_through(self, network: str, member: str | None = None) -> None:
        """A credential of the network's was found: its requests waiting go now, without
        taking the budget (a browser's six at once after a restart, each a turn of a round
        behind the flood's networks, would wait out their second; its network is vouched for
        from now on, web.gate). Given a member, only the member's: its network is not vouched
        for by it (the network's other members may be the attack that had it remembered)."""
        queue = self._waiting.get(network)
        if queue is None:
            return
        going = [entry for entry in queue if member is None or entry[0] == member]
        for entry in going:
            queue.remove(entry)
            self._member_done(entry[0], served=True)
            if not entry[1].done():
                self._go(network, *entry)
        if not queue:
            del self._waiting[network], self._places[network]

    def _go(self, network: str, member: str | None, waiter: asyncio.Future[bool]) -> None:
        """A waiting request let go: its look-up is under way from now, not from when its
        request runs again. Counted then, a wait that ran out in between (a loaded loop runs
        the turn's timer and the waits' in one pass) found none under way and refused the
        network's other requests, which were to go with its answer: a browser's three,
        [200, 429, 429] (tests/web/test_gate.py at CI, sessions 57 and 60)."""
        self._looking[network, member] += 1
        waiter.set_result(True)

    def looked_up(self, network: str, member: str | None = None) -> None:
        """A look-up `take` allowed has its answer (told after let_through, if found): the
        requests that ran out of time waiting for it are refused, once none of its
        network's (member's) is under way."""
        key = (network, member)
        self._looking[key] -= 1
        if self._looking[key] > 0:
            return
        del self._looking[key]
        for waiter in self._overdue.pop(key, ()):
            _refuse(waiter)

    def _out_of_time(self, network: str, member: str | None, waiter: asyncio.Future[bool]) -> None:
        """A request's wait ran out: refused, unless a look-up of its network's (member's) is
        under way, whose answer it then waits for (up to LOOKUP_WAIT more)."""
        key = (network, member)
        if self._looking.get(key, 0) > 0 and not waiter.done():
            # those gone meanwhile dropped: look-ups that kept overlapping would keep them all
            overdue = [w for w in self._overdue.get(key, ()) if not w.done()]
            self._overdue[key] = [*overdue, waiter]
            asyncio.get_running_loop().call_later(LOOKUP_WAIT, _refuse, waiter)
            return
        _refuse(waiter)

    def _both(self, network: str, member: str | None, now: float) -> bool:
        """A look-up taken from the budget, and for a member from its network's too; else
        none taken."""
        own = self._own(network) if member is not None else None
        if own is not None and own.take(now) > 0:
            return False
        if self._bucket.take(now) == 0:
            return True
        if own is not None:
            own.give_back()
        return False

    def _own(self, network: str) -> TokenBucket:
        own = self._held.pop(network, None) or TokenBucket(*self._held_shape)
        _last_set(self._held, network, own)
        return own

    def _rest(self, network: str, place: int) -> None:
        """A remembered network whose own budget was spent is back in the queue, in its
        place, once it has one again (meanwhile the other networks take their turns)."""
        if self._places.get(network) == place:
            heapq.heappush(self._queue, (place, network))
            self._schedule(0)

    def waiting(self) -> dict[str, int]:
        """For the tests and the operator."""
        return {network: len(queue) for network, queue in self._waiting.items()}

    def _place_of(self, network: str, now: float) -> int:
        return _place_of(self._kept, network, now, self._order)

    def _keep(self, network: str, place: int, now: float) -> None:
        _keep(self._kept, network, place, now + self._place_seconds)

    def _member_done(self, member: str | None, served: bool) -> None:
        """One of the member's requests left the queue: served, the member's next goes to the
        back; refused, the last keeps its place."""
        if member is None:
            return
        self._member_waiting[member] -= 1
        if self._member_waiting[member]:
            if served:
                self._member_places[member] = next(self._order)
            return
        del self._member_waiting[member]
        place = self._member_places.pop(member)
        if not served:
            _keep(self._member_kept, member, place, time.monotonic() + self._place_seconds)

    def _first_of(
        self, queue: deque[tuple[str | None, asyncio.Future[bool]]]
    ) -> tuple[str | None, asyncio.Future[bool]] | None:
        """The network's request to serve: its member's place first, else the order it came
        (one whose wait ran out, or whose client left, in this instant is not served: its
        request takes itself out when it runs)."""
        ready = [(n, entry) for n, entry in enumerate(queue) if not entry[1].done()]
        if not ready:
            return None

        def place(item: tuple[int, tuple[str | None, asyncio.Future[bool]]]) -> tuple[int, int]:
            n, (member, _) = item
            return (-1 if member is None else self._member_places[member], n)

        return min(ready, key=place)[1]

    def _schedule(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._serve)

    def _serve(self) -> None:
        """The budget's look-ups to the waiting networks, first place first; each network one
        a turn, then to the back of the queue if more of its requests wait."""
        self._timer = None
        while self._queue:
            place, network = self._queue[0]
            if self._places.get(network) != place:
                heapq.heappop(self._queue)  # served or refused since
                continue
            queue = self._waiting[network]
            ready = self._first_of(queue)
            if ready is None:
                heapq.heappop(self._queue)
                for member, _ in self._waiting.pop(network):
                    self._member_done(member, served=False)
                self._keep(network, self._places.pop(network), time.monotonic())
                continue
            now = time.monotonic()
            own = self._own(network) if ready[0] is not None else None
            if own is not None and (rest := own.take(now)) > 0:
                heapq.heappop(self._queue)
                asyncio.get_running_loop().call_later(rest, self._rest, network, place)
                continue
            wait = self._bucket.take(now)
            if wait > 0:
                if own is not None:
                    own.give_back()
                self._schedule(wait)
                return
            heapq.heappop(self._queue)
            queue.remove(ready)
            self._member_done(ready[0], served=True)
            self._go(network, *ready)
            if queue:
                self._places[network] = next(self._order)
                heapq.heappush(self._queue, (self._places[network], network))
            else:
                del self._waiting[network], self._places[network]


def _place_of(
    kept: OrderedDict[str, tuple[int, float]], key: str, now: float, order: count[int]
) -> int:
    """The place the key kept, else a new one at the back."""
    while kept:  # forget the places of those that did not come back
        oldest, (_, until) = next(iter(kept.items()))
        if until > now:
            break
        del kept[oldest]
    place = kept.pop(key, None)
    return place[0] if place is not None else next(order)


def _keep(kept: OrderedDict[str, tuple[int, float]], key: str, place: int, until: float) -> None:
    _last_set(kept, key, (place, until))


def _last_set(entries: OrderedDict[str, V], key: str, value: V) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > MOST_PLACES:
        entries.popitem(last=False)


def _refuse(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
