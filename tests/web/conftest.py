"""Fixtures the web tests share: the app over the persona world (`world`, tests/conftest.py),
and API tokens.

A test module that needs another world (more records, other Parties) defines its own
`world`; `client` and `bearer` then serve that one. The browser modules share the store of
test_browser's story (`browser_store`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from tests import personas as P


@pytest.fixture
def client(engine: Engine, world: P.World) -> Iterator[TestClient]:
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def bearer(engine: Engine, world: P.World) -> Callable[[str], dict[str, str]]:
    """The Authorization header of a Party's API calls: an account and a token of its own,
    made the first time the Party is asked for."""

    @functools.cache
    def make(party: str) -> dict[str, str]:
        username = f"user_{party.lower()}"
        with engine.begin() as conn:
            create_account(conn, username, party, "correct horse battery staple")
            return {"Authorization": f"Bearer {create_token(conn, username)}"}

    return make


@pytest.fixture
def auditor(engine: Engine, world: P.World) -> dict[str, str]:
    """The Authorization header of an auditor's account (of no Party)."""
    with engine.begin() as conn:
        create_account(conn, "the.auditor", None, "correct horse battery staple")
        return {"Authorization": f"Bearer {create_token(conn, 'the.auditor')}"}


@pytest.fixture(scope="session")
def browser_store(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> tuple[Path, list[int]]:
    """test_browser's story, built once a worker with the command line (its file, and the ids
    of the records BRIGHT must not see): each browser module serves a copy of its own."""
    from tests.web.test_browser import build_store  # the story lives beside its tests

    return build_store(tmp_path_factory.mktemp("browser-store"), sqlite_template)
