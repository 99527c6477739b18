"""A PostgreSQL store whose database does not exist yet is made, as an SQLite file is (SPEC
section 5: "a command on a store that does not exist yet ... creates it"; audit 46b)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from servicetrail.store.engine import StoreError, current_revision, open_store
from servicetrail.store.limits import StoreAway
from servicetrail.store.schema import SCHEMA_HEAD

BINARY = Path(sys.executable).with_name("servicetrail")
SHARED_ROLE = "servicetrail_reader"  # of stores before migration 0019; 0001 makes it


def _exists(pg_server, name: str) -> bool:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


@pytest.fixture
def missing_name(pg_server):
    name = "t_" + uuid.uuid4().hex[:12]
    assert not _exists(pg_server, name)
    yield name
    pg_server.drop_database(pg_server.url(name))


@pytest.fixture
def as_role(pg_server):
    """`as_role(name, attributes)`: a login role of the server made with those attributes,
    and a URL of the server rewritten to connect as it; dropped after the test, with any
    database it came to own."""
    made: list[str] = []

    def make(name: str, attributes: str):
        pg_server.admin(f"DROP ROLE IF EXISTS {name}")
        pg_server.admin(f"CREATE ROLE {name} LOGIN {attributes}")
        made.append(name)
        return lambda url: url.replace("postgres@", f"{name}@", 1)

    yield make
    for name in made:
        with psycopg.connect(pg_server.url(), autocommit=True) as conn:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE datdba = to_regrole(%s)", (name,)
            ).fetchall()
        for (database,) in owned:
            pg_server.admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        pg_server.admin(f"DROP ROLE {name}")


@contextlib.contextmanager
def shared_role_made_meanwhile(pg_server) -> Iterator[psycopg.Connection]:
    """Another store's build (migration 0001) making the shared reader role, not committed
    yet, on a server where it did not exist (the test server's role renamed away meanwhile):
    what two new stores built at once on a server new to servicetrail meet. Committing the
    connection yielded ends that build."""
    away = f"st_reader_away_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url()) as conn:
        had = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SHARED_ROLE,)).fetchone()
    if had:
        pg_server.admin(f"ALTER ROLE {SHARED_ROLE} RENAME TO {away}")
    other = psycopg.connect(pg_server.url())
    try:
        other.execute(f"CREATE ROLE {SHARED_ROLE} NOLOGIN")
        yield other
    finally:
        other.close()
        if had:
            pg_server.admin(f"ALTER ROLE {SHARED_ROLE} RENAME TO {away}_made")
            pg_server.admin(f"ALTER ROLE {away} RENAME TO {SHARED_ROLE}")


def _waits_for_a_lock(pg_server) -> bool:
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        for _ in range(600):
            if conn.execute("SELECT 1 FROM pg_locks WHERE NOT granted").fetchone():
                return True
            time.sleep(0.05)
    return False


def test_a_missing_database_is_made_and_built_at_the_current_schema(pg_server, missing_name):
    """Built too while another store's build makes the shared reader role: its CREATE ROLE
    waited for that build, then failed as a unique_violation, and so did the command (the
    contract check's two stores made at once on a new server, session 58f)."""
    # the role's session ends first, should the test fail: the build waits on it
    with ThreadPoolExecutor(1) as pool, shared_role_made_meanwhile(pg_server) as other:
        building = pool.submit(open_store, pg_server.url(missing_name))
        assert _waits_for_a_lock(pg_server)
        other.commit()
        store = building.result(timeout=120)
    try:
        assert _exists(pg_server, missing_name) and current_revision(store) == SCHEMA_HEAD
    finally:
        store.dispose()


def test_two_commands_making_the_same_database_at_once_both_open_it(pg_server, missing_name):
    with ThreadPoolExecutor(2) as pool:
        stores = list(pool.map(lambda _: open_store(pg_server.url(missing_name)), range(2)))
    try:
        assert all(current_revision(store) == SCHEMA_HEAD for store in stores)
    finally:
        for store in stores:
            store.dispose()


def test_a_role_that_may_not_create_it_is_told_so_by_name(pg_server, missing_name, as_role):
    url = as_role("st_no_createdb", "NOCREATEDB")(pg_server.url(missing_name))
    with pytest.raises(StoreError) as refused:
        open_store(url)
    said = str(refused.value)
    assert f"the database '{missing_name}' does not exist" in said
    assert "'st_no_createdb' could not create it" in said
    assert not _exists(pg_server, missing_name)


def test_a_server_that_does_not_answer_is_still_that_error(pg_server):
    """Nothing to make when no database of the server answers: a wait, with the connection's
    own error."""
    with pytest.raises(StoreAway, match="does not answer.*Connection refused"):
        open_store("postgresql://postgres@127.0.0.1:1/t_nowhere")


@pytest.mark.parametrize("command", [("db", "check"), ("records", "--party", "NOBODY")])
def test_a_command_on_a_database_not_made_yet_makes_it(pg_server, missing_name, command):
    """`db check` first asks the store's revision without building it: it said "cannot open
    the store ... does not exist" where every other command made it."""
    ran = subprocess.run(
        [str(BINARY), "--db", pg_server.url(missing_name), *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert _exists(pg_server, missing_name) and "does not exist" not in ran.stderr, ran.stderr
    if command[0] == "db":
        assert ran.returncode == 0 and "schema matches the migrations" in ran.stdout
    else:  # built, and empty: the Party is unknown in it
        assert (
            ran.returncode == 2
            and "unknown party 'NOBODY' in the store postgresql://" in ran.stderr
        )


def test_a_name_holding_a_percent_sign_is_made_as_named(pg_server):
    """SQLAlchemy doubles the '%' of a statement it runs without parameters, for a driver that
    then runs it as written: `--db .../t_50%off` made a database 't_50%%off', then failed to
    open 't_50%off' ("does not exist"), and every later run did the same."""
    name = f"t_{uuid.uuid4().hex[:8]}50%off"
    try:
        store = open_store(pg_server.url(name))
        try:
            assert _exists(pg_server, name) and current_revision(store) == SCHEMA_HEAD
        finally:
            store.dispose()
    finally:
        for made in (name, name.replace("%", "%%")):
            pg_server.admin(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')


def test_a_name_longer_than_postgresql_keeps_is_refused_not_made_shorter(pg_server):
    """PostgreSQL keeps 63 bytes of a name: it made the database under its first 63 bytes
    cut at a character, and a connection cuts at the byte, so a longer name of accented
    letters made a database no command could open ("does not exist"); a longer name of
    ASCII opened the database of every name that began with the same 63 bytes."""
    name = f"t_{uuid.uuid4().hex[:12]}" + "é" * 30  # 74 bytes
    cut = name.encode()[:63].decode(errors="ignore")  # what the server would have made
    try:
        with pytest.raises(StoreError) as refused:
            open_store(pg_server.url(name))
        assert "at most 63 bytes" in str(refused.value) and not _exists(pg_server, cut)
    finally:
        pg_server.admin(f'DROP DATABASE IF EXISTS "{cut}" WITH (FORCE)')


def test_a_role_that_may_make_the_database_but_not_the_reader_role_is_told_what_it_needs(
    pg_server, missing_name, as_role
):
    """It said "permission denied to create role" and two lines of CONTEXT (review 46k)."""
    url = as_role("st_createdb_only", "CREATEDB")(pg_server.url(missing_name))
    with pytest.raises(StoreError) as refused:
        open_store(url)
    said = str(refused.value)
    assert "and roles (CREATEROLE" in said and "\n" not in said


def test_a_role_that_may_make_roles_but_not_tables_is_told_of_the_tables_too(pg_server, as_role):
    """Audit 46l: a role with CREATEROLE, in a database another role owns, was told that it
    needed CREATEROLE, and the server's "permission denied for schema public" alone said
    what it lacked."""
    connect_as = as_role("st_createrole_only", "CREATEROLE")
    url = pg_server.new_database()
    try:
        with pytest.raises(StoreError) as refused:
            open_store(connect_as(url))
        said = str(refused.value)
        assert "may create its tables (the database's owner, or one granted CREATE on" in said
        assert "permission denied for schema public" in said
    finally:
        pg_server.drop_database(url)
