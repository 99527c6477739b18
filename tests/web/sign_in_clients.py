"""Signing in to the screen from a client at an address of its own, as the sign-in throttle
counts them: the persona accounts, the app over them, a client per address."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from servicetrail.store.accounts import create_account
from servicetrail.web.app import create_app
from tests import personas as P
from tests.web.screen_sign_in import PASSWORD, form_token

ATTACKER, OFFICE, HOME = ("203.0.113.66", 40000), ("198.51.100.7", 40000), ("192.0.2.20", 40000)


@pytest.fixture
@P.starts_with_personas
def accounts(engine):
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, PASSWORD)
        create_account(conn, "lk.analyst", P.LOOKER, PASSWORD)


@pytest.fixture
def app(engine, accounts):
    return create_app(engine)


def browser(app, address: tuple[str, int]) -> TestClient:
    return TestClient(app, client=address)


def sign_out(client: TestClient) -> None:
    assert (
        client.post(
            "/logout",
            data={"csrf_token": form_token(client.get("/"))},
            follow_redirects=False,
        ).status_code
        == 303
    )
