"""What a request finds on its application: the store it serves."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from fastapi import Request
from sqlalchemy.engine import Connection, Engine

from .. import settings
from ..security import token_digest
from ..signing import signer_for
from ..store.engine import reading
from .hashing_turns import HashingTurns


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def store_url(request: Request) -> str:
    """The store's URL as written, password and all: what the signing key's place and the
    trusted verifier keys are found by (signing.signer_for, trusted_for)."""
    return engine_of(request).url.render_as_string(hide_password=False)


def verifier_key(request: Request) -> str:
    """The store's current verifier key (signing.SigningKeyError if there is none to make)."""
    return signer_for(store_url(request)).verifier_key


def credential_recheck_seconds() -> float:
    """How often an answer that outlives its request (an event stream, a report download sent
    at its client's pace) asks the store again whether its token or session still holds: as
    often as a request would (SERVICETRAIL_TOKEN_CACHE_SECONDS), at least every second, so
    that a revocation, a disabled account or a changed password ends it within that time."""
    return max(settings.current().token_cache_seconds, 1.0)


def reader_of(request: Request) -> AbstractContextManager[Connection]:
    """A connection of the store for the request's reads (store.engine.reading: it ends by
    COMMIT, so the pool's connections keep their prepared statements)."""
    return reading(engine_of(request))


class SeenCredentials:
    """credential digest -> the key of its share (a Party's, or an auditor's), as the last
    look-up in the store found it; bounded, the least recently seen dropped first. Not an
    authority on anything but whose turn a request takes: a revoked token is still refused by
    its route (api.api_account)."""

    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._keys: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()  # filled from the routes' threads, read in the loop

    def remember(self, credential: str, key: str) -> None:
        digest = token_digest(credential)
        with self._lock:
            self._keys[digest] = key
            self._keys.move_to_end(digest)
            while len(self._keys) > self.MAX_ENTRIES:
                self._keys.popitem(last=False)

    def forget(self, credential: str) -> None:
        """A credential the store no longer knows (revoked, expired, signed out): its requests
        took the Party's turns until their routes refused them, and a revoked token's holder
        could keep the Party's share full (review, session 17)."""
        with self._lock:
            self._keys.pop(token_digest(credential), None)

    def key_of(self, credential: str) -> str | None:
        return self._keys.get(token_digest(credential))


def seen_credentials(request: Request) -> SeenCredentials:
    return request.app.state.seen_credentials


# what web.gate finds on a request's state once its credential was looked up and not found
NOT_FOUND = "credential_not_found"


def credential_not_found(request: Request, credential: str) -> None:
    """The store knew no such credential (made up, revoked, expired): it takes no Party's
    turns any more, and web.gate remembers the request's address (web.suspects). Said by the
    look-up itself: inferred by the gate from a credential not seen when the answer started,
    a valid token sent where nothing looks it up (an unknown path, /openapi.json, a second
    Authorization header) marked its own address for a minute (audit 50a 2)."""
    seen_credentials(request).forget(credential)
    setattr(request.state, NOT_FOUND, True)


# Passwords verified for one username, right or wrong, a minute. The throttle counts
# failures, which a correct password forgives: one Party signing in and out again from eight
# threads kept the cores hashing (argon2, 64 MiB and three passes a sign-in), and another
# Party's searches took 4-14 times as long at p95 (audit 27b; 270 a minute). Sixty a minute
# is a tenth of a core's hashing, and more than any person, or a test harness driving the
# screen, signs in.
SIGN_INS_A_MINUTE = 60


class SignInPace:
    """The sign-ins each key (a username and its client; or a username alone, for the
    successes) has had in the last minute, in this process; the keys remembered are bounded,
    oldest forgotten first."""

    def __init__(self, most: int = SIGN_INS_A_MINUTE, seconds: float = 60.0) -> None:
        self.most, self.seconds = most, seconds
        self._lock = threading.Lock()
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_for(self, key: str, count: bool = True) -> float:
        """0 (and the sign-in counted, if `count`), or the seconds until the key may sign
        in again."""
        now = time.monotonic()
        with self._lock:
            times = self._times.pop(key, None) or deque()
            while times and times[0] <= now - self.seconds:
                times.popleft()
            self._times[key] = times  # the most recent last
            if len(times) >= self.most:
                return times[0] + self.seconds - now
            if count:
                times.append(now)
            while len(self._times) > 10_000:
                self._times.popitem(last=False)
            return 0.0

    def count(self, key: str) -> None:
        with self._lock:
            self._times.setdefault(key, deque()).append(time.monotonic())


class SignInLanes:
    """A password check waiting for its hashing turn (web.hashing_turns) holds a worker
    thread; unbounded, wrong passwords from 30-40 addresses, each within its own limits,
    held every thread of the pool, and every Party's reads waited 12-33 s behind them
    (audit 43b). At most `strangers` checks from browsers that have not signed in before run
    or wait at once; the rest are answered at once, to try again in a moment. A browser
    that has (its device token, which no stranger holds) has lanes of its own as well.

    Each attempt is someone's (a Party's, known by its browser's device token; else its
    address's), who holds at most half of each kind's lanes: one Party's User signing in
    with many of its accounts took them all, and another Party's User was told to try again
    (session 63g)."""

    def __init__(self, strangers: int, trusted: int) -> None:
        self._room = {False: strangers, True: trusted}
        self._lock = threading.Lock()
        self._held: Counter[tuple[bool, str]] = Counter()  # (trusted kind, whose) -> lanes

    @contextmanager
    def lane(self, trusted_device: bool, whose: str) -> Iterator[bool]:
        """True: a lane is held while the block runs; False: none free for `whose`."""
        kinds = (True, False) if trusted_device else (False,)
        taken = next((kind for kind in kinds if self._take(kind, whose)), None)
        try:
            yield taken is not None
        finally:
            if taken is not None:
                with self._lock:
                    self._held[taken, whose] -= 1
                    if not self._held[taken, whose]:
                        del self._held[taken, whose]

    def _take(self, kind: bool, whose: str) -> bool:
        room = self._room[kind]
        with self._lock:
            in_use = sum(n for (held_kind, _), n in self._held.items() if held_kind == kind)
            if in_use >= room or self._held[kind, whose] >= (room + 1) // 2:
                return False
            self._held[kind, whose] += 1
            return True


def sign_in_lanes(request: Request) -> SignInLanes:
    return request.app.state.sign_in_lanes


def sign_in_turns(request: Request) -> HashingTurns:
    return request.app.state.sign_in_turns


def sign_in_pace(request: Request) -> SignInPace:
    return request.app.state.sign_in_pace


def sign_in_successes(request: Request) -> SignInPace:
    """Successful sign-ins by username alone, which no stranger can make: each correct one
    without a trusted browser gives it a device token, a key of the pace of its own, and a
    Party's holder collected them and signed in 30 times a minute with each (review 27f)."""
    return request.app.state.sign_in_successes
