"""What an audit sent that the API answered badly (SPEC section 5: bad parameters are 422 with
a message naming the parameter, never a 500), on both engines: PostgreSQL's text cannot hold
a NUL, so one that reached a statement was a 500 there."""

from __future__ import annotations

import re

import pytest

from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.watches_api import MAX_BODY_BYTES
from tests import personas as P

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def auditor(engine, world) -> dict[str, str]:
    with engine.begin() as conn:
        create_account(conn, "the.auditor", None, "correct horse battery staple")
        return {"Authorization": f"Bearer {create_token(conn, 'the.auditor')}"}


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/api/v1/logs/consistency?origin=%00&from=1&to=2", "origin"),
        ("/api/v1/logs/consistency?origin=servicetrail/sat/2025-03%00&from=1&to=19", "origin"),
        ("/api/v1/records?device_id=00-DB%00", "device_id"),
        ("/api/v1/records?srv=4.1.1&cursor=%00%00", "cursor"),
    ],
)
def test_a_nul_in_a_parameter_is_a_422_naming_it(client, bearer, path, parameter):
    answer = client.get(path, headers=bearer(P.NORTHPOWER))
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == parameter
    assert "NUL" in answer.json()["message"]


def test_an_auditors_party_filter_with_a_nul_is_a_422(client, auditor):
    answer = client.get("/api/v1/access-log?party_id=A%00B", headers=auditor)
    assert answer.status_code == 422 and answer.json()["parameter"] == "party_id"


def test_a_nul_in_a_username_is_a_failed_sign_in(client):
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={
            "username": "a\x00b",
            "password": "passwordpassword",
            "csrf_token": TOKEN.search(form.text).group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 401 and "Wrong username or password" in answer.text


@pytest.mark.parametrize(
    "path", ["/api/v1/records/", "/api/v1/watches/", "/api/v1/access-log/", "/api/v1/logs/"]
)
def test_a_trailing_slash_is_not_found_not_a_redirect_built_from_the_host(client, path):
    answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers


def test_a_watch_body_declared_too_large_is_refused_before_it_comes(client, bearer):
    answer = client.post(
        "/api/v1/watches",
        content=b'{"name": "x"}',
        headers={
            **bearer(P.NORTHPOWER),
            "Content-Type": "application/json",
            "Content-Length": str(MAX_BODY_BYTES + 1),
        },
    )
    assert answer.status_code == 422 and answer.json()["parameter"] == "body"
