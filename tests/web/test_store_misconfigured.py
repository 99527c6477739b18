"""A PostgreSQL store whose reader role lost its grants (a restore onto a new server without
them, README "Backups, restores and upgrades"): every read is refused in one sentence that
names `servicetrail db check`, a 503 on the API and the screen and exit 3 on the CLI, never a
500 or a traceback (audit 22d: a 500 and SQLAlchemy's traceback)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.limits import StoreMisconfigured, store_busy
from servicetrail.web.app import create_app
from tests import personas as P
from tests.conftest import Cli

SAID = "`servicetrail db check` names what to repair"


@pytest.fixture
def stripped(pg_engine):
    """The persona world, an API token, then the reader role's grants taken away."""
    P.load_personas(pg_engine)
    with pg_engine.begin() as conn:
        create_account(conn, "np", P.NORTHPOWER, "correct horse battery staple")
        token = create_token(conn, "np")
        conn.execute(text("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM servicetrail_reader"))
    return token


def test_the_api_answers_503_naming_db_check(pg_engine, stripped) -> None:
    with TestClient(create_app(pg_engine), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/records", headers={"Authorization": f"Bearer {stripped}"})
    assert answer.status_code == 503
    assert SAID in answer.json()["message"] and "Traceback" not in answer.text


def test_the_cli_exits_3_naming_db_check(pg_url, pg_engine, stripped, tmp_path) -> None:
    result = Cli(pg_url, tmp_path)("records", "--party", P.NORTHPOWER)
    assert result.exit_code == 3
    assert SAID in result.output and "Traceback" not in result.output


def test_a_role_that_does_not_exist_is_said_the_same_way(pg_engine) -> None:
    """What a read meets when the role itself is missing: PostgreSQL's own error for it (a
    role is the server's, so the test asks for one that no server has)."""
    with pg_engine.connect() as conn, pytest.raises(DBAPIError) as raised:
        conn.execute(text("SELECT set_config('role', 'servicetrail_no_such_role', true)"))
    assert isinstance(store_busy(raised.value), StoreMisconfigured)
