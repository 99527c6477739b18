"""Every request takes its turn in the event loop, before it waits for a thread.

The routes run on a shared pool of threads, and the bounds of web.fairness are taken inside
them: a Party's request waited for a thread before its bound was checked. One Party's 1,000
connections queued 1,000 requests ahead of everyone's, each answered 429 only once its turn
came (others waited 0.5 s), and the reads that take no bound (the access log, the logs, the
watch list, some pages) let one Party hold every thread (others waited 5 s; audit of
stalled clients, session 17). Here, in the loop, a request counts against its sender's
share of requests in flight; past it, it waits up to a second for a turn (holding nothing but
the connection, and never a thread), then is answered 429.

Whose share: a Party's, for a credential (a token, a session) this process has seen resolve
to it (its bounds of web.fairness together: that many may run and stream at once); else the
client's address (a /64 for IPv6), with a small share for credentials not yet seen (each is
looked up in the store: a flood of made-up tokens took threads), and a larger one for what
carries none (the sign-in page) and for the style sheet and script. This decides only whose
turn it is: who may see what is still decided by the route. Within a Party's share, while
another Party reads, its requests also take turns to run (web.read_turns), before their
credential is looked up in the store.

Those shares bound what is in flight, not how fast: a sign-in page takes under a millisecond,
so 40 addresses of a stranger's, each within its share, had 1,900 pages a second served and
every Party's searches waited 10-30 times as long (audit 49d). So what carries no credential
(the style sheet and script apart, which signed-in analysts' pages ask for) also draws on one
budget of all addresses together, ANONYMOUS_RATE a second: a flood then costs the Parties a
fiftieth of that, and a person signing in during one waits or is answered 429, as anyone is
past a share. A credential this process has not seen is not drawn on it: after a restart every
Party's first request is one; unless its address lately sent one the store did not know
(web.suspects: made-up tokens from 40 addresses were looked up 1,000 times a second). The
first look-ups from networks that sent none, and that no credential the store knew came from
lately, take turns by network on a budget of their own (web.first_lookups: a botnet across
many /24s had each one's first look-ups free).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import settings
from .fairness import Busy
from .client_address import client_key
from .read_turns import ReadTurns
from .rendering import too_busy
from .signin import SESSION_COOKIE
from .state import NOT_FOUND, SeenCredentials
from .first_lookups import FIRST_LOOKUP_RATE, FirstLookups
from .suspects import Suspects, network_of
from .token_bucket import TokenBucket
from .waiters import Waiters

# in flight per client address: for requests without a credential (and the style sheet and
# script, which a Party's share would otherwise count beside its analysts' pages), and for
# those whose credential this process has not yet seen (a look-up in the store each). No plain
# cap on those of all addresses together: four addresses could keep it full, and every Party's
# first request after a restart was refused (review, session 17); the first look-ups of fresh
# networks take turns by network instead, each keeping its place (web.first_lookups).
ANONYMOUS_PER_CLIENT = 8
UNSEEN_PER_CLIENT = 4
# requests a second without a credential (not the style sheet and script), all addresses
# together, and as many at once after a quiet spell: far past people signing in (a supplier's
# 500 analysts each opening the screen within a minute is 8 a second)
ANONYMOUS_RATE = 50
ANONYMOUS_BURST = 100
RETRY_AFTER = 1
UNSEEN_RECHECK = 0.05  # seconds between looks at whether a waiting credential has been seen
REFUSAL_PAUSE = 1.0  # seconds before a 429 of the bounds inside goes out
STATIC = "/static/"
ANONYMOUS = "anonymous:"
PARTY = "party:"
UNSEEN = "unseen:"


class Gate:
    """Pure ASGI, outside the hot path and the routes (see the module's note)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        chosen = settings.current()
        self.party_share = chosen.party_requests + chosen.party_downloads + chosen.party_streams
        self._in_flight: Counter[str] = Counter()
        self._waiting = Waiters()
        self._anonymous = TokenBucket(ANONYMOUS_RATE, ANONYMOUS_BURST)
        self._reads = ReadTurns()
        self._suspects = Suspects()
        self._first_lookups = FirstLookups()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key, share, taken = await self._turn(scope)
        if taken and self._budgeted(scope, key):
            taken = await self._anonymous_turn()
            if not taken:
                self._end_turn(key)
                await _refused(scope, Busy("anonymous_rate", ANONYMOUS_RATE, RETRY_AFTER))(
                    scope, receive, send
                )
                return
        if not taken:
            await _refused(scope, Busy("in_flight", share, RETRY_AFTER))(scope, receive, send)
            return
        place: tuple[str, str | None] = (_client(scope), None)
        looking = False  # a look-up the first look-ups let go: they are told its answer
        if key.startswith(UNSEEN):
            taken, place, looking = await self._first_lookup(key)
        if not taken:
            self._end_turn(key)
            await _refused(scope, Busy("first_lookup", FIRST_LOOKUP_RATE, RETRY_AFTER))(
                scope, receive, send
            )
            return
        reads = key.startswith(PARTY)
        if reads:
            self._suspects.vouch(_client(scope))
        if reads and not await self._reads.take(key):
            self._end_turn(key)
            await _refused(scope, Busy("turn", self._reads.at_once, RETRY_AFTER))(
                scope, receive, send
            )
            return

        async def paced(message: Message) -> None:
            nonlocal key, reads, looking
            if message["type"] == "http.response.start":
                if _not_found(scope):
                    self._suspects.mark(_client(scope))
                elif key.startswith(UNSEEN) and _found(scope):
                    self._suspects.vouch(_client(scope))
                    self._first_lookups.let_through(*place)
                    key = self._moved_to_its_party(key, scope)
                if looking:
                    looking = False
                    self._first_lookups.looked_up(*place)
                if reads:  # its work is done: another of its Party's may run (web.read_turns)
                    reads = False
                    self._reads.give_back(key)
                # a refusal by the bounds inside (web.fairness) is answered after a pause, in
                # the loop and holding only this turn: answered at once, a Party's flood of
                # broad searches asked again at once, 1,400 refusals a second, and another
                # Party's searches slowed threefold (session 18)
                if message["status"] == 429:
                    await asyncio.sleep(REFUSAL_PAUSE)
            await send(message)

        try:
            await self.app(scope, receive, paced)
        finally:
            if reads:
                self._reads.give_back(key)
            if looking:
                self._first_lookups.looked_up(*place)
            self._end_turn(key)

    def _moved_to_its_party(self, key: str, scope: Scope) -> str:
        """The turn of an answer whose credential was found, moved from its address's share of
        unseen credentials to its Party's. An event stream (or a download) holds its turn for
        as long as it lasts: four opened as a process's first sight of their tokens (after a
        restart, or on a worker of `serve --workers N` that had not seen them) held their
        address's unseen share for hours, and every other credential not yet seen from that
        address was refused 429, whichever Party's it was (audit 68a)."""
        party_key, _ = self._share_of(scope)
        self._in_flight[party_key] += 1
        self._end_turn(key)
        return party_key

    def _budgeted(self, scope: Scope, key: str) -> bool:
        """Whether the request draws on the budget a second of all addresses together: it
        carries no credential (the style sheet and script apart), or one not yet seen from an
        address that lately sent one the store did not know (web.suspects)."""
        if key.startswith(ANONYMOUS):
            return not scope["path"].startswith(STATIC)
        return key.startswith(UNSEEN) and self._suspects.marked(key.removeprefix(UNSEEN))

    async def _first_lookup(self, key: str) -> tuple[bool, tuple[str, str | None], bool]:
        """Whether a credential not yet seen may be looked up, where it took its turn (its
        network, and its address within it: web.first_lookups), and whether the first look-ups
        let it go (and are to be told its answer): at once if its address lately
        sent one the store did not know (it drew on the budget of what carries none) or if its
        network is vouched for; else in its network's turn. An address held only by its
        network's mark waits in its network's turn, in a place of its own there: on the budget
        of what carries none, a Party (its address not vouched for after a restart) was refused
        again and again while the attack beside it went on (audit 52c 1); in the network's
        order of arrival, behind the attack's new addresses. Each by itself among networks, a
        /48's new /64s took the whole budget of first look-ups from one site. The widest
        network remembered: a /32's /48s are one, not 65,536."""
        address = key.removeprefix(UNSEEN)
        network = network_of(address) or address
        if self._suspects.marked(address):
            return True, (network, None), False
        holder = self._suspects.holder(address)
        if holder is not None:
            taken = await self._first_lookups.take(holder, RETRY_AFTER, member=address)
            return taken, (holder, address), taken
        # a network vouched for has its new addresses go at once, but not once any of its
        # parts sent junk: a logged-in User vouched for a /24 with its own token from one
        # address, then had the others' made-up tokens looked up at once, 12 a minute in each
        # /24 it kept under the SPREAD of web.suspects, for an hour (audit 53d). An address
        # vouched for itself goes at once: its own mark holds it after its first junk
        network_vouched = self._suspects.vouched(network) and not self._suspects.spotted(network)
        if network_vouched or self._suspects.vouched(address):
            return True, (network, None), False
        taken = await self._first_lookups.take(network, RETRY_AFTER)
        return taken, (network, None), taken

    def _end_turn(self, key: str) -> None:
        self._in_flight[key] -= 1
        if not self._in_flight[key]:
            del self._in_flight[key]
        # every one: each looks again, and a key's share may have changed meanwhile (a
        # session seen is its Party's), so one woken might not take what came free
        self._waiting.wake(key, every=True)

    async def _anonymous_turn(self) -> bool:
        """Whether the budget of all addresses together has a request for this one, waiting
        for it up to RETRY_AFTER; past that the client is answered when it may ask again."""
        deadline = time.monotonic() + RETRY_AFTER
        while (wait := self._anonymous.take(time.monotonic())) > 0:
            left = deadline - time.monotonic()
            if wait > left:
                await asyncio.sleep(max(left, 0))
                return False
            await asyncio.sleep(wait)
        return True

    async def _turn(self, scope: Scope) -> tuple[str, int, bool]:
        """The sender's share (key, size) and whether a turn in it was taken. Past the share,
        a request waits up to RETRY_AFTER for a turn to come free: a browser's six requests
        at once, its session not yet seen since a restart, had four turns and two refusals
        (audit of the screen, session 18). At most `share` wait, each woken when a turn of
        its share ends (or, for an unseen credential, every UNSEEN_RECHECK seconds). The rest
        are answered when the client may ask again: a client that asked again at once on each
        of its connections kept the loop answering 3,400 refusals a second, and the other
        Parties' requests waited 0.4 s behind them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_AFTER
        while True:
            key, share = self._share_of(scope)  # again: a session seen meanwhile is its Party's
            if self._in_flight[key] < share:
                self._in_flight[key] += 1  # the loop is one thread: no lock needed
                return key, share, True
            left = deadline - loop.time()
            if left <= 0 or self._waiting.count(key) >= share:
                if left > 0:
                    await asyncio.sleep(left)
                return key, share, False
            if key.startswith(UNSEEN):
                # its session may be seen meanwhile (by its first request's look-up), and its
                # Party's turns free: nothing ends in this share to say so
                left = min(left, UNSEEN_RECHECK)
            await self._waiting.wait(key, left)

    def _share_of(self, scope: Scope) -> tuple[str, int]:
        """The share's key, and how many it may have in flight."""
        seen: SeenCredentials = scope["app"].state.seen_credentials
        credential = None if scope["path"].startswith(STATIC) else _credential(scope)
        if credential is not None:
            key = seen.key_of(credential)
            if key is not None:
                return f"{PARTY}{key}", self.party_share
            return f"{UNSEEN}{_client(scope)}", UNSEEN_PER_CLIENT
        return f"{ANONYMOUS}{_client(scope)}", ANONYMOUS_PER_CLIENT

    def in_flight(self) -> dict[str, int]:
        """For the tests and the operator."""
        return dict(self._in_flight)


def _credential(scope: Scope) -> str | None:
    """The credential the request's route looks up, read as the route reads it: on the API
    its bearer token, of its first Authorization header (two are a 401 there; the gate read
    the last, and a junk header after a Party's own charged its request to a stranger's share:
    audit 26c); on the screen its session cookie as Starlette's `Request.cookies` has it, every
    Cookie header parsed in turn, a later name over an earlier one; the other where that one
    is not given. Read with the bearer token first everywhere, in the first Cookie header
    alone and by `SimpleCookie`, a page asked with a made-up bearer token beside its session,
    with a second Cookie header holding its session after a made-up one, or with
    `st_session=x; y="; st_session=SESSION` (x to `SimpleCookie`) was served as its Party's
    but charged to an unseen credential's share: it took no turn to read (web.read_turns) and
    no place in its Party's share (audit 58d)."""
    token: str | None = None
    cookie_headers: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"authorization" and token is None:
            scheme, _, given = value.decode("latin-1").partition(" ")
            token = given.strip() if scheme.lower() == "bearer" else ""
        elif name == b"cookie":
            cookie_headers.append(value)
    if token and scope["path"].startswith("/api/"):
        return token  # the API's every request: no cookie parsed
    cookies: dict[str, str] = {}
    for value in cookie_headers:
        cookies.update(cookie_parser(value.decode("latin-1")))
    return cookies.get(SESSION_COOKIE) or token or None


def _not_found(scope: Scope) -> bool:
    """The request's credential was looked up in the store and not found (state.NOT_FOUND)."""
    return bool(scope.get("state", {}).get(NOT_FOUND))


def _found(scope: Scope) -> bool:
    """The request's credential, not yet seen as it came, was looked up and found: it is seen
    now (only a look-up that found it makes it so)."""
    credential = _credential(scope)
    seen: SeenCredentials = scope["app"].state.seen_credentials
    return credential is not None and seen.key_of(credential) is not None


def _client(scope: Scope) -> str:
    return client_key((scope.get("client") or ("unknown", 0))[0])


def _refused(scope: Scope, busy: Busy) -> Response:
    if scope["path"].startswith("/api/"):
        return JSONResponse(
            status_code=429,
            content={"error": "too_many_requests", "message": str(busy)},
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    return too_busy(Request(scope), None, busy)
