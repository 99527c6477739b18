"""Two loaders whose batches cross into a month the store has no partitions for yet, at the
same moment, on PostgreSQL. Each batch's transaction already holds locks on the partitioned
tables from its earlier rows; the first to create the month's partitions waits for the
other's locks, the other waits for the partitions' lock: PostgreSQL breaks the deadlock by
failing one. That batch must be replayed, not lost with an error."""

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

    with engine.begin() as conn:  # the known month's partitions, so only the new one races
        ensure_months(conn, [KNOWN_MONTH])
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
