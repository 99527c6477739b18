"""Shared fixtures: a fresh store built by the migrations, and the CLI run in-process."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from servicetrail.cli import main
from servicetrail.store.engine import open_store

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DUIS_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "duis" / "samples"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A new, empty store for each test."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = open_store(db_url)  # the schema comes from the Alembic migrations, never create_all
    yield built
    built.dispose()


class Cli:
    """Runs `servicetrail ...` in-process against the test's store."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        self.db_url = db_url
        self.cwd = cwd

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(main, ["--db", self.db_url, *map(str, args)], input=input, catch_exceptions=False)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    return Cli(db_url, tmp_path)
