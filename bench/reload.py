#!/usr/bin/env python3
"""What the store's side of loading a file again costs: `append_rows` on rows it holds.

    .venv/bin/python bench/reload.py                     # 40,000 records, both engines
    .venv/bin/python bench/reload.py --records 20000 --engines sqlite --rounds 5 --port 20401

A day's file loaded again meets every one of its records in the store: each is a duplicate
(the same content) or a conflict (other content). Rows of `--records` requests are made once
(row_maker, as a parsing worker makes them), stored in batches of 4,000 (the loader's
chunk), and then given again `--rounds` times, the same (duplicates) and changed (conflicts),
each round one transaction that is rolled back. Only this process's CPU inside append_rows
is timed (time.process_time; PostgreSQL's server CPU is not in it): parsing, the reject file
and the server are the same whatever append_rows does. Prints the median rows/s of each.
Run it with the code to compare first on PYTHONPATH (e.g. `git archive` of the code before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness import PgServer, Store

from servicetrail.store.engine import make_engine
from servicetrail.store.migrate import upgrade_to_head
from servicetrail.store.record_rows import row_maker
from servicetrail.store.writer import append_rows

CHUNK = 4000
USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-00-00-00-00-00-01"


def made(dialect: str, records: int, payload: str) -> list:
    make = row_maker(dialect)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return [
        make(
            start + timedelta(minutes=n),
            "request",
            f"{USER}:{DEVICE}:{10**12 + n}",
            "4.1.1",
            USER,
            DEVICE,
            "",
            f"{payload}{n}",
            origin=n + 1,
        )
        for n in range(records)
    ]


def appended(engine, rows: list, keep: bool) -> tuple[float, tuple[int, int, int]]:
    """CPU seconds in append_rows for all `rows`, and (loaded, duplicates, conflicts)."""
    counts = [0, 0, 0]
    cpu = 0.0
    with engine.connect() as conn:
        transaction = conn.begin()
        for start in range(0, len(rows), CHUNK):
            began = time.process_time()
            done = append_rows(conn, rows[start : start + CHUNK])
            cpu += time.process_time() - began
            counts[0] += done.loaded
            counts[1] += done.duplicates
            counts[2] += len(done.conflicts)
        if keep:
            transaction.commit()
        else:
            transaction.rollback()
    return cpu, (counts[0], counts[1], counts[2])


def measure(url: str, dialect: str, records: int, rounds: int) -> dict:
    engine = make_engine(url)
    upgrade_to_head(engine)
    _, counts = appended(engine, made(dialect, records, "P"), keep=True)
    assert counts == (records, 0, 0), counts
    same, changed = made(dialect, records, "P"), made(dialect, records, "Q")
    runs: dict[str, list[float]] = {"duplicates": [], "conflicts": []}
    for _ in range(rounds):
        cpu, counts = appended(engine, same, keep=False)
        assert counts == (0, records, 0), counts
        runs["duplicates"].append(records / cpu)
        cpu, counts = appended(engine, changed, keep=False)
        assert counts == (0, 0, records), counts
        runs["conflicts"].append(records / cpu)
    engine.dispose()
    return {name: round(statistics.median(rates)) for name, rates in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--port", type=int, default=0, help="the PostgreSQL server's")
    a = parser.parse_args()
    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    print(f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as work:
        for kind in a.engines.split(","):
            pg = None
            if kind == "postgresql":
                pg = PgServer()
                pg.port = a.port or pg.port
                pg.start()
            try:
                url = Store(kind, Path(work), pg).fresh("reload")
                rates = measure(url, "postgresql" if pg else "sqlite", a.records, a.rounds)
            finally:
                if pg is not None:
                    pg.stop()
            print(f"{kind}: " + ", ".join(f"{k} {v:,} rows/s" for k, v in rates.items()))
    print(f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
