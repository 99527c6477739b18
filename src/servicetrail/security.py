"""Passwords (argon2id) and API tokens (random, stored only as a SHA-256 digest)."""

from __future__ import annotations

import unicodedata

import functools
import hashlib
import os
import secrets
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

# argon2 is imported where a password is hashed or checked: `tokens` and `accounts list`,
# which hash none, imported it at every start (session 63)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = (
    1024  # the sign-in form verifies nothing longer (argon2 hashes any length, slowly)
)
TOKEN_PREFIX = "st_"
_hasher: PasswordHasher | None = None  # made on first use (the tests swap in a cheaper one)


def _new_hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


def _the_hasher() -> PasswordHasher:
    global _hasher
    if _hasher is None:
        _hasher = _new_hasher()
    return _hasher


# Each hash takes argon2's 64 MiB while it runs: 40 sign-ins at once (one Party's analyst
# signing in again and again) took 2.5 GB of the server, and each ran slower for the rest
# (audit of stalled clients, session 17). One fewer at once than there are cores (one on
# one core), so that sign-ins never hold every core from the searches (audit 27b); the rest
# wait their turn, which costs them little more time than sharing the cores did.
HASHING_SLOTS = max(1, (os.cpu_count() or 1) - 1)
_HASHING = threading.BoundedSemaphore(HASHING_SLOTS)


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps an unknown username as slow as a wrong password; made on
    first use, since hashing at import cost every command of the CLI 0.2 s."""
    with _HASHING:
        return _the_hasher().hash("servicetrail-timing-equaliser")


class WeakPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:  # it could be set, but never used to sign in
        raise WeakPassword(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters (the sign-in form's limit)"
        )
    if not password.strip():  # twelve spaces passed the length rule (audit 26c)
        raise WeakPassword("a password needs more than spaces")
    if any(unicodedata.category(c) == "Cc" for c in password):
        # a NUL or a control character: set here, no one could type it in the sign-in form
        raise WeakPassword("a password holds no control characters (a NUL, a tab, a line end)")
    with _HASHING:
        return _the_hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    against = stored_hash or _dummy_hash()
    try:
        with _HASHING:
            return _the_hasher().verify(against, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def rehashed(stored_hash: str, password: str) -> str | None:
    """The password hashed afresh when `stored_hash`, which it has just matched, was made
    under other argon2 parameters than the service's (an account from before they were
    raised), else None: verifying it cost another time than other accounts' (audit 50e)."""
    if not _the_hasher().check_needs_rehash(stored_hash):
        return None
    with _HASHING:
        return _the_hasher().hash(password)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
