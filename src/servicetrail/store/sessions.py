"""The web screen's server-side sessions and sign-in throttling (tables of migration 0002).

A session id is 256 random bits that live only in the browser's cookie; the store keeps
its SHA-256, so reading this table does not let anyone sign in as anybody. A session ends
after IDLE_LIMIT without a request, after ABSOLUTE_LIMIT in any case, or at sign-out.

Failed sign-ins are counted per username and per client address over a sliding window;
past a limit, sign-in is refused (without checking the password) until enough of those
failures are older than the window.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from .schema import account, login_failure, party, web_session

UTC = timezone.utc
IDLE_LIMIT = timedelta(minutes=30)
ABSOLUTE_LIMIT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is rewritten at most once a minute

THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_CLIENT = 20  # a supplier's whole office may sit behind one address

w = web_session.c
f = login_failure.c


def now_utc() -> datetime:
    return datetime.now(UTC)


def session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    id_hash: str
    username: str
    party_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and secrets.compare_digest(self.csrf_token.encode(), str(presented).encode())


def create_session(conn: Connection, username: str, now: datetime | None = None) -> str:
    """A new session for a signed-in account; returns the session id for the cookie (never stored)."""
    now = now or now_utc()
    session_id = secrets.token_urlsafe(32)
    conn.execute(insert(web_session), {
        "id_hash": session_digest(session_id), "username": username,
        "csrf_token": secrets.token_urlsafe(32), "created_at": now, "last_seen_at": now,
    })
    return session_id


def _expired(created_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
    return now - last_seen_at >= IDLE_LIMIT or now - created_at >= ABSOLUTE_LIMIT


def load_session(conn: Connection, session_id: str | None, now: datetime | None = None) -> WebSession | None:
    """The live session behind a cookie value, or None. An expired one is deleted on sight."""
    if not session_id or len(session_id) > 200:
        return None
    now = now or now_utc()
    digest = session_digest(session_id)
    row = conn.execute(
        select(w.id_hash, w.username, account.c.party_id, w.csrf_token, w.created_at, w.last_seen_at)
        .select_from(web_session.join(account, account.c.username == w.username))
        .where(w.id_hash == digest)
    ).first()
    if row is None:
        return None
    if _expired(row.created_at, row.last_seen_at, now):
        conn.execute(delete(web_session).where(w.id_hash == digest))
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        conn.execute(update(web_session).where(w.id_hash == digest).values(last_seen_at=now))
    return WebSession(*row)


def delete_session(conn: Connection, session_id: str | None) -> None:
    if session_id:
        conn.execute(delete(web_session).where(w.id_hash == session_digest(session_id)))


def purge_expired(conn: Connection, now: datetime | None = None) -> None:
    """Drop ended sessions and failures older than the window (called on each sign-in)."""
    now = now or now_utc()
    conn.execute(delete(web_session).where(
        (w.last_seen_at <= now - IDLE_LIMIT) | (w.created_at <= now - ABSOLUTE_LIMIT)))
    conn.execute(delete(login_failure).where(f.failed_at <= now - THROTTLE_WINDOW))


def normal_username(username: str) -> str:
    return username.strip().lower()[:64]


def record_failure(conn: Connection, username: str, client_ip: str, now: datetime | None = None) -> None:
    conn.execute(insert(login_failure), {"username": normal_username(username), "client_ip": client_ip[:64],
                                         "failed_at": now or now_utc()})


def clear_failures(conn: Connection, username: str) -> None:
    """After a correct sign-in: that username's failures are forgiven (the address's are not)."""
    conn.execute(delete(login_failure).where(f.username == normal_username(username)))


def _free_at(conn: Connection, column, value: str, limit: int, now: datetime) -> datetime | None:
    since = now - THROTTLE_WINDOW
    times = conn.execute(select(f.failed_at).where(column == value, f.failed_at > since)
                         .order_by(f.failed_at)).scalars().all()
    if len(times) < limit:
        return None
    # sign-in opens again when all but limit-1 of these failures have left the window
    return times[len(times) - limit] + THROTTLE_WINDOW


def throttled_until(conn: Connection, username: str, client_ip: str, now: datetime | None = None
                    ) -> datetime | None:
    """When sign-in for this username from this address opens again, or None if it is open now."""
    now = now or now_utc()
    waits = [t for t in (
        _free_at(conn, f.username, normal_username(username), MAX_FAILURES_PER_USERNAME, now),
        _free_at(conn, f.client_ip, client_ip[:64], MAX_FAILURES_PER_CLIENT, now),
    ) if t is not None]
    return max(waits) if waits else None


def party_name(conn: Connection, party_id: str) -> str:
    name = conn.execute(select(party.c.name).where(party.c.party_id == party_id)).scalar()
    return name or party_id


def party_names(conn: Connection, party_ids: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({p for p in party_ids if p})
    if not wanted:
        return {}
    return dict(conn.execute(select(party.c.party_id, party.c.name).where(party.c.party_id.in_(wanted))).all())


def count_sessions(conn: Connection, username: str) -> int:
    return conn.execute(select(func.count()).select_from(web_session).where(w.username == username)).scalar_one()
