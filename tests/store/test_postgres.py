"""What only the PostgreSQL store does: row-level security, monthly partitions, retention,
statement timeouts, and append-only triggers, on a real throwaway server."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from servicetrail.domain.model import Device, Responsibility, SatRecord, User
from servicetrail.domain.search import Search
from servicetrail.store.engine import open_store
from servicetrail.store.limits import SearchTooBroad
from servicetrail.store.read_transaction import time_limit
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.migrate import schema_differences
from servicetrail.store.partitions import drop_older_than, existing_months
from servicetrail.store.queries import iter_search, viewer_for
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from servicetrail.store.partitions import _add_months, ensure_months
from tests.personas import starts_with_personas
from tests.store.log_fixtures import store_key
from tests import personas as P

UTC = timezone.utc


@pytest.fixture
def pg(pg_url):
    engine = open_store(pg_url)
    yield engine
    engine.dispose()


def eui(prefix: int, n: int) -> str:
    raw = f"{prefix:08X}{n:08X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def random_world(engine, seed: int) -> list[str]:
    """Parties, devices with changes of supplier, and records of every kind; returns party ids."""
    rng = random.Random(seed)
    parties = [f"P{i}" for i in range(6)]
    users = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for i, party in enumerate(parties):
            for j in range(rng.randint(1, 2)):
                user = User(eui(0x90B3D51F, i * 4 + j), party, rng.choice(["IS", "ED", "OU", "XR"]))
                load_user(conn, user, party)
                users.append(user.user_id)
        devices = [eui(0x00DB0000, k) for k in range(8)]
        for device in devices:
            load_device(conn, Device(device, "ESME", rng.choice([1, 2])))
            for relation in ("supplier", "network_operator"):
                t = start + timedelta(days=rng.randint(-10, 20))
                while t < start + timedelta(days=150):
                    end = t + timedelta(days=rng.randint(10, 60))
                    open_end = end > start + timedelta(days=150)
                    load_responsibility(
                        conn,
                        Responsibility(
                            device, rng.choice(parties), relation, t, None if open_end else end
                        ),
                    )
                    t = end + timedelta(days=rng.choice([0, 0, 3]))
        batch = []
        for n in range(600):
            user, device = rng.choice(users), rng.choice(devices + [""])
            kind = rng.choice(
                ["request", "acknowledgement", "response", "device_alert", "dcc_alert"]
            )
            if kind == "device_alert" and not device:
                kind = "dcc_alert"
            when = start + timedelta(seconds=rng.randint(0, 150 * 86400))
            batch.append(
                SatRecord(
                    when,
                    kind,
                    f"{user}:{device or eui(0x90B3D51F, 0xFFFF)}:{n}",
                    "" if "alert" in kind else "4.1.1",
                    user,
                    device,
                    "" if kind == "request" else "I0",
                    f"secret-{n}",
                )
            )
        append_records(conn, batch)
    return parties


def test_row_level_security_hides_what_the_rule_hides_even_without_the_predicate(pg):
    parties = random_world(pg, seed=3)
    for party in parties:
        with pg.connect() as conn:
            viewer = viewer_for(conn, party)
            expected = {item["id"] for item in iter_search(conn, viewer, Search())}
            own_with_payload = {
                item["id"]
                for item in iter_search(conn, viewer, Search())
                if item["access"] == "own"
            }
        with pg.connect() as conn:
            conn.execute(
                text(
                    "SELECT set_config('role', servicetrail_reader_role(), true), "
                    "set_config('servicetrail.party_id', :p, true), "
                    "set_config('servicetrail.user_ids', :u, true)"
                ),
                {"p": party, "u": ",".join(sorted(viewer.user_ids))},
            )
            # a careless query: no visibility predicate at all
            rows = set(conn.execute(text("SELECT id FROM sat_record")).scalars())
            payload_rows = set(conn.execute(text("SELECT record_id FROM sat_payload")).scalars())
        assert rows == expected, party
        assert payload_rows == own_with_payload, party
        assert rows, "the scenario should give every party something to see"


def test_the_reader_role_cannot_read_partitions_or_accounts_directly(pg):
    random_world(pg, seed=4)
    with pg.connect() as conn:
        partition = sorted(existing_months(conn))[0]
        conn.execute(text("SELECT set_config('role', servicetrail_reader_role(), true)"))
        for table in (f"sat_record_p{partition[0]:04d}_{partition[1]:02d}", "account", "api_token"):
            with pytest.raises(DBAPIError, match="permission denied"):
                with conn.begin_nested():
                    conn.execute(text(f"SELECT 1 FROM {table}"))


def test_the_reader_role_sees_only_its_partys_watches_intervals_and_no_webhook_secret(pg):
    """A statement run as the viewer read every Party's watches, their webhook URLs and
    signing secrets (which would forge deliveries to another Party's receivers), every
    watch's events and the whole registry of who supplies which Device (audit, session
    16)."""
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.watches import create_watch

    random_world(pg, seed=6)
    with pg.connect() as conn:
        holders = (
            conn.execute(
                text("SELECT party_id FROM responsibility GROUP BY party_id ORDER BY party_id")
            )
            .scalars()
            .all()
        )
    assert len(holders) > 1
    mine, theirs = holders[0], holders[1]
    with pg.begin() as conn:
        for party in (mine, theirs):
            spec = watch_spec({"name": party, "webhook": {"url": "https://hooks.example/x"}})
            create_watch(conn, party, spec, "whsec_" + "A" * 43)
        conn.execute(
            text(
                "INSERT INTO watch_event (watch_id, event_id, record_id, record_logged_at, "
                "record_device_id, matched_at) SELECT w.id, 1, r.id, r.logged_at, r.device_id, "
                "now() FROM watch w, (SELECT * FROM sat_record LIMIT 1) r"
            )
        )
    with pg.connect() as conn:
        conn.execute(
            text(
                "SELECT set_config('role', servicetrail_reader_role(), true), "
                "set_config('servicetrail.party_id', :p, true)"
            ),
            {"p": mine},
        )
        assert conn.execute(text("SELECT party_id FROM watch")).scalars().all() == [mine]
        events = conn.execute(
            text("SELECT w.party_id FROM watch_event e JOIN watch w ON w.id = e.watch_id")
        )
        assert events.scalars().all() == [mine]
        assert conn.execute(text("SELECT count(*) FROM watch_event")).scalar() == 1
        intervals = conn.execute(text("SELECT DISTINCT party_id FROM responsibility"))
        assert intervals.scalars().all() == [mine]
        for column in ("webhook_secret", "webhook_url", "*"):
            with pytest.raises(DBAPIError, match="permission denied"):
                with conn.begin_nested():
                    conn.execute(text(f"SELECT {column} FROM watch"))


def test_partitions_are_made_for_the_data_and_months_ahead_without_a_default(pg):
    random_world(pg, seed=5)
    with pg.connect() as conn:
        months = existing_months(conn)
        defaults = conn.execute(
            text(
                "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = "
                "p.partrelid WHERE c.relname = 'sat_record' AND p.partdefid <> 0"
            )
        ).scalar()
    now = datetime.now(UTC)
    assert {(2025, m) for m in range(1, 6)} <= months
    assert (now.year, now.month) in months
    assert defaults == 0


def test_retention_drops_whole_old_months_and_says_which(pg):
    random_world(pg, seed=6)
    seal_store(pg)  # retention drops a month only once its records are in a checkpoint
    with pg.begin() as conn:
        before = conn.execute(text("SELECT count(*) FROM sat_record")).scalar()
        would = drop_older_than(conn, keep_months=1, dry_run=True)
        assert conn.execute(text("SELECT count(*) FROM sat_record")).scalar() == before
    assert "sat_record_p2025_01" in would and "sat_payload_p2025_01" in would
    with pg.begin() as conn:
        dropped = drop_older_than(conn, keep_months=1, signer=store_key(pg))
        left = conn.execute(
            text("SELECT count(*) FROM sat_record WHERE logged_at < '2025-12-01'")
        ).scalar()
        orphans = conn.execute(text("SELECT count(*) FROM sat_payload")).scalar()
    assert dropped == would
    assert left == 0 and orphans == 0


@starts_with_personas
def test_retention_takes_the_watches_events_and_deliveries_of_the_months_it_drops(pg):
    """They stayed: the deliveries could never be made nor given up (the record was gone),
    and every round of the webhook worker walked them again (audit 21a)."""
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.outbox import pending_count
    from servicetrail.store.watch_matcher import catch_up
    from servicetrail.store.watches import create_watch
    from servicetrail.webhooks.signing import new_secret

    P.load_personas(pg)
    now = datetime.now(UTC).replace(microsecond=0)
    with pg.begin() as conn:
        spec = watch_spec(
            {"name": "all", "senders": "all", "webhook": {"url": "https://receiver.example/"}}
        )
        create_watch(conn, P.SOUTHENERGY, spec, new_secret())
        later = (P.t("2025-02-03T04:05:06Z"), now)  # after the watch; a month retention drops
        append_records(
            conn,
            [
                SatRecord(
                    at, "request", f"{P.SE_IS}:{P.GSME_1}:{n}", "4.1.1", P.SE_IS, P.GSME_1, "", ""
                )
                for n, at in enumerate(later, start=1)
            ],
        )
    catch_up(pg)
    seal_store(pg)  # retention drops a month only once its records are in a checkpoint
    count = "SELECT count(*) FROM watch_event WHERE record_logged_at {} '2025-12-01'"
    with pg.connect() as conn:
        old, new = (conn.execute(text(count.format(op))).scalar() for op in ("<", ">="))
        assert (old, new) == (1, 1) and pending_count(conn) == 2
    with pg.begin() as conn:
        drop_older_than(conn, keep_months=1, signer=store_key(pg))
    with pg.connect() as conn:
        old, new = (conn.execute(text(count.format(op))).scalar() for op in ("<", ">="))
        assert (old, new) == (0, 1) and pending_count(conn) == 1


def test_retention_beside_a_long_read_waits_its_turn_without_holding_up_other_reads(
    pg, monkeypatch
):
    """A long read (an export) holds the trail's tables: retention used to wait on it with
    every Party's reads queued behind its lock until their statement limit, and ended in a
    deadlock. It now lets go between short tries, and says so if the read outlasts it
    (nothing dropped); once the tables are free, it drops (audit, session 19).

    Not held up long: a read that comes while a try waits queues behind it, and tries of
    0.5 s held each read up that long (finding 53b 2). Each read here waits on a lock for
    0.3 s at most, timed by PostgreSQL (not by the test's wall clock, which a loaded machine
    stretches: session 52), past which it fails: six times a try's 50 ms."""
    import threading

    from servicetrail.store import partitions
    from servicetrail.store.limits import StoreBusy

    random_world(pg, seed=6)
    seal_store(pg)  # retention drops a month only once its records are in a checkpoint
    monkeypatch.setattr(partitions, "RETENTION_PATIENCE_SECONDS", 2.0)
    with pg.connect() as long_read:
        long_read.execute(text("SELECT count(*) FROM sat_record"))  # its lock held till the end
        outcome: list[object] = []
        retention = threading.Thread(
            target=lambda: outcome.append(
                _tried(partitions.drop_months, pg, 1, False, store_key(pg))
            ),
            daemon=True,
        )
        retention.start()
        reads = 0
        while retention.is_alive():  # another Party's reads meanwhile: never held up long
            with pg.connect() as other:
                other.execute(text("SET lock_timeout = '300ms'"))
                other.execute(text("SELECT count(*) FROM sat_visibility"))
                other.execute(text("SELECT count(*) FROM sat_record"))
                reads += 1
        retention.join()
        long_read.rollback()
    assert isinstance(outcome[0], StoreBusy) and "nothing was dropped" in str(outcome[0])
    assert reads
    with pg.connect() as conn:
        assert (2025, 1) in existing_months(conn)
    assert "sat_record_p2025_01" in partitions.drop_months(pg, 1, signer=store_key(pg))


def _tried(call, *args):
    try:
        return call(*args)
    except Exception as e:  # the outcome is the test's to judge
        return e


def test_statement_timeout_becomes_a_narrow_your_search_error(pg):
    with pg.connect() as conn:
        with pytest.raises(SearchTooBroad, match="narrow"):
            with time_limit(conn, seconds=0.2):
                conn.execute(text("SELECT pg_sleep(3)"))


def test_sat_records_are_append_only_in_postgresql(pg):
    random_world(pg, seed=7)
    for statement in (
        "UPDATE sat_record SET srv = '1.1.1'",
        "DELETE FROM sat_record",
        "TRUNCATE sat_record",
        "DELETE FROM sat_payload",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with pg.begin() as conn:
                conn.execute(text(statement))


def test_db_check_finds_drift_between_tables_and_migrations(pg):
    assert schema_differences(pg) == []
    with pg.begin() as conn:
        conn.execute(text("ALTER TABLE device ADD COLUMN colour text"))
    assert any("colour" in problem for problem in schema_differences(pg))


def _backend_of(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(pg_url: str, pid: int) -> None:
    other = open_store(pg_url)
    with other.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    other.dispose()


def test_a_connection_that_died_while_idle_is_replaced_unseen(pg, pg_url, monkeypatch):
    monkeypatch.setattr("servicetrail.store.engine.PING_AFTER_IDLE_SECONDS", 0.0)
    dead = _backend_of(pg)
    _terminate(pg_url, dead)
    with pg.connect() as conn:  # the pooled connection was pinged, found dead, and replaced
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != dead


def test_a_connection_used_a_moment_ago_is_not_pinged(pg, pg_url, monkeypatch):
    """The ping is a round trip a busy server no longer pays on every checkout: a connection
    killed between two quick uses fails its next statement (nothing pinged it first), and the
    pool then replaces it."""
    monkeypatch.setattr("servicetrail.store.engine.PING_AFTER_IDLE_SECONDS", 3600.0)
    dead = _backend_of(pg)
    _terminate(pg_url, dead)
    with pytest.raises(DBAPIError) as failed:
        with pg.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated
    assert _backend_of(pg) != dead


def _set_on_the_database(pg_url: str, setting: str) -> None:
    """A DBA's `ALTER DATABASE ... SET`, which connections made after it take; its engine
    disposed, where it had been left with its connection open (the suite's ResourceWarnings)."""
    engine = open_store(pg_url)
    with engine.begin() as conn:
        name = conn.execute(text("SELECT current_database()")).scalar()
        conn.execute(text(f'ALTER DATABASE "{name}" SET {setting}'))
    engine.dispose()


@pytest.mark.parametrize(
    "setting", ["timezone TO 'Europe/London'", "datestyle TO 'SQL, DMY'", "row_security TO off"]
)
def test_reads_work_whatever_date_style_zone_or_row_security_the_database_sets(
    pg_url, setting
) -> None:
    """Audit 29a: psycopg reads timestamps in the ISO date style only, and a database a DBA
    set to `SQL, DMY` (or German, or Postgres) made every read a traceback, every answer a
    500. With row_security off, PostgreSQL refused every read under a policy, and the error
    blamed a missing role. The engine's connections set their own, as they set their zone."""
    _set_on_the_database(pg_url, setting)
    engine = open_store(pg_url)
    P.load_personas(engine)
    at = datetime(2025, 3, 4, 5, 6, 7, 890123, UTC)
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    at, "request", f"{P.SE_IS}:{P.GSME_1}:1", "4.1.1", P.SE_IS, P.GSME_1, "", ""
                )
            ],
        )
    with engine.connect() as conn:
        viewer = viewer_for(conn, P.SOUTHENERGY)
        found = [item["logged_at"] for item in iter_search(conn, viewer, Search())]
    engine.dispose()
    assert "2025-03-04T05:06:07.890123Z" in found and len(found) > 1  # the personas' too


@pytest.mark.parametrize("zone", ["Europe/London", "Pacific/Kiritimati"])
def test_times_are_read_in_utc_whatever_the_servers_time_zone(pg_url, zone) -> None:
    """A server set to London (a GB deployment's natural zone) rendered 0001-01-01T00:00Z in
    1 BC, by London's old -00:01:15, and one at +14 the last instant of 9999 in the year
    10000: psycopg cannot read either, and every list holding the record was a 500 (audit
    25b)."""
    _set_on_the_database(pg_url, f"timezone TO '{zone}'")
    engine = open_store(pg_url)  # connections made after the change take the zone
    P.load_personas(engine)
    edges = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)]
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    at, "request", f"{P.SE_IS}:{P.GSME_1}:{n}", "4.1.1", P.SE_IS, P.GSME_1, "", ""
                )  # fmt: skip
                for n, at in enumerate(edges, start=1)
            ],
        )
    with engine.connect() as conn:
        viewer = viewer_for(conn, P.SOUTHENERGY)
        found = [item["logged_at"] for item in iter_search(conn, viewer, Search())]
    engine.dispose()
    assert found[:1] == ["9999-12-31T23:59:59.999999Z"] and found[-1] == "0001-01-01T00:00:00Z"


# --- found missing by mutation testing (audit 29b) ----------------------------------------


def test_retention_keeps_exactly_the_months_asked_for(pg):
    now = datetime.now(timezone.utc)
    months = [_add_months(now.year, now.month, -k) for k in range(0, 4)]  # this month, 3 before
    ensure_months(pg, [datetime(y, m, 15, tzinfo=timezone.utc) for y, m in months])
    with pg.begin() as conn:
        dropped = drop_older_than(conn, keep_months=1)
        left = existing_months(conn)
    kept, gone = months[:2], months[2:]  # the current month and the one before it
    assert all(month in left for month in kept), (left, dropped)
    assert not any(month in left for month in gone), (left, dropped)
    assert not any(f"_p{y:04d}_{m:02d}" in name for y, m in kept for name in dropped)


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_month_retention_dropped_before_any_record_was_sealed_in_it_is_made_again(pg):
    """pa6: this process remembers which months have partitions; retention forgets those it
    drops. A month dropped with nothing sealed in it is not retired (no checkpoint says so):
    a record of it loaded later is stored in its partitions made again. Remembered as still
    there, none was made, and the load died on PostgreSQL's "no partition of relation"."""
    now = datetime.now(UTC)
    year, month = _add_months(now.year, now.month, -4)
    at = datetime(year, month, 15, 12, tzinfo=UTC)
    ensure_months(pg, [at])  # made ahead of the data, which never came
    with pg.begin() as conn:
        assert f"sat_record_p{year:04d}_{month:02d}" in drop_older_than(conn, keep_months=1)
        assert (year, month) not in existing_months(conn)
    with pg.begin() as conn:
        append_records(conn, [SatRecord(at, "request", "LATE:1", "4.1.1", "LATE", "00-00", "", "")])
    with pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sat_record")).scalar() == 1
        assert (year, month) in existing_months(conn)
