"""People who log in for a Party, and their API tokens."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection

from ..domain.visibility import Viewer
from ..security import hash_password, new_token, token_digest, verify_password
from .schema import account, api_token, dcc_user, party


class AccountError(ValueError):
    pass


def create_account(conn: Connection, username: str, party_id: str, password: str) -> None:
    if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").replace(".", "").replace("@", "").isalnum():
        raise AccountError("a username is 1-64 letters, digits or . _ - @")
    if conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first() is None:
        raise AccountError(f"unknown party {party_id!r}: load its users first ('servicetrail load users')")
    if conn.execute(select(account.c.username).where(account.c.username == username)).first():
        raise AccountError(f"account {username!r} already exists")
    conn.execute(insert(account), {"username": username, "party_id": party_id,
                                   "password_hash": hash_password(password),
                                   "created_at": datetime.now(timezone.utc)})


def create_token(conn: Connection, username: str) -> str:
    if conn.execute(select(account.c.username).where(account.c.username == username)).first() is None:
        raise AccountError(f"no account {username!r}: create it with 'servicetrail accounts create'")
    token = new_token()
    conn.execute(insert(api_token), {"token_hash": token_digest(token), "username": username,
                                     "created_at": datetime.now(timezone.utc)})
    return token


# Built once: deriving the join condition from the foreign keys on every request showed
# up in profiles of the API.
_PARTY_FOR_TOKEN = (
    select(account.c.party_id)
    .select_from(api_token.join(account, account.c.username == api_token.c.username))
    .where(api_token.c.token_hash == bindparam("token_hash"))
)
# The Party and all its User IDs in one round trip (one row per User ID; one row with a
# NULL user_id for a Party that holds none). account.party_id is a foreign key, so the
# Party is registered.
_VIEWER_FOR_TOKEN = (
    select(account.c.party_id, dcc_user.c.user_id)
    .select_from(api_token.join(account, account.c.username == api_token.c.username)
                 .outerjoin(dcc_user, dcc_user.c.party_id == account.c.party_id))
    .where(api_token.c.token_hash == bindparam("token_hash"))
)


def party_for_token(conn: Connection, token: str) -> str | None:
    row = conn.execute(_PARTY_FOR_TOKEN, {"token_hash": token_digest(token)}).first()
    return row.party_id if row else None


def viewer_for_token(conn: Connection, token: str) -> Viewer | None:
    """The Party behind an API token, with every User ID it holds; None for an unknown token."""
    rows = conn.execute(_VIEWER_FOR_TOKEN, {"token_hash": token_digest(token)}).all()
    if not rows:
        return None
    return Viewer(rows[0].party_id, frozenset(r.user_id for r in rows if r.user_id is not None))


def check_login(conn: Connection, username: str, password: str) -> str | None:
    """The Party of a correct username and password, else None (same cost either way)."""
    row = conn.execute(select(account.c.party_id, account.c.password_hash)
                       .where(account.c.username == username)).first()
    ok = verify_password(row.password_hash if row else None, password)
    return row.party_id if ok and row else None
