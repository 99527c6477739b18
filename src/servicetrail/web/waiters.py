"""Requests waiting in the event loop for something to come free, per key (web.gate: a turn
in a sender's share; web.read_turns: a Party's turn to read). Each waits on a future of its
own, so that only its own key's waiters are woken: woken by every request's end, a Party's
waiting reads woke hundreds of times a second for nothing and took the interpreter from the
reads that ran (in the route's turns, before session 51). The loop is one thread: no lock."""

from __future__ import annotations

import asyncio
from collections import deque


class Waiters:
    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def count(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    def waiting(self) -> dict[str, int]:
        """For the tests and the operator."""
        return {key: len(queue) for key, queue in self._waiting.items()}

    async def wait(self, key: str, seconds: float) -> None:
        """Until woken (`wake`) or `seconds` have passed: the caller looks again either way."""
        waiter = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        queue.append(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            if waiter in queue:
                queue.remove(waiter)
            if not queue and self._waiting.get(key) is queue:
                del self._waiting[key]

    def wake(self, key: str, every: bool = False) -> None:
        """The longest waiting of the key's (what came free is one turn), or `every` one."""
        queue = self._waiting.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not every:
                    return
