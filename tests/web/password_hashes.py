"""An account's stored password hash, and the service's hashing parameters raised since it was
stored."""

from __future__ import annotations

from dataclasses import replace

from argon2.profiles import CHEAPEST
from sqlalchemy import select

from servicetrail.store.schema import account


# the service's parameters as raised since the account was stored (the tests' own hasher
# is argon2-cffi's cheapest: tests/conftest.py)
RAISED = replace(CHEAPEST, time_cost=2)


def hash_of(engine, username: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            select(account.c.password_hash).where(account.c.username == username)
        ).scalar_one()
