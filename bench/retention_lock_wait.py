#!/usr/bin/env python3
"""How long short reads wait while the trail's retention tries for its locks beside a long
read (finding 53b 2): a try queues for ACCESS EXCLUSIVE behind the long read, and every read
that comes after it queues behind the try until the try gives up.

A new database on the server: a year of monthly partitions, --leaves leaves in the oldest
month's log, sealed; then a long read holding the trail's tables for --hold seconds,
retention (`partitions.drop_months`, keep 10 months) from a second thread, and short reads of
the current month one after another from --readers threads until retention ends. Prints the
short reads' count, p50, p99 and longest wall time, and retention's. Runs the servicetrail
on PYTHONPATH, so a checkout's src compares before and after:

    PYTHONPATH=/tmp/before/src .venv/bin/python bench/retention_lock_wait.py postgresql://.../postgres
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from datetime import datetime, timezone

BATCH = 20_000


def run(url: str, leaves: int, hold: float, readers: int) -> dict[str, object]:
    from sqlalchemy import text

    from servicetrail.signing import signer_for
    from servicetrail.store.engine import open_store
    from servicetrail.store.merkle_log import add_leaves, seal_store
    from servicetrail.store.partitions import _add_months, drop_months, ensure_months

    engine = open_store(url)
    now = datetime.now(timezone.utc)
    kept = [_add_months(now.year, now.month, -i) for i in range(12)]
    ensure_months(engine, [datetime(y, m, 15, tzinfo=timezone.utc) for y, m in kept])
    year, month = kept[-1]
    old = f"{year:04d}-{month:02d}"
    rng = random.Random(53)
    for first in range(0, leaves, BATCH):
        rows = [(i + 1, old, rng.randbytes(32), None) for i in range(first, first + BATCH)]
        with engine.begin() as conn:
            add_leaves(conn, "sat", rows[: leaves - first])
    seal_store(engine)
    signer = signer_for(engine.url.render_as_string(hide_password=False))
    # through the partitioned table, as the app reads: its lock is the one retention asks for
    recent = "SELECT count(*) FROM sat_record WHERE logged_at > now() - interval '1 hour'"
    waits: list[float] = []
    done = threading.Event()
    outcome: dict[str, object] = {}

    def short_reads() -> None:
        while not done.is_set():
            began = time.perf_counter()
            with engine.connect() as conn:
                conn.execute(text(recent))
            waits.append(time.perf_counter() - began)

    def retention() -> None:
        began = time.perf_counter()
        try:
            outcome["dropped"] = len(drop_months(engine, keep_months=10, signer=signer))
        finally:
            outcome["retention_s"] = round(time.perf_counter() - began, 3)
            done.set()

    with engine.connect() as long_read:
        long_read.execute(text("SELECT count(*) FROM sat_record"))  # held to its end
        threads = [threading.Thread(target=short_reads) for _ in range(readers)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)  # the short reads going before retention comes
        worker = threading.Thread(target=retention)
        worker.start()
        time.sleep(hold)
        long_read.rollback()
    worker.join()
    for thread in threads:
        thread.join()
    waits.sort()
    engine.dispose()
    return {
        **outcome,
        "short_reads": len(waits),
        "p50_ms": round(statistics.median(waits) * 1000, 1),
        "p99_ms": round(waits[int(0.99 * len(waits))] * 1000, 1),
        "longest_ms": round(waits[-1] * 1000, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server", help="a PostgreSQL URL whose server may have databases made")
    ap.add_argument("--leaves", type=int, default=100_000)
    ap.add_argument("--hold", type=float, default=3.0, help="the long read's seconds")
    ap.add_argument("--readers", type=int, default=2)
    a = ap.parse_args()
    import psycopg

    base = a.server.replace("postgresql+psycopg://", "postgresql://")
    name = f"lock_wait_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        print(json.dumps(run(base.rsplit("/", 1)[0] + "/" + name, a.leaves, a.hold, a.readers)))
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
