"""Passwords (argon2id) and API tokens (random, stored only as a SHA-256 digest)."""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = (
    1024  # the sign-in form verifies nothing longer (argon2 hashes any length, slowly)
)
TOKEN_PREFIX = "st_"
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps an unknown username as slow as a wrong password; made on
    first use, since hashing at import cost every command of the CLI 0.2 s."""
    return _hasher.hash("servicetrail-timing-equaliser")


class WeakPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:  # it could be set, but never used to sign in
        raise WeakPassword(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters (the sign-in form's limit)"
        )
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
