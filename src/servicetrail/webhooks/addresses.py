"""The delivery worker's resolver: a receiver's name resolved and checked (webhooks.outbound)
before every connection, the answer reused for RESOLVE_SECONDS, on threads of its own."""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

from .outbound import IPAddress, Target, resolve

# Names are resolved on threads of their own (getaddrinfo blocks), never on the loop's
# default pool, which the matcher and the leases use: a Party's name whose DNS never answers
# took every thread of that pool, and matching and leasing stopped for all. A name is resolved
# once for a Party however many of its attempts wait for it, and a Party's names hold at most
# PARTY_THREADS threads, of enough for many Parties at once: at half of eight, two hostile
# Parties' hanging names took them all (audit 51d). A thread waiting on a name holds no more
# than its stack, and is started only when one is wanted. Another Party's attempts to the same
# name do not wait on that resolution: it waits at the first Party's gate (audit 51d).
PARTY_THREADS = 4
RESOLVER_THREADS = 16 * PARTY_THREADS
RESOLVE_SECONDS = 5.0  # a checked address is reused this long (then resolved and checked again)
_MOST_KEPT = 10_000  # answers kept at once: more, and they are all forgotten


class Addresses:
    """Checked addresses by (scheme, host, port), for one run of the worker's loop (`opened`)."""

    def __init__(self) -> None:
        self._resolved: dict[tuple[str, str, int], tuple[float, IPAddress]] = {}
        self._resolving: dict[tuple[str, str, int, str], asyncio.Future[IPAddress]] = {}
        self._party_resolving: dict[str, asyncio.Semaphore] = {}
        self._resolver: ThreadPoolExecutor | None = None

    def open(self) -> None:
        """A run's threads, and its loop's futures and gates afresh."""
        self._resolving, self._party_resolving = {}, {}
        self._resolver = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="resolve")

    def close(self) -> None:
        """A resolution that never ends is left to its thread, which holds nothing."""
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)

    async def of(self, target: Target, party: str) -> IPAddress:
        """`target`'s checked address, resolved for `party` unless a recent answer stands."""
        # the scheme too: an answer checked for https (a public address) was reused for an
        # http:// URL to the same host and port, which may go to loopback alone (audit 51d)
        key = (target.scheme, target.host, target.port)
        cached = self._resolved.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        asked = (*key, party)
        pending = self._resolving.get(asked)
        if pending is None:
            pending = asyncio.ensure_future(self._resolve(target, party))
            self._resolving[asked] = pending
            pending.add_done_callback(functools.partial(self._resolved_one, asked))
        # shielded: an attempt that times out leaves the resolution to the others waiting
        return await asyncio.shield(pending)

    def _resolved_one(
        self, asked: tuple[str, str, int, str], done: asyncio.Future[IPAddress]
    ) -> None:
        self._resolving.pop(asked, None)
        if not done.cancelled():
            done.exception()  # seen here, when every attempt waiting for it has timed out

    async def _resolve(self, target: Target, party: str) -> IPAddress:
        gate = self._party_resolving.setdefault(party, asyncio.Semaphore(PARTY_THREADS))
        async with gate:
            loop = asyncio.get_running_loop()
            address = await loop.run_in_executor(self._resolver, resolve, target)
        if len(self._resolved) > _MOST_KEPT:
            self._resolved.clear()
        key = (target.scheme, target.host, target.port)
        self._resolved[key] = (time.monotonic() + RESOLVE_SECONDS, address)
        return address
