"""The schema comes from the Alembic migrations, and the code's tables mirror it exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from servicetrail.store import migrate
from servicetrail.store.engine import StoreError, current_revision, make_engine, open_store
from servicetrail.store.migrate import head_revision, schema_differences
from servicetrail.store.schema import SCHEMA_HEAD
from tests.conftest import Cli
from tests.personas import (
    load_personas,
    starts_with_personas,
    ESME_1,
    LK_OU,
    NORTHPOWER,
    SOUTHENERGY,
    SUNEXPORT,
    t,
)
from tests.store.revisions import before_the_head, store_at, todays_writers
from tests.intruder import intrude
from tests.store.log_fixtures import (
    OLD,
    PREFIX,
    access_entries,
    leaves,
    records_in,
    store_key,
    this_month,
)


def test_the_code_knows_the_migrations_head() -> None:
    assert SCHEMA_HEAD == head_revision()


def test_a_fresh_store_matches_the_tables_in_the_code(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_the_difference_check_can_see_a_drift(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE device ADD COLUMN colour VARCHAR(10)"))
    problems = schema_differences(engine)
    assert problems and any("colour" in p for p in problems)


def test_the_difference_check_sees_a_store_behind_the_migrations(db_url: str) -> None:
    engine = make_engine(db_url)  # as `db check` opens it: open_store's refuses a changed store
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
        assert any("revision" in p for p in schema_differences(engine))
    finally:
        engine.dispose()


def test_append_only_triggers_exist(engine: Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            triggers = set(
                conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).scalars()
            )
            expected = {
                "sat_record_no_update",
                "sat_record_no_delete",
                "sat_payload_no_update",
                "sat_payload_no_delete",
            }
        else:
            triggers = set(
                conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars()
            )
            expected = {
                "sat_record_append_only",
                "sat_record_no_truncate",
                "sat_payload_append_only",
                "sat_payload_no_truncate",
            }
    assert expected <= triggers


@starts_with_personas
def test_reopening_an_up_to_date_store_keeps_its_data(db_url: str) -> None:
    first = open_store(db_url)
    world = load_personas(first)
    first.dispose()
    again = open_store(db_url)
    try:
        assert current_revision(again) == head_revision()
        with again.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM sat_record")).scalar()
        assert count == len(world.records)
    finally:
        again.dispose()


def test_an_empty_store_is_built_at_the_current_schema_without_asking(empty_db_url: str) -> None:
    engine = open_store(empty_db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_commands_started_at_once_on_a_new_store_all_find_it_built(empty_db_url: str) -> None:
    """Four processes open a store that holds no schema at the same moment: one builds it,
    the others wait and find it built (on SQLite, each began building it and all but one
    failed with 'table party already exists')."""
    import subprocess
    import sys

    opening = (
        "import sys\nfrom servicetrail.store.engine import open_store\n"
        "print(open_store(sys.argv[1]).dialect.name)"
    )
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", opening, empty_db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = []
    for p in openers:
        _, said = p.communicate(timeout=60)  # read to their end, the pipes closed
        outcomes.append((p.returncode, said))
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()


def test_a_store_that_is_behind_is_refused_without_upgrade(db_at_revision) -> None:
    """Refused, untouched, then upgraded. The upgraded store then serves 0030's checks (which
    had a store of their own, 0.8-3.1 s an engine; audit 63i): the partial index of the failed
    deliveries by watch and retry time, its predicate as the statements name it (a look by it
    reads no healthy delivery: audit 63c); down to 0029 it is gone, and up again. And 0031's:
    the logs with leaves no checkpoint covers are listed for the seal, which signs them."""
    from servicetrail.store.merkle_log import seal_store

    previous = before_the_head()
    db_url = db_at_revision(previous)
    engine = make_engine(db_url)
    try:
        months = _logs_sealed_grown_and_never_sealed(engine)
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match=f"revision {previous}.*'servicetrail db upgrade'"):
        open_store(db_url)
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == previous  # refused, not touched
    finally:
        engine.dispose()
    upgraded = open_store(db_url, upgrade=True)
    try:
        assert current_revision(upgraded) == head_revision()
        with upgraded.connect() as conn:
            listed = conn.execute(text("SELECT family, month FROM log_unsealed")).tuples().all()
        assert sorted(listed) == [("sat", months[1]), ("sat", months[2])]
        sealed = [(s.origin.rsplit("/", 1)[1], s.size) for s in seal_store(upgraded)]
        assert sealed == [(months[1], 3), (months[2], 2)]
    finally:
        upgraded.dispose()
    engine = make_engine(db_url)  # open_store's would refuse the downgrade under it
    try:
        _0030_indexes_the_failed_deliveries_alone_and_a_downgrade_drops_it(engine)
    finally:
        engine.dispose()


def _logs_sealed_grown_and_never_sealed(engine: Engine) -> list[str]:
    """Three logs at 0030, of this month and the next two: the first sealed, the second grown
    past its checkpoint, the third never sealed. Their months."""
    from servicetrail.domain.times import months_from
    from servicetrail.store.merkle_log import add_leaves, seal_store
    from servicetrail.store.partitions import ensure_months

    now = datetime.now(UTC)
    if engine.dialect.name == "postgresql":  # the records' partitions, with the logs': these
        ensure_months(engine, [now])  # months are made ahead anyway, and no others
    first, second, third = months = months_from(f"{now:%Y-%m}", 3)
    with todays_writers(engine):
        with engine.begin() as conn:
            add_leaves(conn, "sat", leaves(1, 1, first) + leaves(10, 2, second))
        seal_store(engine)
        with engine.begin() as conn:
            add_leaves(conn, "sat", leaves(20, 1, second) + leaves(30, 2, third))
    return months


def _0030_indexes_the_failed_deliveries_alone_and_a_downgrade_drops_it(engine: Engine) -> None:
    """On a store at the head, upgraded from before 0030 or not."""
    sqlite = engine.dialect.name == "sqlite"
    defined = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_webhook_outbox_failed'"
        if sqlite
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_webhook_outbox_failed'"
    )
    for revision in ("head", "0029", "head"):
        if revision == "0029":
            command.downgrade(migrate._config(engine), revision)
        elif current_revision(engine) != head_revision():
            command.upgrade(migrate._config(engine), revision)
        with engine.connect() as conn:
            made = conn.execute(text(defined)).scalar_one_or_none()
        if revision == "0029":
            assert made is None
            continue
        assert made is not None and "(watch_id, next_attempt_at)" in made.replace('"', "")
        assert made.endswith("WHERE attempts > 0" if sqlite else "WHERE (attempts > 0)")
    assert schema_differences(engine) == []


def test_an_upgrade_that_fails_leaves_nothing_of_the_store_open(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_store disposed of its engine on some refusals alone: a failed upgrade left its
    pool's connections open (a SQLite store's file) until the engine was collected, in a
    process that goes on (a server's worker, the tests) and, here, as long as the error is
    held (session 59)."""
    previous = ScriptDirectory(str(migrate.MIGRATIONS)).get_revision(head_revision()).down_revision
    looks = make_engine(db_url)
    with looks.begin() as conn:  # said to be behind: the upgrade fails before it reads more
        conn.execute(text(f"UPDATE alembic_version SET version_num = '{previous}'"))
    looks.dispose()
    made: list[Engine] = []

    def making(url: str | None = None, **kwargs: object) -> Engine:
        made.append(make_engine(url, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    def failing(engine: Engine) -> None:
        with engine.connect() as conn:  # as the upgrade does, then fails
            conn.execute(text("SELECT 1"))
        raise StoreError("the upgrade failed: No space left on device")

    monkeypatch.setattr("servicetrail.store.engine.make_engine", making)
    monkeypatch.setattr(migrate, "upgrade_to_head", failing)
    with pytest.raises(StoreError, match="No space left") as failed:
        open_store(db_url, upgrade=True)
    assert failed.value  # held, as a worker's error page or log holds it for a while
    if db_url.startswith("sqlite"):
        store = Path(made[0].url.database or "").resolve()
        assert store not in {fd.resolve() for fd in Path("/proc/self/fd").iterdir()}
    else:
        with looks.connect() as conn:
            others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            assert conn.execute(text(f"{others} AND pid <> pg_backend_pid()")).scalar() == 0
        looks.dispose()
    assert made[0].pool.checkedin() == 0


def test_a_store_from_a_newer_servicetrail_is_refused_even_with_upgrade(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(StoreError, match="9999_from_the_future.*does not know"):
        open_store(engine.url.render_as_string(hide_password=False), upgrade=True)


def test_an_older_store_is_upgraded_step_by_step(empty_db_url: str) -> None:
    db_url = empty_db_url
    """Every revision applies on top of the one before (not only a fresh build to head)."""
    script = ScriptDirectory(str(migrate.MIGRATIONS))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[-1] == head_revision()
    engine = make_engine(db_url)
    try:
        for revision in revisions:
            command.upgrade(migrate._config(engine), revision)
            assert current_revision(engine) == revision
        assert schema_differences(engine) == []
        assert "sat_record" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    upgraded = open_store(db_url)  # already at head: opens without migrating
    upgraded.dispose()


def test_an_upgrade_that_fails_part_way_changes_nothing_and_can_be_run_again(
    db_at_revision, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On SQLite the migrations' DDL committed statement by statement: an upgrade killed or
    failed in 0009 left its tables behind at revision 0008, and every later `db upgrade`
    failed on 'table log_leaf already exists' (audit, session 19)."""
    from servicetrail.store import log_records

    db_url = db_at_revision("0008")
    engine = make_engine(db_url)

    def fails(_conn: object) -> None:
        raise RuntimeError("killed part way")

    monkeypatch.setattr(log_records, "queue_stored_records", fails)
    # said with the migration it failed in, the cause, and what became of the store: it said
    # "cannot open the store" and the cause alone (audit 48d)
    with pytest.raises(StoreError, match="killed part way") as failed:
        migrate.upgrade_to_head(engine)
    assert str(failed.value).startswith(
        "the upgrade failed in migration 0009 (Verifiable logs (SPEC section 7): leaves, tiles, "
        "the queue of unsealed leaves, checkpoints and verifier keys.): killed part way; nothing "
        "was changed, the store is still at revision 0008: mend the cause"
    )
    said = Cli(db_url, tmp_path)("db", "upgrade")
    assert said.exit_code == 2 and "Error: the upgrade failed in migration 0009" in said.output
    assert current_revision(engine) == "0008"
    assert "log_leaf" not in inspect(engine).get_table_names()
    monkeypatch.undo()
    migrate.upgrade_to_head(engine)
    assert current_revision(engine) == head_revision() and schema_differences(engine) == []
    engine.dispose()


def test_an_upgrade_that_waits_past_its_lock_wait_names_its_migration_and_exits_3(
    pg_at_revision, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/operating.md: on PostgreSQL it waits for a lock 5 s at most, then exit 3 with nothing
    changed; it was exit 2, "cannot open the store" and the lock timeout's words alone."""
    url = pg_at_revision(before_the_head())
    older = make_engine(url)
    try:
        before = current_revision(older)
        monkeypatch.setattr(migrate, "UPGRADE_LOCK_WAIT", "100ms")
        with older.connect() as writer:  # a server's writes in progress: the new index waits
            # (the tables the newest migrations index: whichever is newest waits)
            tables = "sat_record, access_log, log_leaf, webhook_outbox"
            writer.execute(text(f"LOCK TABLE {tables} IN ROW EXCLUSIVE MODE"))
            said = Cli(url, tmp_path)("db", "upgrade")
            writer.rollback()
        assert said.exit_code == 3, said.output
        assert f"the upgrade failed in migration {head_revision()} (" in said.output
        assert f"nothing was changed, the store is still at revision {before}" in said.output
        assert "stop the servers and workers on the store" in said.output
        assert current_revision(older) == before
    finally:
        older.dispose()


def test_open_store_refuses_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


def test_0004_keeps_every_record_and_the_trail_stays_append_only(db_at_revision) -> None:
    """0004 changes the trail's unique key (SQLite rebuilds the table for it): the records
    written at 0003 survive with their ids, and the append-only guard still holds."""
    from sqlalchemy import text

    from servicetrail.domain.model import SatRecord
    from servicetrail.domain.times import parse_time
    from servicetrail.store.writer import append_records

    at = parse_time("2025-03-01T10:00:00Z")
    rid = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:"
    engine = store_at(db_at_revision("0003"), at)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            for i in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO sat_record (id, logged_at, kind, request_id, srv, user_id,"
                        " device_id, response_code) VALUES (:id, :at, 'request', :rid, '4.1.1',"
                        " '90-B3-D5-1F-30-01-00-00', '00-DB-12-34-56-78-90-A0', NULL)"
                    ),
                    {
                        "id": i,
                        "rid": f"{rid}{i}",
                        "at": "2025-03-01T10:00:00.000000Z" if sqlite else at,
                    },
                )
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, request_id, identity_key, digest FROM sat_record ORDER BY id")
            ).all()
        assert [(r.id, r.request_id, r.identity_key, r.digest) for r in rows] == [
            (1, f"{rid}1", "", None),
            (2, f"{rid}2", "", None),
        ]
        for statement in ("UPDATE sat_record SET srv = '4.1.2'", "DELETE FROM sat_record"):
            with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with (
            engine.begin() as conn
        ):  # a record stored before 0004 (no digest) sent again: a duplicate
            again = SatRecord(
                at,
                "request",
                f"{rid}1",
                "4.1.1",
                "90-B3-D5-1F-30-01-00-00",
                "00-DB-12-34-56-78-90-A0",
                "",
                "",
            )
            assert append_records(conn, [again]) == (0, 1)
    finally:
        engine.dispose()


def test_0006_builds_the_visibility_index_from_the_records_already_stored(
    db_at_revision,
) -> None:
    """0006 derives the per-Party visibility index from a populated store: the owner's row
    (rule 1), one row per other Party responsible for the device at the record's time
    (rule 3), none for an alert of another User (rule 2) or outside an interval."""
    from sqlalchemy import text

    from servicetrail.store.partitions import ensure_months

    engine = make_engine(db_at_revision("0005"))
    sqlite = engine.dialect.name == "sqlite"

    def at(hour: int):
        return (
            f"2025-03-01T{hour:02d}:00:00.000000Z" if sqlite else f"2025-03-01 {hour:02d}:00:00+00"
        )

    sender, device = "90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0"
    try:
        with engine.begin() as conn:
            if not sqlite:
                from servicetrail.domain.times import parse_time

                ensure_months(engine, [parse_time("2025-03-01T10:00:00Z")])
            conn.execute(
                text(
                    "INSERT INTO party VALUES ('SUP', 'Supplier'), ('DNO', 'Network'), ('OTH', "
                    "'Other')"
                )
            )
            conn.execute(text(f"INSERT INTO dcc_user VALUES ('{sender}', 'OTH', 'OU')"))
            conn.execute(text(f"INSERT INTO device VALUES ('{device}', 'ESME', 2)"))
            conn.execute(
                text(
                    "INSERT INTO responsibility VALUES (:d, 'SUP', 'supplier', :f, NULL), "
                    "(:d, 'DNO', 'network_operator', :f, :t)"
                ),
                {"d": device, "f": at(1), "t": at(5)},
            )
            for i, (kind, hour) in enumerate(
                [("request", 3), ("device_alert", 3), ("response", 7), ("request", 0)], 1
            ):
                conn.execute(
                    text(
                        "INSERT INTO sat_record (id, logged_at, kind, request_id, srv, user_id, "
                        "device_id) VALUES (:id, :at, :kind, :rid, '4.1.1', :u, :d)"
                    ),
                    {
                        "id": i,
                        "at": at(hour),
                        "kind": kind,
                        "rid": f"{sender}:{device}:{i}",
                        "u": sender,
                        "d": device,
                    },
                )
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT party_id, access, record_id FROM sat_visibility")
            ).all()
        assert sorted(map(tuple, rows)) == sorted(
            [
                ("OTH", 1, 1),
                ("OTH", 1, 2),
                ("OTH", 1, 3),
                ("OTH", 1, 4),  # the sender's own
                ("SUP", 3, 1),
                ("DNO", 3, 1),  # the request at 03:00, while both held the device
                ("SUP", 3, 3),  # the response at 07:00, after the network operator's interval ended
            ]
        )
    finally:
        engine.dispose()


def test_0013_keeps_the_tokens_and_never_gives_a_revoked_tokens_id_again(
    db_at_revision,
) -> None:
    from servicetrail.store.accounts import create_account, create_token, list_tokens, revoke_tokens

    engine = make_engine(db_at_revision("0012"))
    try:
        with todays_writers(engine):
            load_personas(engine)
        with engine.begin() as conn:
            create_account(conn, "np.analyst", "NORTHPOWER", "correct horse battery staple")
            kept = create_token(conn, "np.analyst")
            create_token(conn, "np.analyst")
            before = [t.id for t in list_tokens(conn)]
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
        with engine.begin() as conn:
            revoke_tokens(conn, [before[-1]])  # the newest
            create_token(conn, "np.analyst")
            after = [t.id for t in list_tokens(conn)]
            assert revoke_tokens(conn, tokens=[kept])  # a token made before 0013 still holds
    finally:
        engine.dispose()
    assert after[0] == before[0] and after[-1] > before[-1]  # not the revoked one's id


def test_0014_keys_the_index_by_record_first_and_every_look_up_still_answers(
    db_at_revision,
) -> None:
    from servicetrail.store.queries import get_visible

    engine = make_engine(db_at_revision("0013"))
    try:
        with todays_writers(engine):
            world = load_personas(engine)
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
        with engine.connect() as conn:
            found = get_visible(conn, world.viewer(NORTHPOWER), world.ids["np_req"])
            hidden = get_visible(conn, world.viewer(SUNEXPORT), world.ids["np_req"])
        assert found is not None and found["id"] == world.ids["np_req"] and hidden is None
    finally:
        engine.dispose()


def test_db_check_sees_row_security_lost_in_a_restore(pg_url: str) -> None:
    """A dump restored onto a server without the reader role loses the role's grants and the
    tables' policies; `db check` said the schema matched (audit, session 19)."""
    engine = open_store(pg_url)
    try:
        assert schema_differences(engine) == []
        with engine.begin() as conn:
            policy = conn.execute(
                text("SELECT policyname FROM pg_policies WHERE tablename = 'sat_payload'")
            ).scalar_one()
            conn.execute(text(f'DROP POLICY "{policy}" ON sat_payload'))
            role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
            conn.execute(text(f"REVOKE SELECT ON responsibility FROM {role}"))
        problems = schema_differences(engine)
        assert any("has lost its grants" in p for p in problems)
        assert any(
            p.startswith("sat_payload is under row-level security with no policy") for p in problems
        )
    finally:
        engine.dispose()


def test_db_check_sees_row_level_security_switched_off(pg_url: str) -> None:
    """`ALTER TABLE ... DISABLE ROW LEVEL SECURITY` keeps the policy but no longer applies it;
    `db check` said the schema matched (audit 20a)."""
    engine = open_store(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE responsibility DISABLE ROW LEVEL SECURITY"))
        problems = schema_differences(engine)
        assert any(
            p.startswith("responsibility has row-level security switched off") for p in problems
        ), problems
    finally:
        engine.dispose()


def test_a_database_of_someone_elses_tables_or_views_is_not_built_into(empty_db_url):
    """SPEC section 5 builds a store only where there is nothing yet (audit 23a; a view alone
    counts, review 23f). What an extension made on PostgreSQL is not someone's data: a
    database with pg_stat_statements installed is still empty for us."""
    from sqlalchemy import text

    from servicetrail.store.engine import StoreError, make_engine, open_store

    raw = make_engine(empty_db_url)
    with raw.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    open_store(empty_db_url).dispose()  # built
    with raw.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("CREATE VIEW someone_elses AS SELECT 42 AS answer"))
    with pytest.raises(StoreError, match="no schema revision"):
        open_store(empty_db_url)
    raw.dispose()


def test_a_view_alone_is_someone_elses_database(empty_db_url):
    from sqlalchemy import text

    from servicetrail.store.engine import StoreError, make_engine, open_store

    raw = make_engine(empty_db_url)
    with raw.begin() as conn:
        conn.execute(text("CREATE VIEW someone_elses AS SELECT 42 AS answer"))
    with pytest.raises(StoreError, match="not a servicetrail store"):
        open_store(empty_db_url)
    raw.dispose()


@starts_with_personas  # its store cloned from the template that holds them
def test_0020_drops_the_events_key_to_their_watch_on_postgresql_alone(db_url: str) -> None:
    """The matcher checked it row by row, most of its time under one Party's many watches
    (session 32); on PostgreSQL its row locks keep events to live watches instead. SQLite
    keeps the key (dropping it rebuilds the table, which cascades into the outbox). A
    downgrade puts it back, first deleting the events left of watches deleted since."""
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.watch_matcher import match_new_records
    from servicetrail.store.watches import create_watch, delete_watch
    from servicetrail.store.writer import append_records
    from servicetrail.domain.model import SatRecord

    engine = open_store(db_url)
    try:
        keyed = [key["referred_table"] for key in inspect(engine).get_foreign_keys("watch_event")]
        if engine.dialect.name == "sqlite":
            assert keyed == ["watch"]
            return
        assert keyed == []
        load_personas(engine)
        with engine.begin() as conn:
            kept, gone = (
                create_watch(conn, SOUTHENERGY, watch_spec({"name": n}), "whsec_test")["id"]
                for n in ("kept", "gone")
            )
            at = t("2025-04-01T10:00:00Z")  # Southern Energy supplies ESME_1 then
            request = SatRecord(
                at, "request", f"{LK_OU}:{ESME_1}:9001", "4.1.1", LK_OU, ESME_1, "", ""
            )
            append_records(conn, [request])
        with engine.begin() as conn:
            assert match_new_records(conn) > 0
        with engine.begin() as conn:  # its events left behind, as a race before 0020's order
            conn.execute(text("DELETE FROM watch WHERE id = :gone"), {"gone": gone})
            assert conn.execute(
                text("SELECT count(*) FROM watch_event WHERE watch_id = :gone"), {"gone": gone}
            ).scalar_one()
        # through an engine of its own: the store's watches its revision, and under load its
        # look (once a second) fell inside the downgrade and refused the store as upgraded
        bare = make_engine(db_url)
        try:
            command.downgrade(migrate._config(bare), "0019")
            keyed = [key["referred_table"] for key in inspect(bare).get_foreign_keys("watch_event")]
            with bare.connect() as conn:
                left = conn.execute(text("SELECT DISTINCT watch_id FROM watch_event")).scalars()
                assert keyed == ["watch"] and left.all() == [kept]
            command.upgrade(migrate._config(bare), "head")
            assert schema_differences(bare) == []
        finally:
            bare.dispose()
        with engine.begin() as conn:
            assert delete_watch(conn, SOUTHENERGY, kept)
            assert conn.execute(text("SELECT count(*) FROM watch_event")).scalar_one() == 0
    finally:
        engine.dispose()


def _sat_visibility_as_0006_first_built_it(engine: Engine) -> None:
    """The store at 0005 (`engine`) taken to 0006 as 0006's first text (66b5f6b) built it, on
    an empty trail: a request_id column, NOT NULL, and an index on it, which 0006's later
    text dropped."""
    import sqlalchemy as sa

    from servicetrail.store.schema import RecordId, UtcDateTime

    postgres = engine.dialect.name == "postgresql"
    first = sa.Table(
        "sat_visibility",
        sa.MetaData(),
        sa.Column("party_id", sa.String(32), nullable=False),
        sa.Column("access", sa.SmallInteger, nullable=False),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("record_id", RecordId, nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("srv", sa.String(12), nullable=True),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint(
            "party_id", "access", "logged_at", "record_id", name="pk_sat_visibility"
        ),
        sa.Index("ix_sat_visibility_request", "party_id", "request_id"),
        **({"postgresql_partition_by": "RANGE (logged_at)"} if postgres else {}),
        **({} if postgres else {"sqlite_with_rowid": False}),
    )
    assert current_revision(engine) == "0005"
    with engine.begin() as conn:
        first.create(conn)
        if postgres:
            conn.execute(text("GRANT SELECT ON sat_visibility TO servicetrail_reader"))
            conn.execute(text("ALTER TABLE sat_visibility ENABLE ROW LEVEL SECURITY"))
            conn.execute(
                text(
                    "CREATE POLICY own_party_only ON sat_visibility FOR SELECT TO "
                    "servicetrail_reader USING "
                    "(party_id = current_setting('servicetrail.party_id', true))"
                )
            )
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))


def test_0023_mends_a_store_built_by_the_first_text_of_0006(db_at_revision) -> None:
    """Upgraded to the head, such a store refused every ingest (NOT NULL constraint failed:
    sat_visibility.request_id) and `db check` named two differences nothing mended. About a
    second: the store must climb from 0005 through every migration, as the real ones did."""
    from servicetrail.store.queries import get_visible

    engine = make_engine(db_at_revision("0005"))
    try:
        _sat_visibility_as_0006_first_built_it(engine)
        command.upgrade(migrate._config(engine), "head")
        assert schema_differences(engine) == []
        world = load_personas(engine)
        with engine.connect() as conn:
            found = get_visible(conn, world.viewer(NORTHPOWER), world.ids["np_req"])
        assert found is not None and found["id"] == world.ids["np_req"]
    finally:
        engine.dispose()


def test_0028_and_0029_partition_the_access_log_and_the_logs_and_a_downgrade_puts_them_back(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and access entries of two old months and this one, sealed, come through 0028
    and 0029 (down to 0027 and up again): every entry kept with its id, ids drawn on from the
    same sequence, every leaf and tile kept, a partition of the log a month and of the logs'
    tables a log (with 0012's statistics settings); retention of both families then drops
    the old months' entries, leaves and tiles whole, `log verify` passing and still naming a
    record changed. About two seconds (load average 16): only the migrations run down and up
    over stored entries and leaves show they convert them."""
    from servicetrail.store.access_partitions import existing_access_months
    from servicetrail.store.access_retention import drop_access_months
    from servicetrail.store.log_audit import audit
    from servicetrail.store.merkle_log import seal_store
    from servicetrail.store.partitions import drop_months
    from servicetrail.store.writer import append_records

    engine = open_store(pg_url)
    bare = make_engine(pg_url)  # see test_0020: the store's own engine watches its revision
    months = (*OLD, this_month())
    tables = ("access_log", "log_leaf", "log_node")
    rows = {
        "access_log": "SELECT id, at, party_id, filters FROM access_log ORDER BY id",
        "log_leaf": "SELECT * FROM log_leaf ORDER BY 1, 2, 3",
        "log_node": "SELECT * FROM log_node ORDER BY 1, 2, 3, 4",
    }
    kinds = f"SELECT relname, relkind FROM pg_class WHERE relname IN {tables}"
    parts = (
        "SELECT c.relname, c.reloptions FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = 'log_leaf'"
    )
    try:
        with engine.begin() as conn:
            append_records(conn, records_in(months))
        access_entries(engine, monkeypatch, months, each=2)
        seal_store(engine)
        with bare.connect() as conn:
            before = {t: conn.execute(text(rows[t])).all() for t in tables}
        command.downgrade(migrate._config(bare), "0027")
        with bare.connect() as conn:
            assert dict(conn.execute(text(kinds)).tuples().all()) == dict.fromkeys(tables, "r")
            assert {t: conn.execute(text(rows[t])).all() for t in tables} == before
        command.upgrade(migrate._config(bare), "head")
        assert schema_differences(bare) == []
        with bare.connect() as conn:
            assert dict(conn.execute(text(kinds)).tuples().all()) == dict.fromkeys(tables, "p")
            assert {t: conn.execute(text(rows[t])).all() for t in tables} == before
            assert set(months) <= existing_access_months(conn)
            held = dict(conn.execute(text(parts)).tuples().all())
        for family in ("sat", "access"):
            for month in months:
                name = f"log_leaf_{family}_p{month[:4]}_{month[5:]}"
                assert "autovacuum_analyze_threshold=50000" in held[name]
        access_entries(engine, monkeypatch, (this_month(),), each=1)  # the same sequence
        with bare.connect() as conn:
            newest = conn.execute(text("SELECT max(id) FROM access_log")).scalar_one()
            assert newest == len(before["access_log"]) + 1
        seal_store(engine)
        drop_months(engine, 1, signer=store_key(engine))
        dropped = drop_access_months(engine, keep_months=1, signer=store_key(engine))
        assert [(month.month, month.entries) for month in dropped] == [(m, 2) for m in OLD]
        with bare.connect() as conn:
            held = dict(conn.execute(text(parts)).tuples().all())
        assert not [name for name in held if name.endswith(("2025_01", "2025_02"))]
        assert audit(bare, PREFIX).findings == []
        intrude(bare, ("UPDATE sat_payload SET payload = 'edited'", {}))
        findings = audit(bare, PREFIX).findings
        assert findings and all(
            f.startswith("record ") and f.endswith(" changed") for f in findings
        )
    finally:
        bare.dispose()
        engine.dispose()
