"""Audit 50e: an account whose password was stored under older argon2 parameters verified at
another cost than the others, so the time of a sign-in told such accounts apart. Its first
sign-in stores the password again under the service's parameters."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import CHEAPEST
from sqlalchemy import select

from servicetrail import security
from servicetrail.store.accounts import create_account
from servicetrail.store.engine import open_store
from servicetrail.store.schema import web_session
from servicetrail.web.app import create_app
from tests import personas as P
from tests.web.screen_sign_in import PASSWORD, sign_in
from tests.web.sign_in_clients import browser
from tests.web.password_hashes import RAISED, hash_of

OFFICE = ("198.51.100.7", 40000)


@P.starts_with_personas
def test_a_password_stored_under_older_parameters_is_stored_again_at_sign_in(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite alone: the store's part, the same statement on both engines, is
    tests/store/test_accounts_rehash.py's."""
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, PASSWORD)
    older = hash_of(engine, "np.analyst")
    monkeypatch.setattr(security, "_hasher", PasswordHasher.from_parameters(RAISED))
    app = create_app(engine)
    client = browser(app, OFFICE)
    assert sign_in(client, "np.analyst").status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 200  # its session holds
    again = hash_of(engine, "np.analyst")
    assert extract_parameters(older) == CHEAPEST and extract_parameters(again) == RAISED
    assert sign_in(browser(app, OFFICE), "np.analyst").status_code == 303
    assert hash_of(engine, "np.analyst") == again  # stored once, not at every sign-in
    with engine.connect() as conn:  # the first browser's session was not ended by it
        assert len(conn.execute(select(web_session.c.username)).all()) == 2
    engine.dispose()
