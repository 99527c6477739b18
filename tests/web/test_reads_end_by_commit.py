"""Every read the API and the screen answer ends its transaction by COMMIT, never ROLLBACK.

psycopg forgets every statement it prepared on a connection when it sees a ROLLBACK, so one
read that rolled back made the next search on that pooled connection be parsed and planned
afresh over every monthly partition (11 ms at 10M records, BENCHMARKS.md). This counts the
ROLLBACKs SQLAlchemy issues while a Party uses every page and endpoint it reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import reading
from servicetrail.store.merkle_log import seal_store
from servicetrail.web.app import create_app
from tests import personas as P
from tests.web.screen import personas_with, signed_in


@pytest.fixture
@P.starts_with_personas
def world(engine: Engine) -> P.World:
    return personas_with(engine, {}, (P.WIRESCO,))


@pytest.fixture
def rollbacks(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, *_args) -> None:
        seen.append("ROLLBACK")

    event.listen(engine, "rollback", count)
    yield seen
    event.remove(engine, "rollback", count)


def test_no_read_of_the_api_or_the_screen_rolls_back(engine, world, rollbacks) -> None:
    seal_store(engine)
    with engine.begin() as conn:
        create_account(conn, "api_wiresco", P.WIRESCO, "correct horse battery staple")
        bearer = {"Authorization": f"Bearer {create_token(conn, 'api_wiresco')}"}
    screen = signed_in(engine, P.WIRESCO)
    api = TestClient(create_app(engine), raise_server_exceptions=False)
    record = api.get("/api/v1/records", headers=bearer).json()["items"][0]["id"]
    watch = api.post("/api/v1/watches", json={"name": "all"}, headers=bearer).json()["id"]
    rollbacks.clear()

    for path in (
        "/api/v1/records",
        f"/api/v1/records?device_id={P.ESME_1}",
        f"/api/v1/records/{record}",
        f"/api/v1/records/{record}/proof",
        f"/api/v1/records/{record}/why",
        f"/api/v1/records/{record}/triggers",
        "/api/v1/logs",
        "/api/v1/watches",
        f"/api/v1/watches/{watch}/events",
        "/api/v1/reports/own.csv?from=2025-01-01T00:00:00Z&to=2025-12-01T00:00:00Z",
    ):
        assert api.get(path, headers=bearer).status_code == 200, path
    for path in (
        "/",
        f"/records/{record}",
        f"/records/{record}/proof.json",
        f"/devices/{P.ESME_1}",
        "/watches",
        "/verify",
    ):
        assert screen.get(path).status_code == 200, path

    assert rollbacks == []


def test_a_read_that_raises_still_rolls_back(engine, rollbacks) -> None:
    with pytest.raises(LookupError), reading(engine) as conn:
        conn.execute(text("SELECT 1"))
        raise LookupError("the read failed half way")
    assert rollbacks == ["ROLLBACK"]
