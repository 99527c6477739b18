"""Loaders at once on PostgreSQL. Batches crossing into a month the store has no partitions
for yet: a month's partitions are made in a transaction of their own, attached under a lock
that no batch's or reader's conflict with (store.partitions.ensure_months): before, two
loaders deadlocked, a batch rolled back after making a month left it remembered but gone,
and every reader waited for the batch that made a month to commit. And each batch reads the
trail under the logs' lock, held to its commit (store.writer.append_rows), so a loader sees
what the one before it stored: the same bare-file request loaded by two at once was stored
twice (its identity has no time, so no unique key stops a second copy)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from servicetrail.domain.model import SatRecord
from servicetrail.ingest.conflicts import Conflicts
from servicetrail.ingest.summary import Summary
from servicetrail.ingest.trail_load import _Batch
from servicetrail.store.engine import make_engine, open_store
from servicetrail.store.log_partitions import TABLES as LOG_TABLES
from servicetrail.store.log_partitions import partition_name as log_partition
from servicetrail.store.partitions import PARTITIONED, ensure_months
from servicetrail.store.record_rows import record_row, row_maker
from tests.store.stamped_behind import stamped_behind

USER = "90-B3-D5-1F-30-02-00-01"
# months far from today: no partition is made for them ahead of time
KNOWN_MONTH = datetime(2019, 1, 10, tzinfo=timezone.utc)
NEW_MONTH = datetime(2019, 3, 10, tzinfo=timezone.utc)


def rows(loader: int, start: datetime, count: int, dialect: str = "postgresql") -> list:
    make = row_maker(dialect)
    return [
        record_row(
            make,
            SatRecord(
                logged_at=start + timedelta(minutes=n),
                kind="request",
                request_id=f"{USER}:00-DB-00-00-00-00-00-0{loader}:{start.month}{n:04d}",
                srv="4.1.1",
                user_id=USER,
                device_id=f"00-DB-00-00-00-00-00-0{loader}",
                response_code="",
                payload=f"<b>{n}</b>",
            ),
            origin=n,
        )
        for n in range(count)
    ]


def test_batches_crossing_into_a_new_month_at_once_are_both_stored(pg_url) -> None:
    engine = open_store(pg_url)
    both_start = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []
    loaded: list[int] = []
    # made here, not in the threads: the salts come from one generator (store.log_records),
    # which two threads drawing at once found "already executing", in 2 runs of 4 at load 12
    made = {n: (rows(n, KNOWN_MONTH, 20), rows(n, NEW_MONTH, 20)) for n in (1, 2)}

    def loader(n: int) -> None:
        try:
            with engine.connect() as conn:
                batch = _Batch(conn)
                both_start.wait()
                batch.add(made[n][0])  # the transaction holds its locks now
                batch.add(made[n][1])
                summary = Summary()
                batch.commit(summary, Conflicts())
                loaded.append(summary.loaded)
        except BaseException as e:  # the test reports it below
            failures.append(e)

    ensure_months(engine, [KNOWN_MONTH])  # the known month's partitions: only the new one races
    threads = [threading.Thread(target=loader, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert sorted(loaded) == [40, 40]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM sat_record")).scalar()
    assert stored == 80
    engine.dispose()


def test_a_month_made_by_a_batch_that_rolls_back_stays_made(pg_url) -> None:
    engine = open_store(pg_url)
    with engine.connect() as conn:
        batch = _Batch(conn)
        batch.add(rows(1, NEW_MONTH, 5))
        batch.abandon()  # a deadlock's victim, a lost race
        again = _Batch(conn)
        again.add(rows(1, NEW_MONTH, 5))
        summary = Summary()
        again.commit(summary, Conflicts())
    assert summary.loaded == 5
    engine.dispose()


def test_a_month_gone_behind_a_running_loaders_back_is_made_again_by_its_replay(pg_url) -> None:
    """A store restored from a backup older than the months a running load knows (the months
    of a process's store, store.partitions._known): the batch's replay makes them again, and
    the load goes on. It stopped ("no partition of relation sat_record found for row") until
    run again, a new process."""
    engine = open_store(pg_url)
    with engine.connect() as conn:
        batch = _Batch(conn)
        batch.add(rows(1, KNOWN_MONTH, 5))
        batch.commit(Summary(), Conflicts())
        with engine.begin() as other:  # its partitions and logs, as an older backup lacks them
            for name in [f"{table}_p2019_01" for table in PARTITIONED] + [
                log_partition(table, "sat", "2019-01") for table in LOG_TABLES
            ]:
                other.execute(text(f"DROP TABLE {name}"))
        summary = Summary()
        batch.add(rows(2, KNOWN_MONTH, 5))
        batch.commit(summary, Conflicts())
    assert summary.loaded == 5
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_leaf")).scalar() == 5
    engine.dispose()


def test_readers_do_not_wait_for_a_batch_that_made_a_new_month(pg_url) -> None:
    engine = open_store(pg_url)
    ensure_months(engine, [KNOWN_MONTH])
    with engine.connect() as conn:
        batch = _Batch(conn)
        batch.add(rows(1, NEW_MONTH, 5))  # its transaction stays open
        with engine.connect() as reader:
            reader.execute(text("SET lock_timeout = '2s'"))  # a wait fails the read
            assert reader.execute(text("SELECT count(*) FROM sat_record")).scalar() == 0
        batch.abandon()
    engine.dispose()


def test_the_same_bare_file_request_loaded_by_two_loaders_at_once_is_stored_once(pg_url) -> None:
    engine = open_store(pg_url)
    make = row_maker("postgresql")

    def read_from_the_file(modified: datetime) -> list:
        """The request of one bare XML file, timed by the file's modification time."""
        same = SatRecord(
            modified, "request", f"{USER}:00-DB-00-00-00-00-00-09:1", "4.1.1", USER,
            "00-DB-00-00-00-00-00-09", "", "<same request/>",
        )  # fmt: skip
        return [record_row(make, same, bare_file=True, origin="request.xml")]

    second: list[Summary | BaseException] = []

    def load_again() -> None:
        try:
            with engine.connect() as conn:
                batch, summary = _Batch(conn), Summary()
                batch.add(read_from_the_file(KNOWN_MONTH + timedelta(hours=1)))
                batch.commit(summary, Conflicts())
                second.append(summary)
        except BaseException as e:  # the test reports it below
            second.append(e)

    ensure_months(engine, [KNOWN_MONTH])
    with engine.connect() as conn:
        first = _Batch(conn)
        first.add(read_from_the_file(KNOWN_MONTH))  # stored, not yet committed
        other = threading.Thread(target=load_again)
        other.start()
        other.join(1.0)  # it reads the trail only once this batch has committed
        first.commit(Summary(), Conflicts())
    other.join(30)
    [summary] = second
    assert isinstance(summary, Summary), summary
    assert (summary.loaded, summary.duplicates) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sat_record")).scalar() == 1
    engine.dispose()


def test_a_load_outlasting_an_upgrade_commits_no_batch_on_the_new_schema(db_url) -> None:
    """A load holds one connection from its first batch to its last, looked at once at its
    checkout: an upgrade between two batches went unseen, and the next were written on a
    schema this servicetrail does not know (audit 48d). That batch rolls back, and the load
    stops saying to restart."""
    import pytest

    from servicetrail.store.schema_watch import StoreUpgraded

    engine = open_store(db_url)
    try:
        with engine.connect() as conn:
            batch = _Batch(conn)
            stamped_behind(engine, "0026_later")  # between two batches
            batch.add(rows(1, KNOWN_MONTH, 3, engine.dialect.name))
            with pytest.raises(StoreUpgraded, match="0026_later"):
                batch.commit(Summary(), Conflicts())
            batch.abandon()
        other = make_engine(db_url)
        with other.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sat_record")).scalar() == 0
        other.dispose()
    finally:
        engine.dispose()
