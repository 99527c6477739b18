"""Loaders whose batches cross into a month the store has no partitions for yet, on
PostgreSQL. Each batch's transaction already holds locks on the partitioned tables from its
earlier rows. A month's partitions are made in a transaction of their own, attached under a
lock that neither those nor any reader's conflict with (store.partitions.ensure_months):
before, two loaders deadlocked, a batch rolled back after making a month left it remembered
but gone, and every reader waited for the batch that made a month to commit."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from servicetrail.domain.model import SatRecord
from servicetrail.ingest.load import Summary, _Batch
from servicetrail.store.engine import open_store
from servicetrail.store.partitions import ensure_months
from servicetrail.store.writer import record_row, row_maker

USER = "90-B3-D5-1F-30-02-00-01"
# months far from today: no partition is made for them ahead of time
KNOWN_MONTH = datetime(2019, 1, 10, tzinfo=timezone.utc)
NEW_MONTH = datetime(2019, 3, 10, tzinfo=timezone.utc)


def rows(loader: int, start: datetime, count: int) -> list:
    make = row_maker("postgresql")
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
    both_wrote = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []
    loaded: list[int] = []

    def loader(n: int) -> None:
        try:
            with engine.connect() as conn:
                batch = _Batch(conn)
                batch.add(rows(n, KNOWN_MONTH, 20))  # the transaction holds its locks now
                both_wrote.wait()
                batch.add(rows(n, NEW_MONTH, 20))
                summary = Summary()
                batch.commit(summary)
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
        again.commit(summary)
    assert summary.loaded == 5
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
