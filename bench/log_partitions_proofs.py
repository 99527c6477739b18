#!/usr/bin/env python3
"""A proof's reads on the logs partitioned by log (migration 0029) against one table each
(0028), the same leaves in both, in one process, a round of one then a round of the other,
so that the machine's other load falls on both alike (finding 52b 1's fix, its cost).

The two stores are made by the code of each layout (--before: the 0028 code's src folder,
e.g. `git archive origin/main src | tar -x -C /tmp/before`), each with a year of months'
partitions and --leaves leaves in one month's log, sealed; then this code's proof reads
(where the leaf is, by entry id and month as the record proof reads it, the newest
checkpoint, the inclusion proof) run on both, --rounds rounds of --proofs each.

    .venv/bin/python bench/log_partitions_proofs.py postgresql://.../postgres \
        --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

MONTH = "2025-06"


def fill(url: str, leaves: int) -> None:
    """In a process whose servicetrail is the layout's code."""
    from servicetrail.store.engine import open_store
    from servicetrail.store.merkle_log import add_leaves, seal_store
    from servicetrail.store.partitions import ensure_months

    engine = open_store(url)
    ensure_months(engine, [datetime(2025, m, 15, tzinfo=timezone.utc) for m in range(1, 13)])
    rng = random.Random(53)
    for first in range(0, leaves, 20_000):
        rows = [(i + 1, MONTH, rng.randbytes(32), None) for i in range(first, first + 20_000)]
        with engine.begin() as conn:
            add_leaves(conn, "sat", rows[: leaves - first])
    seal_store(engine)
    engine.dispose()


def proofs(conn, rng: random.Random, leaves: int, count: int) -> list[float]:  # noqa: ANN001
    from servicetrail.store.log_tree import StoredTree, latest_checkpoint

    driver = conn.connection.driver_connection
    times = []
    for _ in range(count):
        entry = rng.randrange(1, leaves + 1)
        began = time.perf_counter()
        at, index = driver.execute(
            "SELECT month, leaf_index FROM log_leaf WHERE family = 'sat' AND entry_id = %s "
            "AND month = %s",
            (entry, MONTH),
        ).fetchone()
        checkpoint = latest_checkpoint(conn, "sat", at)
        StoredTree(conn, "sat", at).inclusion(index, checkpoint.size)
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server")
    ap.add_argument("--before", required=True)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--fill", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fill:
        fill(a.fill, a.leaves)
        return 0
    import psycopg

    from servicetrail.store.engine import make_engine

    base = a.server.replace("postgresql+psycopg://", "postgresql://")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    urls = {}
    for layout, src in (("0028", a.before), ("0029", here)):
        name = f"proofs_{layout}_{os.getpid()}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        urls[layout] = base.rsplit("/", 1)[0] + "/" + name
        subprocess.run(
            [sys.executable, __file__, a.server, "--before", a.before, "--fill", urls[layout]]
            + ["--leaves", str(a.leaves)],
            env={**os.environ, "PYTHONPATH": src},
            check=True,
        )
    rng = random.Random(7)
    medians: dict[str, list[float]] = {"0028": [], "0029": []}
    every: dict[str, list[float]] = {"0028": [], "0029": []}
    engines = {layout: make_engine(url) for layout, url in urls.items()}
    conns = {layout: engine.connect() for layout, engine in engines.items()}
    for conn in conns.values():
        proofs(conn, rng, a.leaves, a.proofs)  # warm: the caches, the prepared statements
    for _ in range(a.rounds):
        for layout, conn in conns.items():
            times = proofs(conn, rng, a.leaves, a.proofs)
            medians[layout].append(statistics.median(times))
            every[layout] += times
    out = {}
    for layout, times in every.items():
        times.sort()
        out[layout] = {
            "p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * len(times))], 3),
            "median_of_round_medians_ms": round(statistics.median(medians[layout]), 3),
        }
    for layout, conn in conns.items():
        conn.close()
        engines[layout].dispose()
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {urls[layout].rsplit('/', 1)[1]}")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
