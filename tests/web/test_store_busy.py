"""SQLite has one write lock, and every read writes its access-log entry (SPEC section 8)
before it answers. When another writer holds the lock past the busy timeout, the read is
answered 503 with Retry-After, and nothing is sent that the access log does not record;
never a 500. So is any other write that waits past the timeout."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store import engine as store_engine
from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
from tests import personas as P
from tests.web.screen import personas_with, signed_in


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)  # the store's 10 s, shortened
    engine = open_store(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def write_lock_held(store: Engine) -> Iterator[None]:
    other = sqlite3.connect(store.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.rollback()
    other.close()


def test_a_read_whose_entry_cannot_be_written_is_answered_503_not_500(store, request) -> None:
    personas_with(store, {}, (P.WIRESCO,))
    with store.begin() as conn:
        create_account(conn, "api_wiresco", P.WIRESCO, "correct horse battery staple")
        bearer = {"Authorization": f"Bearer {create_token(conn, 'api_wiresco')}"}
    screen = signed_in(store, P.WIRESCO)
    # raise_server_exceptions: an answer the server also re-raised (a traceback) fails the test
    api = TestClient(create_app(store), raise_server_exceptions=True)
    paths = (f"/api/v1/records?device_id={P.ESME_1}", "/api/v1/records?srv=4.1.1&srv=4.1.1")
    assert all(api.get(path, headers=bearer).status_code == 200 for path in paths)

    request.getfixturevalue("write_lock_held")
    for path in paths:  # the hot path's answer, and the FastAPI route's
        answer = api.get(path, headers=bearer)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.json()["error"] == "busy"
        assert answer.headers["Retry-After"] == "1"
    page = screen.get(f"/devices/{P.ESME_1}")
    assert page.status_code == 503
    assert "busy with another write" in page.text
    # a write of its own (SQLAlchemy's error, not the access writer's)
    made = api.post("/api/v1/watches", json={"name": "all"}, headers=bearer)
    assert made.status_code == 503, made.text
    assert made.json()["error"] == "busy"
