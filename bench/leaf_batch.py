#!/usr/bin/env python3
"""What one ingest batch's leaves cost on PostgreSQL: add_leaves of 500 leaves to a new
month's record log, 60 batches each committed, for the tree on PYTHONPATH (session 64
compared it before and after add_leaves listed its logs in log_unsealed). Writes leaves with
no records: run it on a copy of a store.

    PYTHONPATH=src .venv/bin/python bench/leaf_batch.py \\
        postgresql+psycopg://postgres@127.0.0.1:PORT/DB 2031-01 100000000
"""

from __future__ import annotations

import statistics
import sys
import time

from sqlalchemy import create_engine

from servicetrail.store import merkle_log
from servicetrail.store.log_partitions import attach_log_months

BATCH, BATCHES = 500, 60


def main(url: str, month: str, first: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        attach_log_months(conn, "sat", {month})
    walls = []
    for batch in range(BATCHES):
        ids = range(first + batch * BATCH, first + (batch + 1) * BATCH)
        rows = [(i, month, i.to_bytes(32, "big"), None) for i in ids]
        began = time.perf_counter()
        with engine.begin() as conn:
            merkle_log.add_leaves(conn, "sat", rows)
        walls.append((time.perf_counter() - began) * 1000)
    print(
        f"a batch of {BATCH} leaves: median {statistics.median(walls):.2f} ms, "
        f"least {min(walls):.2f}"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
