"""People who log in for a Party, and their API tokens.

A disabled account can neither sign in nor use its API tokens; disabling it, or changing
its password, also ends its web sessions at once. API tokens are valid until revoked (or
while their account is disabled); a server process set to may trust a token it looked up
for SERVICETRAIL_TOKEN_CACHE_SECONDS more (web.api.ViewerCache; 0 by default).
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..domain.access_log import INTERFACES
from ..domain.ids import shown_code
from ..domain.visibility import Viewer
from ..security import (
    TOKEN_PREFIX,
    hash_password,
    new_token,
    rehashed,
    token_digest,
    verify_password,
)
from .schema import account, api_token, dcc_user, login_device, party, web_session
from .read_transaction import owner_read_limits

_USERNAME = re.compile(
    r"[A-Za-z0-9._@-]{1,64}"
)  # ASCII: the throttle keys a username by its lower case


class AccountError(ValueError):
    pass


def check_new_account(conn: Connection, username: str, party_id: str | None) -> None:
    """What create_account refuses whatever the password: asked before a password is read, so
    that a terminal is not asked for one twice to be told the name is refused (audit 26c)."""
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise AccountError("a username is 1-64 ASCII letters, digits or . _ - @")
    if (
        party_id is not None
        and conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first()
        is None
    ):
        raise AccountError(
            f"unknown party {shown_code(party_id)}: load its users first "
            "('servicetrail load users')"
        )
    if username.lower() in INTERFACES:
        raise AccountError(
            f"{username!r} is what the access log names its {username.lower()} reads by: "
            "choose another username"
        )
    _refuse_a_taken_name(conn, username)


def ascii_lower(conn: Connection, name: ColumnElement[str]) -> ColumnElement[str]:
    """A username column in lower case, its ASCII letters only, as Python's lower() of a name
    the pattern takes: PostgreSQL's lower() follows the database's collation, and a Turkish one
    lowers `I` to a dotless i, so `ILKER` matched neither `ilker` nor a new `ilker` (audit 28d).
    Under "C" it lowers ASCII letters alone; SQLite's lower() does that anyway."""
    if conn.dialect.name == "postgresql":
        name = name.collate("C")
    return func.lower(name)


def _refuse_a_taken_name(conn: Connection, username: str) -> None:
    # told apart regardless of case, as the sign-in throttle keys them: `Supplier` beside
    # `supplier` shared its failures, and read as two actors in the access log
    same = conn.execute(
        select(account.c.username).where(ascii_lower(conn, account.c.username) == username.lower())
    ).first()
    if same is not None:
        raise AccountError(
            f"account {username!r} already exists"
            if same.username == username
            else f"account {same.username!r} already exists (names must differ by more than case)"
        )


def create_account(conn: Connection, username: str, party_id: str | None, password: str) -> None:
    """An account of a Party, or with `party_id` None an auditor's (SPEC section 8: it reads
    every Party's access-log entries and no SAT record)."""
    check_new_account(conn, username, party_id)
    password_hash = hash_password(password)  # before the turn below: argon2 is slow
    _names_in_turn(conn)
    _refuse_a_taken_name(conn, username)  # again: another creation may have come between
    exists = AccountError(f"account {username!r} already exists")
    # another `accounts create` of the same name may commit between the check and this insert;
    # a savepoint keeps the caller's transaction usable after the key says so
    try:
        with conn.begin_nested():
            conn.execute(
                insert(account),
                {
                    "username": username,
                    "party_id": party_id,
                    "password_hash": password_hash,
                    "created_at": datetime.now(timezone.utc),
                },
            )
    except IntegrityError:
        raise exists from None


# any constant: the advisory lock's key for "the set of usernames"
_USERNAMES_LOCK = 0x5E_7A_CC_01


def _names_in_turn(conn: Connection) -> None:
    """Account creations take turns until the caller's transaction ends: the case check reads
    before the insert writes, and creations of `NP` and `np` at once each passed it before the
    other committed. (A unique index on the lower-case name would need every store to hold no
    such pair already.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_USERNAMES_LOCK)))
        return
    driver: Any = conn.connection.driver_connection
    if not driver.in_transaction:  # SQLite's one writer at a time, from the check on
        driver.execute("BEGIN IMMEDIATE")


def account_name(conn: Connection, username: str) -> str:
    """The account's name as stored, for a name typed in any case, as sign-in takes it (the
    operator's commands took only the stored spelling: `tokens list --account ALICE` listed
    none of alice's tokens; audit 44d); AccountError when there is no such account. A store
    from before names were told apart regardless of case may hold two that differ only in
    it: the one typed exactly is taken, and any other spelling names neither."""
    rows = (
        conn.execute(
            select(account.c.username)
            .where(ascii_lower(conn, account.c.username) == username.lower())
            .order_by((account.c.username == username).desc())
            .limit(2)
        ).all()
        if username.isascii()  # names are ASCII; Python's lower() maps a few others into it
        else []
    )
    if not rows or (rows[0].username != username and len(rows) > 1):
        if username.startswith(TOKEN_PREFIX):  # a token pasted where a name goes: not echoed
            raise AccountError(
                "no such account; that looks like an API token: never give one as an argument"
            )
        raise AccountError(
            f"no account {username!r}: create it with 'servicetrail accounts create'"
        )
    return str(rows[0].username)


def _end_sessions(conn: Connection, username: str) -> int:
    return conn.execute(delete(web_session).where(web_session.c.username == username)).rowcount


def set_disabled(conn: Connection, username: str, disabled: bool) -> int:
    """Disables (or enables again) an account; returns the web sessions this ended."""
    username = account_name(conn, username)
    conn.execute(
        update(account)
        .where(account.c.username == username)
        .values(disabled_at=datetime.now(timezone.utc) if disabled else None)
    )
    return _end_sessions(conn, username) if disabled else 0


def change_password(conn: Connection, username: str, password: str) -> int:
    """A new password; the account's web sessions end and its browsers are no longer
    remembered by the sign-in throttle. Returns the sessions ended."""
    username = account_name(conn, username)
    conn.execute(
        update(account)
        .where(account.c.username == username)
        .values(password_hash=hash_password(password))
    )
    conn.execute(delete(login_device).where(login_device.c.username == username))
    return _end_sessions(conn, username)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    username: str
    party_id: str | None  # None: an auditor's account
    created_at: datetime
    disabled_at: datetime | None
    tokens: int


def list_accounts(conn: Connection) -> list[AccountInfo]:
    """Every account (never its password's hash), by name, with how many API tokens it holds:
    the operator saw accounts only through `tokens list`, those holding a token (audit 44d)."""
    tokens = (
        select(func.count()).where(api_token.c.username == account.c.username).scalar_subquery()
    )
    query = select(
        account.c.username,
        account.c.party_id,
        account.c.created_at,
        account.c.disabled_at,
        tokens,
    ).order_by(account.c.username)
    return [AccountInfo(*row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    username: str
    party_id: str | None  # None: an auditor's token
    created_at: datetime
    account_disabled: bool


def list_tokens(conn: Connection, username: str | None = None) -> list[TokenInfo]:
    """Every API token (never its value, which is not kept), oldest first."""
    query = (
        select(
            api_token.c.id,
            api_token.c.username,
            account.c.party_id,
            api_token.c.created_at,
            account.c.disabled_at.is_not(None),
        )
        .select_from(api_token.join(account, account.c.username == api_token.c.username))
        .order_by(api_token.c.id)
    )
    if username is not None:
        query = query.where(api_token.c.username == account_name(conn, username))
    return [TokenInfo(*row) for row in conn.execute(query)]


def revoke_tokens(
    conn: Connection,
    ids: Iterable[int] = (),
    username: str | None = None,
    tokens: Iterable[str] = (),
) -> list[TokenInfo]:
    """Deletes the tokens named by id, by account, or by their value; returns those deleted.
    An id or a value that matches no token is an AccountError, and then nothing is deleted."""
    current = {t.id: t for t in list_tokens(conn)}
    chosen = set(ids)
    missing = sorted(chosen - current.keys())
    if missing:
        raise AccountError(
            f"no API token with id {', '.join(map(str, missing))} ('servicetrail tokens list')"
        )
    if username is not None:
        username = account_name(conn, username)
        chosen |= {t.id for t in current.values() if t.username == username}
    for token in tokens:
        token_id = conn.execute(
            select(api_token.c.id).where(api_token.c.token_hash == token_digest(token))
        ).scalar()
        if token_id is None:
            raise AccountError("a token read from standard input is not a current API token")
        chosen.add(token_id)
    deleted = [t for t in list_tokens(conn) if t.id in chosen]
    if deleted:
        conn.execute(delete(api_token).where(api_token.c.id.in_([t.id for t in deleted])))
    return deleted


def create_token(conn: Connection, username: str) -> str:
    username = account_name(conn, username)
    token = new_token()
    conn.execute(
        insert(api_token),
        {
            "token_hash": token_digest(token),
            "username": username,
            "created_at": datetime.now(timezone.utc),
        },
    )
    return token


@dataclass(frozen=True, slots=True)
class TokenHolder:
    """The account behind an API token: its name, and its Party as a viewer (None: an auditor)."""

    username: str
    viewer: Viewer | None


# Built once: deriving the join condition from the foreign keys on every request showed up
# in profiles of the API. The account and all its Party's User IDs in one round trip (one
# row per User ID; one row with a NULL user_id for a Party that holds none, or an auditor).
_HOLDER_FOR_TOKEN = (
    select(account.c.username, account.c.party_id, dcc_user.c.user_id)
    .select_from(
        api_token.join(account, account.c.username == api_token.c.username).outerjoin(
            dcc_user, dcc_user.c.party_id == account.c.party_id
        )
    )
    .where(api_token.c.token_hash == bindparam("token_hash"), account.c.disabled_at.is_(None))
)


def holder_for_token(conn: Connection, token: str) -> TokenHolder | None:
    """The account behind an API token, in one query; None for an unknown or revoked token."""
    owner_read_limits(conn)
    rows = conn.execute(_HOLDER_FOR_TOKEN, {"token_hash": token_digest(token)}).all()
    if not rows:
        return None
    first = rows[0]
    if first.party_id is None:
        return TokenHolder(first.username, None)
    user_ids = frozenset(r.user_id for r in rows if r.user_id is not None)
    return TokenHolder(first.username, Viewer(first.party_id, user_ids))


def party_of(conn: Connection, username: str) -> str | None:
    """The Party an account acts for; None for an auditor's or no account."""
    row = conn.execute(select(account.c.party_id).where(account.c.username == username)).first()
    return None if row is None else row.party_id


def is_auditor(conn: Connection, username: str) -> bool:
    """Whether the account is an auditor's (of no Party: SPEC section 8)."""
    row = conn.execute(select(account.c.party_id).where(account.c.username == username)).first()
    return row is not None and row.party_id is None


@dataclass(frozen=True, slots=True)
class StoredPassword:
    username: str  # as the account was created, whatever case it was typed in
    hash: str
    enabled: bool


def stored_password(conn: Connection, username: str) -> StoredPassword | None:
    """The account's password hash as stored, read apart from its verification: argon2 takes
    a third of a second, for which a sign-in held a pooled connection.

    The name is matched regardless of case, as new names are told apart (`alice` typed
    signs in to `Alice`). A store from before that rule may hold names differing only in case: the
    one typed exactly is taken, and any other spelling of them matches none."""
    if not username.isascii():  # names are ASCII; Python's lower() maps a few others into it
        return None
    rows = conn.execute(
        select(account.c.username, account.c.password_hash, account.c.disabled_at)
        .where(ascii_lower(conn, account.c.username) == username.lower())
        .order_by((account.c.username == username).desc())
        .limit(2)
    ).all()
    if not rows or (rows[0].username != username and len(rows) > 1):
        return None
    row = rows[0]
    return StoredPassword(str(row.username), str(row.password_hash), row.disabled_at is None)


def password_matches(stored: StoredPassword | None, password: str) -> str | None:
    """The stored hash a correct password of an enabled account matched, else None (same
    cost either way: a missing or disabled account's is verified too, and not told apart). A
    session is then made only while the account still has that hash
    (store.sessions.create_session)."""
    ok = verify_password(stored.hash if stored else None, password)
    return stored.hash if ok and stored and stored.enabled else None


def verified_password_hash(conn: Connection, username: str, password: str) -> str | None:
    """password_matches for the account's stored password."""
    return password_matches(stored_password(conn, username), password)


def kept_current(engine: Engine, stored: StoredPassword, password: str) -> StoredPassword:
    """The account whose password just matched `stored`, its hash made again under the
    service's argon2 parameters if it was stored under others (security.rehashed): every
    account's sign-in then costs the same. Stored only while the account still has the hash
    that matched: a password changed meanwhile stays, and the sign-in then makes no session
    (store.sessions.create_session). Nothing else changes: its sessions and remembered
    browsers stay, as the password does."""
    fresh = rehashed(stored.hash, password)  # before the transaction: argon2 is slow
    if fresh is None:
        return stored
    with engine.begin() as conn:
        done = conn.execute(
            update(account)
            .where(account.c.username == stored.username, account.c.password_hash == stored.hash)
            .values(password_hash=fresh)
        ).rowcount
    return replace(stored, hash=fresh) if done == 1 else stored
