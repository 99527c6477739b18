#!/usr/bin/env python3
"""The access log's growth and its retention (audit 49d): --entries entries of a device
search (a Party's analyst, 100 records, 3 MP141 Devices) written through the store's writer
into two old months and the current one, sealed; then the bytes on disk an entry costs (its
row and indexes, its leaf and tiles, by table), and on PostgreSQL the time `retention
--access-log-keep-months 1` takes to drop the old months (rows dropped a second).

    .venv/bin/python bench/access_retention.py postgresql://.../NEWDB [--entries 1000000]
    .venv/bin/python bench/access_retention.py sqlite:////tmp/x.db --entries 200000

The database must be new.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from servicetrail.domain.access_log import Reader, Tally  # noqa: E402
from servicetrail.signing import signer_for  # noqa: E402
from servicetrail.store import access_log as access_store  # noqa: E402
from servicetrail.store.access_retention import drop_access_months  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.merkle_log import seal_store  # noqa: E402

BATCH = 5_000
READER = Reader("KINTYREUTIL", "alice.analyst", "api")
TABLES = ("access_log", "log_leaf", "log_node", "log_pending")


def _tally() -> Tally:
    devices = {f"00-DB-12-34-56-78-90-A{i}": None for i in range(3)}
    return Tally(records_returned=100, mp141_records_returned=3, device_ids=devices)


def fill(engine, entries: int) -> list[str]:
    """Entries over two old months and this one, a third each; returns the months."""
    now = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [(now - timedelta(days=70)).replace(day=1), (now - timedelta(days=40)).replace(day=1)]
    starts.append(now)
    filters = {"device_id": "00-DB-12-34-56-78-90-A0", "limit": 100, "kind": "response"}
    per_month = entries // 3
    for start in starts:
        for first in range(0, per_month, BATCH):
            at = start + timedelta(seconds=first // 100)
            with mock.patch.object(access_store, "_now", lambda at=at: at), engine.begin() as c:
                count = min(BATCH, per_month - first)
                access_store.append_entries(c, [(READER, "search", filters, _tally())] * count)
    return [f"{s.year:04d}-{s.month:02d}" for s in starts]


def sizes(engine) -> dict[str, int]:
    """Bytes on disk by table, with its indexes (the logs' tables hold the access family
    alone here: this store has no records)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            # a partitioned table's own size is 0: its partitions' are summed (a table that is
            # not partitioned has no tree)
            size = (
                "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree('{0}')), pg_total_relation_size('{0}'))"
            )
            return {t: int(conn.execute(text(size.format(t))).scalar_one()) for t in TABLES}
        rows = conn.exec_driver_sql(
            "SELECT tbl_name, name FROM sqlite_master WHERE type IN ('table', 'index')"
        ).all()
        found = {}
        for table in TABLES:
            names = [name for tbl, name in rows if tbl == table]
            marks = ", ".join("?" * len(names))
            found[table] = int(
                conn.exec_driver_sql(
                    f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})",
                    tuple(names),
                ).scalar_one()
            )
        return found


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url", help="a new database")
    ap.add_argument("--entries", type=int, default=1_000_000)
    a = ap.parse_args()
    engine = open_store(a.url)
    out: dict[str, object] = {"engine": engine.dialect.name, "entries": a.entries}
    started = time.perf_counter()
    months = fill(engine, a.entries)
    out["fill_s"] = round(time.perf_counter() - started, 1)
    queued = sizes(engine)
    started = time.perf_counter()
    seal_store(engine)
    out["seal_s"] = round(time.perf_counter() - started, 1)
    sealed = sizes(engine)
    with engine.connect() as conn:
        stored = int(conn.execute(text("SELECT count(*) FROM access_log")).scalar_one())
    out["bytes_per_entry_queued"] = {t: round(b / stored, 1) for t, b in queued.items() if b}
    out["bytes_per_entry_sealed"] = {t: round(b / stored, 1) for t, b in sealed.items() if b}
    # the queue's space is used again by the next entries: what grows is the rest
    grows = sum(b for t, b in sealed.items() if t != "log_pending")
    out["bytes_per_entry_kept"] = round(grows / stored, 1)
    if engine.dialect.name == "postgresql":
        signer = signer_for(engine.url.render_as_string(hide_password=False))
        started = time.perf_counter()
        dropped = drop_access_months(engine, keep_months=1, signer=signer)
        took = time.perf_counter() - started
        gone = sum(month.entries for month in dropped)
        out["dropped"] = {month.month: month.entries for month in dropped}
        out["retention_s"] = round(took, 1)
        out["rows_dropped_per_s"] = round(gone / took)
        assert [m.month for m in dropped] == months[:2], dropped
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
