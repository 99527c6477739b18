#!/usr/bin/env python3
"""What the look at every log costs (log_sizes.all_log_sizes: a seal's first step until
migration 0031; since session 65 a server's start and `db check` list by it the logs an
older process appended to unlisted, log_sizes.list_unlisted_logs; bench/seal_fresh.py times
the seal now; the trees before 65 name it merkle_log.all_log_sizes, before 0031
merkle_log._stored_logs): its wall time on a fresh connection and on the same connection
again, that of the listing on a fresh connection (a store's start: nothing to list, nothing
written), and on PostgreSQL the
server's planning and execution of its statements (EXPLAIN (ANALYZE, BUFFERS, SUMMARY),
summed over the statements, mean of 7), for the tree on PYTHONPATH. A sqlite:/// URL times
the walls alone.

    PYTHONPATH=src .venv/bin/python bench/seal_walk.py postgresql://postgres@127.0.0.1:PORT/DB

--grow N first adds N months of 130 record leaves each (2021-01 on) with their partitions,
and an access-log partition a month with none, and seals them (run it once, in the folder
of the store's signing key): a store of the contract check's seed-7 scenario (13 logs) grown
by 48 is the 60-month store of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import psycopg
from sqlalchemy import create_engine, event

from servicetrail.store import log_sizes, merkle_log
from servicetrail.store.log_partitions import attach_log_months


def grow(url: str, months: int) -> None:
    engine = create_engine(url)
    names = [f"{2021 + i // 12}-{i % 12 + 1:02d}" for i in range(months)]
    if engine.dialect.name == "postgresql":  # SQLite's logs share one table
        with engine.begin() as conn:
            attach_log_months(conn, "sat", set(names))
            attach_log_months(conn, "access", set(names))
    first = 10_000_000
    for month in names:
        with engine.begin() as conn:
            leaves = [(first + i, month, (first + i).to_bytes(32, "big"), None) for i in range(130)]
            merkle_log.add_leaves(conn, "sat", leaves)
        first += 1_000
    merkle_log.seal_store(engine)


def walls(url: str, rounds: int) -> None:
    engine = create_engine(url, pool_size=1)
    fresh, again = [], []
    for _ in range(rounds):
        engine.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            began = time.perf_counter()
            logs = log_sizes.all_log_sizes(conn)
            fresh.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            log_sizes.all_log_sizes(conn)
            again.append((time.perf_counter() - began) * 1000)
    listing = []
    for _ in range(rounds):
        engine.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # connected, as the walls above
        began = time.perf_counter()
        log_sizes.list_unlisted_logs(engine)
        listing.append((time.perf_counter() - began) * 1000)
    print(
        f"listing the unlisted logs on a fresh connection: median "
        f"{statistics.median(listing):.1f} ms (least {min(listing):.1f})"
    )
    print(
        f"{len(logs)} logs; walk on a fresh connection: median {statistics.median(fresh):.1f} "
        f"ms (least {min(fresh):.1f}); again: median {statistics.median(again):.1f} "
        f"(least {min(again):.1f})"
    )


def plans(url: str, dsn: str) -> None:
    engine = create_engine(url)
    sent: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    with engine.connect() as conn:
        log_sizes.all_log_sizes(conn)

    def explain(raw: psycopg.Connection[Any], statement: str, parameters: Any) -> list[float]:
        found = raw.execute(
            "EXPLAIN (ANALYZE, BUFFERS, SUMMARY, FORMAT JSON) " + statement, parameters
        ).fetchone()
        assert found is not None
        top = found[0] if isinstance(found[0], list) else json.loads(found[0])
        planning = top[0].get("Planning", {})
        buffers = planning.get("Shared Hit Blocks", 0) + planning.get("Shared Read Blocks", 0)
        return [top[0]["Planning Time"], top[0]["Execution Time"], buffers]

    for label in ("fresh", "warm"):
        sums = [0.0, 0.0, 0.0]
        for _ in range(7):
            with psycopg.connect(dsn, autocommit=True) as raw:
                if label == "warm":
                    for statement, parameters in sent:
                        explain(raw, statement, parameters)
                for statement, parameters in sent:
                    for i, value in enumerate(explain(raw, statement, parameters)):
                        sums[i] += value / 7
        print(
            f"{len(sent)} statements, {label} connection: planning {sums[0]:.1f} ms, "
            f"execution {sums[1]:.1f} ms, planning buffers {sums[2]:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--grow", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    url = args.url.replace("postgresql://", "postgresql+psycopg://", 1)
    if args.grow:
        grow(url, args.grow)
    walls(url, args.rounds)
    if url.startswith("postgresql"):
        plans(url, args.url)


if __name__ == "__main__":
    main()
