"""People who log in for a Party, and their API tokens."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from ..security import hash_password, new_token, token_digest, verify_password
from .schema import account, api_token, party


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


def party_for_token(conn: Connection, token: str) -> str | None:
    row = conn.execute(
        select(account.c.party_id).select_from(api_token.join(account))
        .where(api_token.c.token_hash == token_digest(token))
    ).first()
    return row.party_id if row else None


def check_login(conn: Connection, username: str, password: str) -> str | None:
    """The Party of a correct username and password, else None (same cost either way)."""
    row = conn.execute(select(account.c.party_id, account.c.password_hash)
                       .where(account.c.username == username)).first()
    ok = verify_password(row.password_hash if row else None, password)
    return row.party_id if ok and row else None
