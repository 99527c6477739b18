"""Stores at an older schema revision, for the tests of a migration over what an older
servicetrail left: each revision's store is built by the migrations once per test worker and
engine, and each test gets a copy (SQLite: the file; PostgreSQL: CREATE DATABASE ... TEMPLATE).
Every test built its own from empty: 0.1-0.3 s of CPU a store (the server's included), a few
seconds of the suite's (session 60 measured it; the upgrade to the head that most of these
tests then make, their point, is most of their cost).

The fixtures are imported by the conftest or test module of the tests that use them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from devsupport.pg_server import PgServer
from servicetrail.store import migrate
from servicetrail.store.engine import current_revision, make_engine
from tests.conftest import ENGINES, sqlite_store_from

# every revision, oldest first: a template is built from the newest one built below it
REVISIONS = [
    r.revision for r in reversed(list(ScriptDirectory(str(migrate.MIGRATIONS)).walk_revisions()))
]


def before_the_head() -> str:
    """The revision before the head: a store as the previous servicetrail left it."""
    return REVISIONS[-2]


class RevisionTemplates:
    """The templates of one test worker, each built when first asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sqlite_files: dict[str, Path] = {}
        self.pg_databases: dict[str, str] = {}  # revision: the template's name

    def sqlite(self, revision: str, folder: Path, name: str = "older.db") -> str:
        """The URL of a new SQLite store in `folder` at `revision`."""
        if revision not in self.sqlite_files:
            below = self._newest_below(revision, self.sqlite_files)
            path = self.folder / f"{revision}.db"
            if below is not None:
                sqlite_store_from(self.sqlite_files[below], self.folder, path.name)
            self._migrated(f"sqlite:///{path}", revision)
            self.sqlite_files[revision] = path
        return sqlite_store_from(self.sqlite_files[revision], folder, name)

    def postgresql(self, revision: str, server: PgServer) -> str:
        """The URL of a new database on `server` (the worker's) at `revision`, dropped by
        whoever asked."""
        if revision not in self.pg_databases:
            below = self._newest_below(revision, self.pg_databases)
            url = server.new_database(template=below and self.pg_databases[below])
            self._migrated(url, revision)
            self.pg_databases[revision] = url.rsplit("/", 1)[1]
        return server.new_database(template=self.pg_databases[revision])

    @staticmethod
    def _newest_below(revision: str, built: dict[str, object]) -> str | None:
        older = [r for r in REVISIONS[: REVISIONS.index(revision)] if r in built]
        return older[-1] if older else None

    @staticmethod
    def _migrated(url: str, revision: str) -> None:
        engine = make_engine(url)
        try:
            command.upgrade(migrate._config(engine), revision)
            assert current_revision(engine) == revision
            if engine.dialect.name == "sqlite":  # all of it in the file that is copied
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()  # PostgreSQL copies no template that a session is connected to


@pytest.fixture(scope="session")
def revision_templates(tmp_path_factory: pytest.TempPathFactory) -> RevisionTemplates:
    return RevisionTemplates(tmp_path_factory.mktemp("revision-templates"))


@pytest.fixture
def pg_at_revision(
    revision_templates: RevisionTemplates, pg_server: PgServer
) -> Iterator[Callable[[str], str]]:
    """`pg_at_revision(revision)`: the URL of a new PostgreSQL store at `revision`, dropped
    after the test."""
    made: list[str] = []

    def at(revision: str) -> str:
        made.append(revision_templates.postgresql(revision, pg_server))
        return made[-1]

    yield at
    for url in made:
        pg_server.drop_database(url)


@pytest.fixture(params=ENGINES)
def db_at_revision(
    request: pytest.FixtureRequest, revision_templates: RevisionTemplates, tmp_path: Path
) -> Callable[[str], str]:
    """`db_at_revision(revision)`: the URL of a new store at `revision`, on each engine."""
    if request.param == "sqlite":
        return lambda revision: revision_templates.sqlite(revision, tmp_path)
    return request.getfixturevalue("pg_at_revision")


def store_at(db_url: str, when: datetime) -> Engine:
    """The store at `db_url`, at an older revision as that servicetrail left it, with
    (PostgreSQL) the partitions of `when`'s month: for rows a test writes by hand at that
    schema."""
    from servicetrail.store.partitions import ensure_months

    engine = make_engine(db_url)
    if engine.dialect.name != "sqlite":
        ensure_months(engine, [when])
    return engine


@contextmanager
def todays_writers(engine: Engine) -> Iterator[None]:
    """Records written or logs sealed by today's code on a store older than 0031: they list
    the logs appended to (log_tables.log_unsealed), a table such a store lacks. Theirs for
    these writes alone, then gone as before, and 0031 fills it from the logs stored. (A store
    at 0031 or later has its own, left as it is.)"""
    from servicetrail.store.log_tables import log_unsealed

    with engine.begin() as conn:
        made = not inspect(conn).has_table(log_unsealed.name)
        if made:
            log_unsealed.create(conn)
    yield
    if made:
        with engine.begin() as conn:
            log_unsealed.drop(conn)
