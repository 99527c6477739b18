"""A PostgreSQL store whose reader role lost its grants (a restore onto a new server without
them, docs/operating.md, Backups): every read is refused in one sentence that
names `servicetrail db check`, a 503 on the API and the screen and exit 3 on the CLI, never a
500 or a traceback (audit 22d: a 500 and SQLAlchemy's traceback)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.limits import store_busy
from servicetrail.web.app import create_app
from tests import personas as P
from tests.conftest import Cli, reader_role_renamed_away

SAID = "`servicetrail db check` names what to repair"


@pytest.fixture
@P.starts_with_personas
def stripped(pg_engine):
    """The persona world, an API token, then the reader role's grants taken away."""
    P.load_personas(pg_engine)
    with pg_engine.begin() as conn:
        create_account(conn, "np", P.NORTHPOWER, "correct horse battery staple")
        token = create_token(conn, "np")
        role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
    return token


def test_the_api_answers_503_naming_db_check(pg_engine, stripped) -> None:
    with TestClient(create_app(pg_engine), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/records", headers={"Authorization": f"Bearer {stripped}"})
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
    assert SAID in answer.json()["message"] and "Traceback" not in answer.text
    assert "retry-after" not in answer.headers  # no retry mends it


def test_the_cli_exits_3_naming_db_check(pg_url, pg_engine, stripped, tmp_path) -> None:
    result = Cli(pg_url, tmp_path)("records", "--party", P.NORTHPOWER)
    assert result.exit_code == 3
    assert SAID in result.output and "Traceback" not in result.output


@P.starts_with_personas
def test_a_reader_role_that_does_not_exist_is_said_the_same_way(
    pg_url, pg_engine, tmp_path
) -> None:
    """The role itself missing: renamed away for the test (a role is the server's, and this
    test worker's server is its own), so that PostgreSQL says it does not exist."""
    P.load_personas(pg_engine)
    with reader_role_renamed_away(pg_engine):
        result = Cli(pg_url, tmp_path)("records", "--party", P.NORTHPOWER)
    assert result.exit_code == 3 and SAID in result.output


def test_a_privilege_refused_outside_a_read_is_not_taken_for_a_missing_grant(pg_engine) -> None:
    """Only a read as the reader role says "its grants are missing": any other refusal of a
    privilege is a bug, and stays the error it is (review 22e: every InsufficientPrivilege,
    an owner's ingest as another login included, was sent to db check)."""
    with pg_engine.connect() as conn, pytest.raises(DBAPIError) as raised:
        conn.execute(text("SELECT set_config('role', servicetrail_reader_role(), true)"))
        conn.execute(text("INSERT INTO party (party_id, name) VALUES ('X', 'x')"))
    assert store_busy(raised.value) is None
