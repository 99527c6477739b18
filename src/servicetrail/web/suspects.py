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

An address is a /64 for IPv6, and a host is often given a /48 (a site) or more: each of its
65,536 /64s had its first 4 look-ups free, a fresh /64 for every few made-up tokens (audit
50a 1). So a network is remembered too once SPREAD of its parts were, within the same
SUSPECT_SECONDS: an IPv6 /48 once 4 of its /64s sent junk, a /32 once 4 of its /48s were
remembered, an IPv4 /24 once 4 of its addresses did. A whole /32 then has 64 look-ups a
minute before it is remembered, and after it one turn a round of the first look-ups for its
new addresses, as one fresh network has, and at most HELD_RATE a second of them
(web.first_lookups: with no one else waiting, one turn a round was the whole budget, finding
52g 1); a Party elsewhere is not held back. An address held only by its
network's mark (not its own, and not vouched for) is not sent to that budget: a Party inside
the network whose address had not yet vouched for itself (after a restart) was refused again
and again while the attack went on (audit 52c 1). web.gate sends its credentials not yet seen
to the first look-ups instead (web.first_lookups): in the turn of the widest network remembered
that holds it, one turn a round for the whole network, each address keeping its place within.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from functools import lru_cache
from time import monotonic
from typing import TypeVar

V = TypeVar("V")
SUSPECT_SECONDS = 60.0
MAX_SUSPECTS = 100_000  # bounded: the least recently marked forgotten first
VOUCHED_SECONDS = 3600.0
SPREAD = 4  # parts of a network remembered before the network is
# a part's prefix length -> its network's, per IP version (the last has none)
NETWORK_OF = {(4, 32): 24, (6, 64): 48, (6, 48): 32}


class Suspects:
    """address or network -> when it (or, for a network, one of its parts) last presented an
    unknown credential; the loop is one thread."""

    def __init__(
        self, seconds: float = SUSPECT_SECONDS, most: int = MAX_SUSPECTS, spread: int = SPREAD
    ) -> None:
        self.seconds, self.most, self.spread = seconds, most, spread
        self._marked: OrderedDict[str, float] = OrderedDict()
        # network not yet remembered -> its parts that were, and when
        self._parts: OrderedDict[str, dict[str, float]] = OrderedDict()
        # address, and its network, -> when a credential the store knew last came from it
        self._vouched: OrderedDict[str, float] = OrderedDict()

    def mark(self, address: str) -> None:
        now = monotonic()
        _last_set(self._marked, address, now, self.most)
        network = network_of(address)
        if network is None:
            return
        if self._held(network, now):
            self.mark(network)  # an attack that goes on keeps its network remembered
            return
        parts = self._parts.pop(network, {})
        parts = {part: at for part, at in parts.items() if at >= now - self.seconds}
        parts[address] = now
        if len(parts) >= self.spread:
            self.mark(network)
        else:
            _last_set(self._parts, network, parts, self.most)

    def vouch(self, address: str) -> None:
        now = monotonic()
        _last_set(self._vouched, address, now, self.most)
        network = network_of(address)
        if network is not None:
            _last_set(self._vouched, network, now, self.most)

    def vouched(self, key: str) -> bool:
        """Whether a credential the store knew came lately from the address or network."""
        at = self._vouched.get(key)
        return at is not None and at >= monotonic() - VOUCHED_SECONDS

    def marked(self, address: str) -> bool:
        """Whether the address itself is remembered, not only a network it is in."""
        return self._held(address, monotonic())

    def spotted(self, network: str) -> bool:
        """Whether the network, or one of its parts, lately presented an unknown credential
        (fewer than SPREAD of them, it is not yet remembered)."""
        now = monotonic()
        parts = self._parts.get(network, {})
        return self._held(network, now) or any(at >= now - self.seconds for at in parts.values())

    def holder(self, address: str) -> str | None:
        """The widest remembered network the address is in, unless it is vouched for: whose
        turn its first look-ups wait for (web.gate), all the network's parts in one."""
        if self.vouched(address):
            return None
        now, widest = monotonic(), None
        key = network_of(address)
        while key is not None:
            if self._held(key, now):
                widest = key
            key = network_of(key)
        return widest

    def _held(self, key: str, now: float) -> bool:
        at = self._marked.get(key)
        if at is None:
            return False
        if at < now - self.seconds:
            del self._marked[key]
            return False
        return True


def _last_set(entries: OrderedDict[str, V], key: str, value: V, most: int) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > most:
        entries.popitem(last=False)


@lru_cache(maxsize=4096)
def network_of(key: str) -> str | None:
    """The network an address (web.client_address.client_key) or a network is remembered in
    once SPREAD of its parts are; None past the widest, or for what is not an address."""
    try:
        network = ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None
    wider = NETWORK_OF.get((network.version, network.prefixlen))
    return None if wider is None else str(network.supernet(new_prefix=wider))
