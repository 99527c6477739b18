#!/usr/bin/env python3
"""What migration 0030 (each log's keys its partition's own, issue 14; session 56, on the
branch local-keys-0030, not landed) costs a PostgreSQL store's upgrade; run it with 0030's
code on PYTHONPATH: --leaves leaves over --months months' logs, with their tiles, sealed, stored
by the code before it (--before: that code's src folder, e.g. `git archive origin/main src |
tar -x -C /tmp/before`), then this code's upgrade to the head timed, and its downgrade and
upgrade again, --rounds times (wall seconds; the upgrade writes no row, it builds each
partition's keys from its rows).

    PYTHONPATH=/tmp/branch/src .venv/bin/python bench/local_keys_upgrade.py \
        postgresql://.../postgres --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timezone


def fill(url: str, leaves: int, months: int) -> None:
    """In a process whose servicetrail is the code before 0030."""
    from servicetrail.store.engine import open_store
    from servicetrail.store.merkle_log import add_leaves, seal_store
    from servicetrail.store.partitions import ensure_months

    engine = open_store(url)
    ensure_months(engine, [datetime(2025, m, 15, tzinfo=timezone.utc) for m in range(1, 13)])
    rng = random.Random(56)
    each = leaves // months
    for month in range(1, months + 1):
        for first in range(0, each, 20_000):
            count = min(20_000, each - first)
            start = (month - 1) * each + first + 1
            rows = [
                (start + i, f"2025-{month:02d}", rng.randbytes(32), rng.randbytes(16))
                for i in range(count)
            ]
            with engine.begin() as conn:
                add_leaves(conn, "sat", rows)
    seal_store(engine)
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server")
    ap.add_argument("--before", required=True)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fill", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fill:
        fill(a.fill, a.leaves, a.months)
        return 0
    import psycopg
    from alembic import command

    from servicetrail.store import migrate
    from servicetrail.store.engine import make_engine

    base = a.server.replace("postgresql+psycopg://", "postgresql://")
    name = f"upgrade_0030_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, a.server, "--before", a.before, "--fill", url]
        + ["--leaves", str(a.leaves), "--months", str(a.months)],
        env={**os.environ, "PYTHONPATH": a.before},
        check=True,
    )
    filled = time.perf_counter() - began
    engine = make_engine(url)
    config = migrate._config(engine)
    times: dict[str, list[float]] = {"upgrade": [], "downgrade": []}
    for round_ in range(a.rounds):
        if round_:
            began = time.perf_counter()
            command.downgrade(config, "0029")
            times["downgrade"].append(round(time.perf_counter() - began, 2))
        with engine.begin() as conn:  # each round on the same statistics and hint bits
            conn.exec_driver_sql("CHECKPOINT")
        began = time.perf_counter()
        command.upgrade(config, "head")
        times["upgrade"].append(round(time.perf_counter() - began, 2))
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM log_leaf").scalar_one()
    engine.dispose()
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")
    print(json.dumps({"leaves": stored, "fill_s": round(filled, 1), **times}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
