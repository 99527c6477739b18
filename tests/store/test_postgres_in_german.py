"""A PostgreSQL server whose messages are not in English (`lc_messages`, a DBA's choice or a
server's locale): the store decides what happened by the error's SQLSTATE and its own
names, never by the server's words. A search past its limit was a 503 "did not answer in
time" instead of 422 "narrow your search", because "statement timeout" was looked for in
the message (session 32's finding)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from devsupport.pg_server import PgServer
from servicetrail.store.engine import open_store
from servicetrail.store.limits import SearchTooBroad, StoreBusy, store_busy
from servicetrail.store.read_transaction import time_limit
from tests import personas as P
from tests.conftest import Cli, reader_role_renamed_away
from tests.store.cancelled import cancel_once


@pytest.fixture(scope="module")
def german_server() -> Iterator[PgServer]:
    server = PgServer(in_memory=True, messages="de_DE.UTF-8").start()
    yield server
    server.stop()


@pytest.fixture
def german_store(german_server: PgServer) -> Iterator[tuple[str, Engine]]:
    url = german_server.new_database()
    engine = open_store(url)
    with engine.connect() as conn, pytest.raises(DBAPIError) as raised:
        conn.execute(text("SELECT * FROM no_such_table"))
    # the server does speak German: without it every test here would prove nothing
    assert "existiert nicht" in str(raised.value.orig), raised.value.orig
    yield url, engine
    engine.dispose()
    german_server.drop_database(url)


def test_a_read_past_its_limit_is_too_broad_in_any_language(german_store) -> None:
    _, engine = german_store
    with engine.connect() as conn, pytest.raises(SearchTooBroad, match="narrow"):
        with time_limit(conn, seconds=0.2):
            conn.execute(text("SELECT pg_sleep(3)"))


def test_a_read_cancelled_before_its_limit_is_not_taken_for_too_broad(german_store) -> None:
    """A cancel is the same SQLSTATE as the limit: one sooner than the limit is someone
    else's (an administrator's pg_cancel_backend), and the store answers for it."""
    _, engine = german_store
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        canceller = cancel_once(engine, pid, "state = 'active' AND query LIKE 'SELECT pg_sleep%'")
        started = time.monotonic()
        with pytest.raises(DBAPIError) as raised:
            with time_limit(conn, seconds=20):
                conn.execute(text("SELECT pg_sleep(10)"))
        canceller.join()
    assert time.monotonic() - started < 9  # the cancel: not pg_sleep's end, nor the limit's
    assert isinstance(store_busy(raised.value), StoreBusy)


def test_a_missing_reader_role_is_named_in_any_language(german_store, tmp_path: Path) -> None:
    """PostgreSQL says `Rolle »servicetrail_reader_...« existiert nicht`: the CLI still says
    what to repair (exit 3), where it printed an error it did not know."""
    url, engine = german_store
    P.load_personas(engine)
    with reader_role_renamed_away(engine):
        result = Cli(url, tmp_path)("records", "--party", P.NORTHPOWER)
    assert result.exit_code == 3, result.output
    assert "`servicetrail db check` names what to repair" in result.output
