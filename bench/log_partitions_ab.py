#!/usr/bin/env python3
"""The logs' leaves and tiles partitioned by log (migration 0029) against one table each
(0028), on the same leaves in one process, turn and turn about, so that the machine's other
load falls on both alike (findings 52b 1, 2):

- add: --leaves leaves appended to one month's log as an ingest appends them (add_leaves,
  20,000 a batch), then a seal;
- proof: where a random leaf is, by its entry id alone (every month's partition asked, as
  bench/logs.py asks it) and with its month named (as the record proof's read asks it), the
  newest checkpoint and the inclusion proof, --proofs of each, p50 / p95;
- retention of that month (partitions.drop_months): how long, and the longest an ingest
  batch and a seal (alternating, from another thread) waited meanwhile.
The 0028 store runs the old retention (its leaves by DELETE) as stored in --before (a
checkout's src, e.g. `git archive origin/main src | tar -x -C /tmp/before`), in a process of
its own: `--layout`, run by this script.

    .venv/bin/python bench/log_partitions_ab.py postgresql://.../postgres --before /tmp/before/src

Makes and drops its own databases on that server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20_000


def one_layout(url: str, leaves: int, proofs: int, rounds: int) -> dict[str, object]:
    """In a process whose servicetrail is the layout's code: fill, proofs, retention."""
    from servicetrail.signing import signer_for
    from servicetrail.store.engine import open_store
    from servicetrail.store.log_tree import StoredTree, latest_checkpoint
    from servicetrail.store.merkle_log import add_leaves, seal_store
    from servicetrail.store.partitions import _add_months, drop_months, ensure_months

    engine = open_store(url)
    now = datetime.now(timezone.utc)
    kept = [_add_months(now.year, now.month, -i) for i in range(12)]  # a year's months
    ensure_months(engine, [datetime(y, m, 15, tzinfo=timezone.utc) for y, m in kept])
    year, month = kept[-1]
    old, current = f"{year:04d}-{month:02d}", f"{now.year:04d}-{now.month:02d}"
    rng = random.Random(52)
    out: dict[str, object] = {}
    began = time.perf_counter()
    for first in range(0, leaves, BATCH):
        rows = [(i + 1, old, rng.randbytes(32), None) for i in range(first, first + BATCH)]
        with engine.begin() as conn:
            add_leaves(conn, "sat", rows[: leaves - first])
    out["add_s"] = round(time.perf_counter() - began, 2)
    began = time.perf_counter()
    seal_store(engine)
    out["seal_s"] = round(time.perf_counter() - began, 3)
    # where the leaf is: by its entry id alone (every month's partition asked), and with its
    # month named as the record proof's read names it (store.log_records.sealed_leaf_of)
    where = {
        "proof_by_id": (
            "SELECT month, leaf_index FROM log_leaf WHERE family = 'sat' AND entry_id = %s",
            False,
        ),
        "proof_in_month": (
            "SELECT month, leaf_index FROM log_leaf WHERE family = 'sat' "
            "AND entry_id = %s AND month = %s",
            True,
        ),
    }
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        for name, (statement, with_month) in where.items():
            times = []
            for _ in range(proofs * rounds):
                entry = rng.randrange(1, leaves + 1)
                began = time.perf_counter()
                args = (entry, old) if with_month else (entry,)
                at, index = driver.execute(statement, args).fetchone()
                checkpoint = latest_checkpoint(conn, "sat", at)
                assert checkpoint is not None
                StoredTree(conn, "sat", at).inclusion(index, checkpoint.size)
                times.append((time.perf_counter() - began) * 1000)
            times.sort()
            out[f"{name}_ms_p50"] = round(statistics.median(times), 3)
            out[f"{name}_ms_p95"] = round(times[int(0.95 * len(times))], 3)
    waits: dict[str, list[float]] = {"ingest": [], "seal": []}
    done = threading.Event()
    next_id = [leaves + 1]

    def beside() -> None:
        while not done.is_set():
            began = time.perf_counter()
            with engine.begin() as conn:
                add_leaves(conn, "sat", [(next_id[0], current, rng.randbytes(32), None)])
            next_id[0] += 1
            waits["ingest"].append(time.perf_counter() - began)
            began = time.perf_counter()
            seal_store(engine)
            waits["seal"].append(time.perf_counter() - began)

    other = threading.Thread(target=beside)
    signer = signer_for(engine.url.render_as_string(hide_password=False))
    began = time.perf_counter()
    other.start()
    dropped = drop_months(engine, keep_months=10, signer=signer)
    out["retention_s"] = round(time.perf_counter() - began, 3)
    done.set()
    other.join()
    assert f"sat_record_p{old[:4]}_{old[5:]}" in dropped, dropped
    for kind, values in waits.items():
        out[f"{kind}_longest_wait_s"] = round(max(values, default=0.0), 3)
    engine.dispose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server", help="a PostgreSQL URL whose server may have databases made")
    ap.add_argument("--before", required=True, help="the 0028 code's src folder")
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=2_000)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--layout", help=argparse.SUPPRESS)  # a child's own run: its database
    a = ap.parse_args()
    if a.layout:
        print(json.dumps(one_layout(a.layout, a.leaves, a.proofs, 1)))
        return 0
    import psycopg

    base = a.server.replace("postgresql+psycopg://", "postgresql://")
    found: dict[str, list[dict[str, object]]] = {"0028": [], "0029": []}
    for turn in range(a.turns):
        for layout, src in (("0028", a.before), ("0029", str(ROOT / "src"))):
            name = f"ab_{layout}_{turn}_{os.getpid()}"
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            url = base.rsplit("/", 1)[0] + "/" + name
            run = subprocess.run(
                [sys.executable, __file__, a.server, "--before", a.before, "--layout", url]
                + ["--leaves", str(a.leaves), "--proofs", str(a.proofs)],
                env={**os.environ, "PYTHONPATH": src},
                capture_output=True,
                text=True,
                check=True,
            )
            found[layout].append(json.loads(run.stdout.strip().splitlines()[-1]))
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {name}")
            print(layout, found[layout][-1], flush=True)
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
