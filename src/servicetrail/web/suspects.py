"""Client addresses that lately presented a credential the store did not know.

A credential web.gate has not seen is looked up in the store, and has a share of requests in
flight per address (4), not drawn on the budget a second of what carries none: after a
restart every Party's first request is one. But made-up tokens from 40 addresses, each
within its share, had 1,000 look-ups a second answered 401, and another Party's device
searches took 65 times as long at p95 on PostgreSQL (session 50; bench/attack.py forged).
So an address whose credential the store did not know is remembered for SUSPECT_SECONDS, and
its requests with credentials not yet seen draw on that budget of all addresses together,
like a stranger's: a flood of made-up tokens costs the Parties what a flood of sign-in pages
does, and a Party's own first request, from an address that sent no junk, still goes first.
"""

from __future__ import annotations

from time import monotonic
from collections import OrderedDict

SUSPECT_SECONDS = 60.0
MAX_SUSPECTS = 100_000  # bounded: the least recently marked forgotten first


class Suspects:
    """address -> when it last presented an unknown credential; the loop is one thread."""

    def __init__(self, seconds: float = SUSPECT_SECONDS, most: int = MAX_SUSPECTS) -> None:
        self.seconds, self.most = seconds, most
        self._marked: OrderedDict[str, float] = OrderedDict()

    def mark(self, address: str) -> None:
        self._marked[address] = monotonic()
        self._marked.move_to_end(address)
        while len(self._marked) > self.most:
            self._marked.popitem(last=False)

    def holds(self, address: str) -> bool:
        at = self._marked.get(address)
        if at is None:
            return False
        if at < monotonic() - self.seconds:
            del self._marked[address]
            return False
        return True
