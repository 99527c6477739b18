"""Each PostgreSQL store reads as a reader role of its own (migration 0019): every store on a
server shared servicetrail_reader, and the owner of any other store, a member of it by its
own build, could take it in this store's database and read every Party's records (audit 29a)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail.store import migrate
from servicetrail.store.engine import make_engine, open_store
from servicetrail.store.migrate import schema_differences
from servicetrail.store.queries import iter_search, viewer_for
from servicetrail.domain.search import Search
from tests import personas as P
from tests.conftest import Cli

LEGACY = "servicetrail_reader"
TRAIL = ("sat_record", "sat_payload", "sat_visibility", "access_log")


def as_login(url: str, login: str) -> str:
    return url.replace("://postgres@", f"://{login}@", 1)


@pytest.fixture
@P.starts_with_personas
def stored(pg_url: str, tmp_path) -> Iterator[Engine]:
    """The persona world, with an access-log entry of each Party's."""
    engine = open_store(pg_url)
    for party in P.load_personas(engine).parties:
        assert Cli(pg_url, tmp_path)("records", "--party", party).exit_code == 0
    yield engine
    engine.dispose()


@pytest.fixture
def other_owner(pg_server) -> Iterator[str]:
    """Another store's owner on the same server: a login role of its own (which may make
    roles, as a store's build does) and a store it built."""
    login = f"other_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE ROLE {login} LOGIN CREATEROLE")
    url = pg_server.new_database()
    pg_server.admin(f"ALTER DATABASE {url.rsplit('/', 1)[1]} OWNER TO {login}")
    open_store(as_login(url, login)).dispose()
    yield login
    pg_server.drop_database(url)
    pg_server.admin(f"DROP ROLE {login}")


def test_another_stores_owner_reads_nothing_here_through_any_role_it_holds(
    stored: Engine, pg_url: str, other_owner: str
) -> None:
    with stored.connect() as conn:
        parties = conn.execute(text("SELECT party_id FROM party")).scalars().all()
        users = ",".join(conn.execute(text("SELECT user_id FROM dcc_user")).scalars())
        assert all(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TRAIL)
    with psycopg.connect(as_login(pg_url, other_owner), autocommit=True) as conn:
        held = conn.execute(
            "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER') "
            "AND rolname <> current_user"
        )
        roles = {LEGACY, *(name for (name,) in held)}
        for role in sorted(roles):
            for party in parties:
                for table in TRAIL:
                    assert _rows_seen(conn, role, party, users, table) == 0, (role, table)
    assert len(roles) > 1  # its own store's reader role too, whatever it is named


def _rows_seen(conn: psycopg.Connection, role: str, party: str, users: str, table: str) -> int:
    """How many rows of `table` `role` reads as `party` with every user named; none when it
    is refused."""
    try:
        with conn.transaction():
            conn.execute(
                "SELECT set_config('role', %s, true), set_config('servicetrail.party_id', %s, "
                "true), set_config('servicetrail.user_ids', %s, true)",
                (role, party, users),
            )
            found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return 0
    assert found is not None
    return int(found[0])


def _every_partys_reads(engine: Engine, role_sql: str) -> dict[tuple[str, str], list[str]]:
    """Each Party's rows of every table its role reads, as row-level security lets them."""
    tables = (*TRAIL, "responsibility", "watch_event", "party", "dcc_user", "device")
    seen = {}
    with engine.connect() as conn:
        parties = conn.execute(text("SELECT party_id FROM party ORDER BY 1")).scalars().all()
        viewers = {party: viewer_for(conn, party) for party in parties}
        conn.commit()
        for party, viewer in viewers.items():
            assert viewer is not None
            with conn.begin():
                conn.execute(
                    text(
                        f"SELECT set_config('role', {role_sql}, true), "
                        "set_config('servicetrail.party_id', :p, true), "
                        "set_config('servicetrail.user_ids', :u, true)"
                    ),
                    {"p": party, "u": ",".join(sorted(viewer.user_ids))},
                )
                for table in tables:
                    rows = conn.execute(text(f"SELECT t::text FROM {table} t ORDER BY 1"))
                    seen[party, table] = list(rows.scalars())
                watches = conn.execute(text("SELECT id::text FROM watch ORDER BY 1"))
                seen[party, "watch"] = list(watches.scalars())
    return seen


@P.starts_with_personas  # its store cloned from the template that holds them
def test_an_upgrade_to_0019_keeps_every_partys_reads(pg_url: str, tmp_path) -> None:
    """The store is cloned from the worker's template, whose reader role it shares: 0019's
    downgrade keeps that role for the other clones, and its upgrade gives the store its own."""
    built = open_store(pg_url)
    for party in P.load_personas(built).parties:
        assert Cli(pg_url, tmp_path)("records", "--party", party).exit_code == 0
    built.dispose()
    engine = make_engine(pg_url)
    command.downgrade(migrate._config(engine), "0018")
    before = _every_partys_reads(engine, f"'{LEGACY}'")
    command.upgrade(migrate._config(engine), "head")  # 0019, and those after it
    engine.dispose()  # as a server is restarted after `db upgrade`
    upgraded = make_engine(pg_url)
    after = _every_partys_reads(upgraded, "servicetrail_reader_role()")
    assert after == before
    assert all(before[party, "access_log"] for party, _table in before)
    assert schema_differences(upgraded) == []
    with upgraded.connect() as conn:  # and the app reads as it
        for party in {party for party, _table in before}:
            viewer = viewer_for(conn, party)
            assert viewer is not None
            found = [str(item["id"]) for item in iter_search(conn, viewer, Search())]
            assert len(found) == len(before[party, "sat_record"]), party
    upgraded.dispose()


def test_db_check_names_another_member_of_the_reader_role_and_the_shared_roles_grants(
    pg_engine: Engine, pg_server
) -> None:
    extra = f"extra_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE ROLE {extra} NOLOGIN")
    try:
        with pg_engine.begin() as conn:
            role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
            conn.execute(text(f"GRANT {role} TO {extra}"))
            conn.execute(text(f"GRANT SELECT ON sat_payload TO {LEGACY}"))
        problems = schema_differences(pg_engine)
        assert any(p.startswith(f"the role {extra} is a member of the store's") for p in problems)
        assert any(
            p.startswith(f"the shared role {LEGACY} still holds privileges on sat_payload")
            for p in problems
        ), problems
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text(f"REVOKE SELECT ON sat_payload FROM {LEGACY}"))
        pg_server.admin(f"DROP ROLE {extra}")


@P.starts_with_personas
def test_the_reader_role_is_asked_once_per_connection(pg_engine: Engine) -> None:
    """The device search is a hot path: the role's name costs it no round trip."""
    P.load_personas(pg_engine)
    with pg_engine.connect() as conn:
        viewer = viewer_for(conn, P.NORTHPOWER)
        assert viewer is not None
        first = list(iter_search(conn, viewer, Search()))
        conn.commit()
        with pg_engine.begin() as owner:  # a lookup now would fail
            owner.execute(text("ALTER FUNCTION servicetrail_reader_role() RENAME TO gone"))
        try:
            assert list(iter_search(conn, viewer, Search())) == first
        finally:
            conn.rollback()
            with pg_engine.begin() as owner:
                owner.execute(text("ALTER FUNCTION gone() RENAME TO servicetrail_reader_role"))


def test_a_store_built_now_leaves_its_owner_outside_the_shared_role(
    pg_server, other_owner: str
) -> None:
    """Audit 29e: migration 0001 made a new store's owner a member of the shared role, and
    nothing took it back: through it, that owner read every store on the server still
    before 0019."""
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        held = conn.execute(
            "SELECT 1 FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = %s AND m.rolname = %s",
            (LEGACY, other_owner),
        ).fetchall()
    assert held == []


def test_db_check_names_a_lost_grant_and_an_owner_left_in_the_shared_role(
    pg_engine: Engine, pg_server
) -> None:
    """Audit 29d: a revoked grant on sat_payload failed every read while db check said the
    schema matched (it looked at one table's grant only)."""
    with pg_engine.begin() as conn:
        role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
        conn.execute(text(f"REVOKE SELECT ON sat_payload, device FROM {role}"))
        conn.execute(text(f"GRANT {LEGACY} TO CURRENT_USER"))
    try:
        problems = schema_differences(pg_engine)
        # device has no policy, and its lost grant failed every read too (review 29f)
        assert any(
            p.startswith(f"the role {role} has lost its grants on device, sat_payload")
            for p in problems
        ), problems
        assert any(
            p.startswith(f"the store's owner is a member of the shared role {LEGACY}")
            for p in problems
        ), problems
        assert not any("watch" in p for p in problems), problems  # its grant is by column
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text(f"GRANT SELECT ON sat_payload, device TO {role}"))
            conn.execute(text(f"REVOKE {LEGACY} FROM CURRENT_USER"))
    assert schema_differences(pg_engine) == []


def test_a_copy_of_a_store_on_its_server_is_given_a_reader_role_of_its_own(
    stored: Engine, pg_url: str, pg_server, tmp_path
) -> None:
    """Audit 29d: a store restored or cloned beside the one it copies reads as that store's
    role, and db check told its owner to take that role. `db new-reader-role` gives the copy
    its own; the original keeps reading as before, and its role reads nothing of the copy."""
    party = P.NORTHPOWER
    before = Cli(pg_url, tmp_path)("records", "--party", party).stdout
    with stored.connect() as conn:
        old = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
    stored.dispose()
    original = pg_url.rsplit("/", 1)[1]
    pg_server.admin(  # the in-process CLI's pooled connections: a template must have none
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{original}' AND pid <> pg_backend_pid()"
    )
    copy = pg_server.new_database(template=original)
    try:
        made = Cli(copy, tmp_path)("db", "new-reader-role")
        assert made.exit_code == 0, made.output
        copied = make_engine(copy)
        with copied.connect() as conn:
            new = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
            assert new != old and f"now reads as {new}" in made.stdout
            assert not conn.execute(
                text("SELECT has_table_privilege(:r, 'sat_payload', 'SELECT')"), {"r": old}
            ).scalar()
        copied.dispose()
        opened = open_store(copy)
        assert schema_differences(opened) == []
        opened.dispose()  # else its connection was the collector's (session 59)
        assert Cli(copy, tmp_path)("records", "--party", party).stdout == before
        assert Cli(pg_url, tmp_path)("records", "--party", party).stdout == before
    finally:
        pg_server.drop_database(copy)


def test_db_check_of_a_copy_by_another_owner_says_to_give_it_a_role_of_its_own(
    pg_engine: Engine, pg_server
) -> None:
    """Review 29f: on a copy restored by another owner, db check said to GRANT the original's
    role (which then read the original whole) and to REVOKE it from the original's owner
    (which stopped the original's reads). This test's store is cloned from a template, so
    its role is the template's too; its new owner is not a member."""
    copier = f"copier_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE ROLE {copier}")
    try:
        with pg_engine.connect() as conn:
            role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
            conn.execute(text(f"SET ROLE {copier}"))
            problems = migrate._row_security_problems(conn)
            conn.rollback()
        assert [p for p in problems if "new-reader-role" in p] == problems[:1], problems
        assert "not a GRANT or REVOKE" in problems[0]
        assert not any("(GRANT it" in p or f"REVOKE {role}" in p for p in problems), problems
    finally:
        pg_server.admin(f"DROP ROLE {copier}")


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_db_check_tells_an_owner_that_lost_the_reader_role_to_grant_it(pg_server) -> None:
    """mg1: an owner (no superuser) that may not take its own store's reader role, which no
    other database uses, is told to GRANT it: not that its store is a copy of another's,
    whose remedy (db new-reader-role) does not apply."""
    login = f"owner_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE ROLE {login} LOGIN CREATEROLE")
    url = pg_server.new_database()
    pg_server.admin(f"ALTER DATABASE {url.rsplit('/', 1)[1]} OWNER TO {login}")
    engine = open_store(as_login(url, login))
    try:
        with engine.connect() as conn:
            role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
        pg_server.admin(f"REVOKE {role} FROM {login}")
        problems = schema_differences(engine)
        assert f"the store's owner may not take the role {role} (GRANT it)" in problems, problems
        assert not any("new-reader-role" in p for p in problems), problems
    finally:
        engine.dispose()
        pg_server.drop_database(url)
        pg_server.admin(f"DROP ROLE {login}")


def test_an_owner_left_in_the_shared_role_by_0019s_first_text_is_taken_out(
    pg_server, other_owner: str
) -> None:
    """0019 as first committed left the owner a member of servicetrail_reader; upgraded by any
    later servicetrail, db check failed at once on it (REVOKE it) and nothing took it out."""
    url = pg_server.new_database()
    pg_server.admin(f"ALTER DATABASE {url.rsplit('/', 1)[1]} OWNER TO {other_owner}")
    engine = make_engine(as_login(url, other_owner))
    try:
        command.upgrade(migrate._config(engine), "0023")
        with engine.begin() as conn:  # as that text left it: granted by the owner's own build
            conn.execute(text(f"GRANT {LEGACY} TO CURRENT_USER"))
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
    finally:
        engine.dispose()
        pg_server.drop_database(url)
