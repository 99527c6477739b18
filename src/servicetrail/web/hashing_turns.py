"""Sign-ins' password checks, on threads of their own at a lower CPU priority, taken in turn
by whose they are (a Party's; every stranger's together: web.auth).

One Party's User signing in with its own accounts' right passwords, again and again, kept a
core hashing (argon2 holds one for a third of a second a check) and another Party's searches
took 3-10 times as long at p95 (session 61: 34 -> 349 ms); another Party's own sign-in waited
behind every check queued before it (1 s alone, 4-6 s during a flood; session 63g). A check
now waits for one turn of each other key at most, and runs niced, so that the searches'
threads win the core (BENCHMARKS, session 63g)."""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

# How much lower than the server's own: CFS then gives a search thread ten times the hashing
# thread's share of a core they contend for (weights 1024 and 110), so a sign-in under a full
# machine slows (a few seconds) rather than stalling, as 19 (a 70th of the core) would. At 5
# another Party's searches during a flood kept a p95 of 92-150 ms, at 10 of 67-80 (63g).
NICENESS = 10


def lower_this_threads_priority(by: int = NICENESS) -> None:
    """The calling thread (not the process) made `by` nicer, to 19 at most. Only on Linux,
    where a thread's native id is what setpriority takes; elsewhere it names a process."""
    if sys.platform != "linux":
        return
    me = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + by))
    except OSError:  # a sandbox that forbids it: the checks run as before
        pass


class HashingTurns:
    """`run(key, work)` runs `work` on one of `threads` threads of its own and returns what it
    returned (or raises what it raised). The checks waiting take turns by key (start-time fair
    queueing): a key's check is due one turn after its previous one, and no earlier than the
    turn under way, so a key with many checks waiting takes one turn in each round while
    another key's check waits, and a key that signed in much before gains nothing from it."""

    # past this many keys remembered, those whose next turn has come are forgotten: they would
    # be due at the turn under way anyway
    MAX_KEYS = 10_000

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._started = False
        self._ready = threading.Condition()
        self._due: list[tuple[int, int, Callable[[], object], Future[object]]] = []  # a heap
        self._next_turn: dict[str, int] = {}  # key -> the turn after its last check's
        self._turn = 0  # the turn of the check taken last
        self._order = itertools.count()  # of arrival, among checks due at the same turn

    def run(self, key: str, work: Callable[[], T]) -> T:
        done: Future[object] = Future()
        with self._ready:
            if not self._started:  # no threads in a process that signs no one in (the CLI's)
                self._started = True
                for _ in range(self._threads):
                    threading.Thread(
                        target=self._serve, name="sign-in hashing", daemon=True
                    ).start()
            turn = max(self._turn, self._next_turn.get(key, 0))
            if len(self._next_turn) >= self.MAX_KEYS:
                self._next_turn = {k: t for k, t in self._next_turn.items() if t > self._turn}
            self._next_turn[key] = turn + 1
            heapq.heappush(self._due, (turn, next(self._order), work, done))
            self._ready.notify()
        return done.result()  # type: ignore[return-value]

    def waiting(self) -> int:
        """Checks waiting for a thread (not those running)."""
        with self._ready:
            return len(self._due)

    def _serve(self) -> None:
        lower_this_threads_priority()
        while True:
            with self._ready:
                while not self._due:
                    self._ready.wait()
                self._turn, _, work, done = heapq.heappop(self._due)
            try:
                done.set_result(work())
            except BaseException as e:  # the sign-in's thread raises it
                done.set_exception(e)
