"""Each process's connections to a PostgreSQL store carry its command and pid, which `db
upgrade` lists among those connected as it changes the schema: a `serve` left running is
named, not "a client" (audit 48d)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from servicetrail.store import engine as engine_module
from servicetrail.store.engine import make_engine
from tests.conftest import Cli


def shown_as(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT current_setting('application_name')")).scalar_one()
    finally:
        engine.dispose()


def test_a_commands_connections_carry_its_name_and_pid(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setattr(engine_module, "_PROCESS_NAME", ["servicetrail"])
    assert Cli(pg_url, tmp_path)("db", "check").exit_code == 0
    assert shown_as(pg_url) == f"servicetrail db check (pid {os.getpid()})"
    assert shown_as(f"{pg_url}?application_name=mine") == "mine"  # the URL's own wins
