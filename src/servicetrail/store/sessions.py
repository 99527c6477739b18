"""The web screen's server-side sessions and sign-in throttling (tables of migration 0002).

A session id is 256 random bits that live only in the browser's cookie; the store keeps
its SHA-256, so reading this table does not let anyone sign in as anybody. A session ends
after IDLE_LIMIT without a request, after ABSOLUTE_LIMIT in any case, or at sign-out.

Sign-in is throttled over a sliding window, keyed so that nobody elsewhere can lock a User
out (docs/security.md). An attempt is keyed by its username and its client: the browser's
device token when it presents one this account was given at an earlier successful sign-in,
else the network address. Each attempt claims its place before the password is verified
(one row in login_failure, claims of one client made one at a time): of any number arriving
at once, MAX_FAILURES_PER_KEY per key go on to be verified and the rest are refused at once.
A claim whose password was wrong stays as a failure for the window; a correct sign-in
forgives its key's failures. Attempts without a device token are also limited per address
(MAX_FAILURES_PER_ADDRESS, across usernames), against guessing one password for many Users.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import ColumnElement, delete, exists, func, insert, literal, select, update
from sqlalchemy.engine import Connection, Engine

from .accounts import ascii_lower
from .engine import reading
from .schema import account, login_device, login_failure, web_session
from .read_transaction import owner_read_limits

UTC = timezone.utc
IDLE_LIMIT = timedelta(minutes=30)
ABSOLUTE_LIMIT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is rewritten at most once a minute

THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_KEY = 5  # passwords verified per (username, client) in the window
MAX_FAILURES_PER_ADDRESS = (
    20  # failed sign-ins without a device token, from one address, any username
)
DEVICE_LIFETIME = timedelta(days=90)  # a browser is remembered this long after signing in
DEVICE_PREFIX = "device:"  # marks a device key in login_failure.client_ip (no address starts so)

w = web_session.c
f = login_failure.c
d = login_device.c


def now_utc() -> datetime:
    return datetime.now(UTC)


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    id_hash: str
    username: str
    party_id: str | None  # None: an auditor's session (SPEC section 8)
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and secrets.compare_digest(
            self.csrf_token.encode(), str(presented).encode()
        )


def create_session(
    conn: Connection, username: str, password_hash: str, now: datetime | None = None
) -> str | None:
    """A new session for an account just signed in with the password whose hash is
    `password_hash`; returns the session id for the cookie (never stored), or None when the
    account no longer has that password or was disabled since it was checked.

    The check and the insert are one statement, which on PostgreSQL locks the account's row:
    `accounts passwd` and `accounts disable` change that row and then end its sessions, so a
    session is either made before them (and ended by them) or refused. Made in a separate
    step, a sign-in racing them kept a session under the old password."""
    now = now or now_utc()
    session_id = secrets.token_urlsafe(32)
    still = (
        select(literal(1))
        .select_from(account)
        .where(
            account.c.username == username,
            account.c.password_hash == password_hash,
            account.c.disabled_at.is_(None),
        )
        .with_for_update(read=True)  # FOR SHARE on PostgreSQL; SQLite has one writer
    )
    made = conn.execute(
        insert(web_session)
        .from_select(
            ["id_hash", "username", "csrf_token", "created_at", "last_seen_at"],
            select(
                literal(session_digest(session_id)),
                literal(username),
                literal(secrets.token_urlsafe(32)),
                literal(now, type_=web_session.c.created_at.type),
                literal(now, type_=web_session.c.last_seen_at.type),
            ).where(exists(still)),
        )
        .returning(web_session.c.username)  # whether it was made (an INSERT's rowcount is not
        # reported through SQLAlchemy on every driver)
    ).first()
    return session_id if made is not None else None


def _expired(created_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
    return now - last_seen_at >= IDLE_LIMIT or now - created_at >= ABSOLUTE_LIMIT


def load_session(
    conn: Connection, session_id: str | None, now: datetime | None = None, *, seen: bool = True
) -> WebSession | None:
    """The live session behind a cookie value, or None. An expired one is deleted on sight.
    `seen`: the session's user is at work, so its idle time starts again; a download asking
    whether its session still holds (web.downloads) is not, and writes nothing."""
    if not session_id or len(session_id) > 200:
        return None
    now = now or now_utc()
    owner_read_limits(conn)
    digest = session_digest(session_id)
    row = conn.execute(
        select(
            w.id_hash, w.username, account.c.party_id, w.csrf_token, w.created_at, w.last_seen_at
        )
        .select_from(web_session.join(account, account.c.username == w.username))
        .where(w.id_hash == digest, account.c.disabled_at.is_(None))
    ).first()
    if row is None:
        return None
    if _expired(row.created_at, row.last_seen_at, now):
        if seen:
            conn.execute(delete(web_session).where(w.id_hash == digest))
        return None
    if seen and now - row.last_seen_at >= TOUCH_EVERY:
        conn.execute(update(web_session).where(w.id_hash == digest).values(last_seen_at=now))
    return WebSession(*row)


def delete_session(conn: Connection, session_id: str | None) -> None:
    if session_id:
        conn.execute(delete(web_session).where(w.id_hash == session_digest(session_id)))


def purge_expired(conn: Connection, now: datetime | None = None) -> None:
    """Drop ended sessions, attempts older than the window and forgotten devices (called on
    each sign-in)."""
    now = now or now_utc()
    conn.execute(
        delete(web_session).where(
            (w.last_seen_at <= now - IDLE_LIMIT) | (w.created_at <= now - ABSOLUTE_LIMIT)
        )
    )
    conn.execute(delete(login_failure).where(f.failed_at <= now - THROTTLE_WINDOW))
    conn.execute(delete(login_device).where(d.created_at <= now - DEVICE_LIFETIME))


def normal_username(username: str) -> str:
    return username.strip().lower()[:64]


@dataclass(frozen=True, slots=True)
class Claim:
    """A sign-in attempt's place in the throttle: `refused_until` is None when its password
    may be verified, else when sign-in opens again for it."""

    attempt_id: int | None
    username: str
    key: str
    trusted_device: bool
    refused_until: datetime | None = None


def device_key(
    conn: Connection, username: str, device_token: str | None, now: datetime | None = None
) -> str | None:
    """The throttle key of a device token this account was given, or None for no valid one."""
    if not device_token or len(device_token) > 200:
        return None
    digest = session_digest(device_token)
    created = conn.execute(
        # the name as typed at sign-in, which matches its account regardless of case
        select(d.created_at).where(
            d.token_hash == digest, ascii_lower(conn, d.username) == username.lower()
        )
    ).scalar()
    if created is None or (now or now_utc()) - created >= DEVICE_LIFETIME:
        return None
    return DEVICE_PREFIX + digest[:32]


def remember_device(conn: Connection, username: str, now: datetime | None = None) -> str:
    """A new device token for a browser that has just signed in (for its cookie; never stored)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(login_device),
        {"token_hash": session_digest(token), "username": username, "created_at": now or now_utc()},
    )
    return token


def claim_attempt(
    engine: Engine,
    username: str,
    address: str,
    device_token: str | None = None,
    now: datetime | None = None,
) -> Claim:
    """Claims a sign-in attempt before its password is verified.

    Claims that count against the same limits are made one at a time: on PostgreSQL under a
    transaction-scoped advisory lock on the client (its address, or its device token), on
    SQLite under the database's write lock, which the claim's INSERT, coming first, takes.
    So the count each claim sees includes every claim made before it, and of any number of
    attempts arriving together exactly the limit go on to be verified. A refused claim is
    withdrawn, so refused attempts do not extend the pause.
    """
    now = now or now_utc()
    name = normal_username(username)
    address = address[:64]
    with reading(engine) as conn:
        key = device_key(conn, username, device_token, now)
    trusted = key is not None
    key = key or address
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            conn.execute(select(func.pg_advisory_xact_lock(lock)))
        attempt_id = conn.execute(
            insert(login_failure).returning(f.id),
            {"username": name, "client_ip": key, "failed_at": now},
        ).scalar_one()
        waits = [
            _free_at(conn, (f.username == name) & (f.client_ip == key), MAX_FAILURES_PER_KEY, now)
        ]
        if not trusted:
            waits.append(_free_at(conn, f.client_ip == address, MAX_FAILURES_PER_ADDRESS, now))
        opening = [t for t in waits if t is not None]
        if not opening:
            return Claim(attempt_id, name, key, trusted)
        conn.execute(delete(login_failure).where(f.id == attempt_id))
    return Claim(None, name, key, trusted, max(opening))


def withdraw(conn: Connection, claim: Claim) -> None:
    """An attempt given up before its password was verified: its claim is not a failure."""
    if claim.attempt_id is not None:
        conn.execute(delete(login_failure).where(f.id == claim.attempt_id))


# no username is this: names are stripped of spaces at both ends
NOT_CHECKED = " not checked: the sign-in lanes were full"


def count_for_the_address(conn: Connection, claim: Claim) -> None:
    """An attempt refused before its password was verified, because every sign-in lane was
    taken: it counts against its address's failures, not its username's, so that a flood
    of wrong passwords from many addresses cannot go on for nothing (each was refused free,
    and new browsers were refused 11 times in 12 while it lasted; review 43d), and the User
    whose name was tried is not paused for it."""
    if claim.attempt_id is not None:
        conn.execute(
            update(login_failure).where(f.id == claim.attempt_id).values(username=NOT_CHECKED)
        )


def forgive(conn: Connection, claim: Claim) -> None:
    """After a correct sign-in: the failures of its key are forgiven (the address's others are
    not)."""
    conn.execute(
        delete(login_failure).where(f.username == claim.username, f.client_ip == claim.key)
    )


def _free_at(
    conn: Connection, condition: ColumnElement[bool], limit: int, now: datetime
) -> datetime | None:
    """When fewer than `limit` attempts matching `condition` (this one's claim among them)
    remain in the window, or None if that is so now."""
    times = (
        conn.execute(
            select(f.failed_at)
            .where(condition, f.failed_at > now - THROTTLE_WINDOW)
            .order_by(f.failed_at)
        )
        .scalars()
        .all()
    )
    if len(times) <= limit:
        return None
    # with this claim withdrawn, it opens when all but limit-1 of the others have left the window
    return times[len(times) - 1 - limit] + THROTTLE_WINDOW
