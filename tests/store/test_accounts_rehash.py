"""store.accounts.kept_current: a password stored under older argon2 parameters is stored
again at sign-in (tests/web/test_auth.py), never over one changed meanwhile."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update

from servicetrail import security
from servicetrail.store.accounts import create_account, kept_current, stored_password
from servicetrail.store.schema import account
from tests.web.password_hashes import RAISED, hash_of
from tests.web.screen_sign_in import PASSWORD


def test_a_password_changed_meanwhile_is_kept(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign-in that matched the old password stores nothing over a new one (and then
    makes no session: store.sessions.create_session)."""
    with engine.begin() as conn:
        create_account(conn, "np.analyst", None, PASSWORD)
        stored = stored_password(conn, "np.analyst")
        conn.execute(update(account).values(password_hash="$argon2id$changed"))
    assert stored is not None
    monkeypatch.setattr(security, "_hasher", PasswordHasher.from_parameters(RAISED))
    assert kept_current(engine, stored, PASSWORD) == stored
    assert hash_of(engine, "np.analyst") == "$argon2id$changed"
