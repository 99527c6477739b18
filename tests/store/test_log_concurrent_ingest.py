"""Loaders running at once append their leaves straight to the same monthly logs (on
PostgreSQL under the family's lock, on SQLite under its write lock): the result must be one
gap-free log a month holding each record once, which the seal signs and `log verify` passes,
whatever the interleaving of the loaders' batches and seals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text

from servicetrail.signing import log_prefix
from servicetrail.store.log_audit import audit
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.writer import append_records
from tests.ingest.sat_line import line
from tests.store.log_fixtures import append, records

BINARY = Path(sys.executable).with_name("servicetrail")
PER_FILE = 1500


START = datetime(2025, 3, 1, tzinfo=timezone.utc)
STEP = timedelta(minutes=37)


def write_file(path: Path, first: int) -> None:
    """PER_FILE requests from counter `first` on, 37 minutes apart: a file spans two or three
    months, and the files share months, so every loader writes to the same logs."""
    lines = [line(n, when=START + STEP * n) for n in range(first, first + PER_FILE)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_loaders_at_once_make_one_gap_free_log_a_month_that_verifies(db_url, engine, tmp_path):
    files = [tmp_path / f"part{i}.jsonl" for i in range(3)]
    for i, path in enumerate(files):
        # the third file repeats half of the second: its loader meets rows another loader may
        # not have committed yet, and replays its batch (the leaves with it)
        write_file(path, i * PER_FILE if i < 2 else PER_FILE + PER_FILE // 2)
    if engine.dialect.name == "postgresql":
        # the months' partitions made beforehand: loaders making them at once can deadlock
        # on the partitioned tables (partitions.ensure_months), which is not what this tests
        from servicetrail.store.partitions import ensure_months

        ensure_months(engine, [START + STEP * n for n in range(0, 4 * PER_FILE, 100)])
    env = dict(os.environ, SERVICETRAIL_BATCH="100", SERVICETRAIL_WORKER_MIN_BYTES="0")
    loaders = [
        subprocess.Popen(
            [str(BINARY), "--db", db_url, "ingest", str(path)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in files
    ]
    outcomes = [loader.communicate(timeout=300) for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0, 0], [
        err[-2000:] for _, err in outcomes
    ]
    expected = 2 * PER_FILE + PER_FILE // 2
    with engine.connect() as conn:
        ids = sorted(conn.execute(text("SELECT id FROM sat_record")).scalars())
        assert len(ids) == expected
        leaves = conn.execute(
            text("SELECT month, leaf_index, entry_id FROM log_leaf ORDER BY month, leaf_index")
        ).all()
        assert conn.execute(text("SELECT count(*) FROM log_pending")).scalar_one() == 0
        sealed = dict(
            conn.execute(
                text("SELECT month, max(tree_size) FROM log_checkpoint GROUP BY month")
            ).all()
        )
    assert sorted(entry for _, _, entry in leaves) == ids
    months = sorted({month for month, _, _ in leaves})
    assert len(months) >= 2
    for month in months:
        indexes = [index for m, index, _ in leaves if m == month]
        assert indexes == list(range(len(indexes))), f"{month}'s log has gaps"
        assert sealed[month] == len(indexes), f"{month}'s log is not sealed whole"
    assert audit(engine, log_prefix()).findings == []


def test_a_writer_waits_for_the_uncommitted_leaves_of_another_and_appends_after_them(engine):
    """The lock, not the leaves' unique index, orders the writers: without it the second
    writer would number its leaves from the same size and fail on the first's index."""
    from servicetrail.store.partitions import ensure_months

    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # made beforehand: a month's DDL would hold both off
            ensure_months(engine, [record.logged_at for record in records(8)])
    first = engine.connect()
    transaction = first.begin()
    append_records(first, records(5))  # its leaves are written; it has not committed
    failed: list[BaseException] = []

    def second() -> None:
        try:
            append(engine, records(3, first=5))
        except BaseException as e:  # the test reports it below
            failed.append(e)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.5)
    assert thread.is_alive(), f"the second writer did not wait: {failed}"
    transaction.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive() and failed == []
    seal_store(engine)
    with engine.connect() as conn:
        leaves = conn.execute(
            text("SELECT month, leaf_index, entry_id FROM log_leaf ORDER BY entry_id")
        ).all()
    # January's log holds the first writer's 5 leaves, then the second's first one
    assert [index for month, index, _ in leaves if month == "2025-01"] == list(range(6))
    assert [index for month, index, _ in leaves if month == "2025-02"] == [0, 1]
    assert audit(engine, log_prefix()).findings == []
