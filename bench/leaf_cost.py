#!/usr/bin/env python3
"""What appending the leaves themselves costs (issue 14): N stored records' leaves appended to
their monthly logs by `add_leaves`, in the ingest's batches, with the tiles they complete.

    .venv/bin/python bench/leaf_cost.py                       # 100k records, PostgreSQL
    .venv/bin/python bench/leaf_cost.py --records 50000 --rounds 5 --engines sqlite,postgresql

A registry-loaded store gets the records by `servicetrail ingest` without the index and the
logs (bench/without_index_and_logs), untimed. Each round appends every record's leaf (hash and
salt made beforehand, untimed) into a fresh copy of that store, a batch per transaction as the
ingest commits them, and gives this process's CPU seconds and, on PostgreSQL, its backend's
(/proc/PID/stat): the leaves' own cost without the rest of the ingest, whose run-to-run swing
on PostgreSQL hides a change of a few hundredths. Each round checks that every log's stored
root is the root of its leaves. To compare code, run it with PYTHONPATH naming another copy
of src/. --local-keys (PostgreSQL) makes every second round's copy keep log_leaf's keys in
each partition, (leaf_index) and (entry_id), instead of through the parent (issue 14's design
(a), session 55; bench/local_leaf_keys for a whole ingest): the two shapes alternate in one
run, each with its medians. Results go to stdout and bench/out/leaf_cost-N.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import text  # noqa: E402

from harness import (  # noqa: E402
    Store,
    backend_cpu,
    on_each_engine,
    store_of_records,
    with_cpu_medians,
)

from servicetrail.domain import merkle  # noqa: E402
from servicetrail.store.engine import make_engine  # noqa: E402
from servicetrail.store.log_partitions import existing_log_months, partition_name  # noqa: E402
from servicetrail.store.log_records import FAMILY  # noqa: E402
from servicetrail.store.log_tree import StoredTree  # noqa: E402
from servicetrail.store.merkle_log import add_leaves  # noqa: E402

_MONTHS = {
    "postgresql": "SELECT id, to_char(logged_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM sat_record "
    "ORDER BY id",
    "sqlite": "SELECT id, substr(logged_at, 1, 7) FROM sat_record ORDER BY id",
}


def _copy(store: Store, url: str, round_: int) -> str:
    """A fresh copy of the store of records, for one round's leaves."""
    if store.kind == "sqlite":
        target = store.work / f"leaf-cost-{round_}.db"
        shutil.copyfile(url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    assert store.pg is not None
    return store.pg.new_database(template=url.rsplit("/", 1)[1])


def _local_keys(url: str) -> None:
    """log_leaf's keys made each partition's own, as bench/local_leaf_keys makes them."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE log_leaf DROP CONSTRAINT pk_log_leaf"))
        conn.execute(text("DROP INDEX IF EXISTS ix_log_leaf_family_entry_id"))
        for family in ("access", FAMILY):
            for month in existing_log_months(conn, family):
                name = partition_name("log_leaf", family, month)
                conn.execute(text(f"ALTER TABLE {name} ADD PRIMARY KEY (leaf_index)"))
                conn.execute(text(f"CREATE INDEX ON {name} (entry_id)"))
    engine.dispose()


def bench_engine(
    store: Store, folder: Path, rounds: int, batch: int, local_keys: bool = False
) -> dict:
    url = store_of_records(store, folder, "leaf-cost")
    engine = make_engine(url)
    with engine.connect() as conn:
        months = conn.exec_driver_sql(_MONTHS[store.kind]).fetchall()
    engine.dispose()  # a PostgreSQL template must have no connection
    leaves = [
        (record_id, month, hashlib.sha256(b"%d" % record_id).digest(), os.urandom(16))
        for record_id, month in months
    ]
    batches = [leaves[i : i + batch] for i in range(0, len(leaves), batch)]
    runs = []
    for round_ in range(rounds):
        target = _copy(store, url, round_)
        local = local_keys and round_ % 2 == 1 and store.kind == "postgresql"
        if local:
            _local_keys(target)
        engine = make_engine(target)
        with engine.connect() as conn:
            pid = (
                conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                if store.kind == "postgresql"
                else None
            )
            conn.commit()
            client, server = time.process_time(), backend_cpu(pid)
            for part in batches:
                add_leaves(conn, FAMILY, part)
                conn.commit()
            runs.append(
                {
                    "client_cpu_s": round(time.process_time() - client, 3),
                    "server_cpu_s": round(backend_cpu(pid) - server, 3),
                    "leaves": len(leaves),
                    "keys": "local" if local else "shipped",
                }
            )
            for month in sorted({month for _, month in months}):
                hashes = [leaf for _, m, leaf, _ in leaves if m == month]
                if StoredTree(conn, FAMILY, month).root(len(hashes)) != merkle.root_of(hashes):
                    raise SystemExit(f"the stored log of {month} has the wrong root")
        engine.dispose()
        print(store.kind, runs[-1], file=sys.stderr, flush=True)
    if not local_keys:
        return with_cpu_medians(runs)
    return {
        keys: with_cpu_medians([r for r in runs if r["keys"] == keys])
        for keys in ("shipped", "local")
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="postgresql")
    parser.add_argument("--batch", type=int, default=20_000, help="leaves a transaction")
    parser.add_argument(
        "--local-keys", action="store_true", help="every second round with local keys (PostgreSQL)"
    )
    a = parser.parse_args()
    on_each_engine(
        a.records,
        a.engines,
        "leaf_cost",
        lambda store, folder: bench_engine(store, folder, a.rounds, a.batch, a.local_keys),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
