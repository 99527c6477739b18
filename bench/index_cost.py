#!/usr/bin/env python3
"""What `index_new` itself costs (issue 12): the visibility index's rows of N stored records,
written again and again into an emptied `sat_visibility`, batch by batch as the ingest does.

    .venv/bin/python bench/index_cost.py                       # 100k records, PostgreSQL
    .venv/bin/python bench/index_cost.py --records 50000 --rounds 5 --engines sqlite,postgresql

A registry-loaded store gets the records by `servicetrail ingest` without the index and the
logs (bench/without_index_and_logs), untimed. Each round then gives this process's CPU
seconds for the batches' `index_new` and, on PostgreSQL, its backend's (/proc/PID/stat):
the index's own cost without the ingest's, whose seal varies by seconds from run to run on
PostgreSQL and hides a change of a tenth. Results go to stdout and bench/out/index_cost-N.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import (  # noqa: E402
    Store,
    backend_cpu,
    on_each_engine,
    store_of_records,
    with_cpu_medians,
)

from servicetrail.store.engine import make_engine  # noqa: E402
from servicetrail.store.visibility_index import index_new  # noqa: E402

BATCH = 4000  # the ingest's batch
# the records as the writer hands them to index_new: logged_at in the engine's form
_RECORDS = {
    "postgresql": "SELECT id, (extract(epoch FROM logged_at) * 1000000)::int8 - 946684800000000, "
    "kind, srv, user_id, device_id FROM sat_record ORDER BY id",
    "sqlite": "SELECT id, logged_at, kind, srv, user_id, device_id FROM sat_record ORDER BY id",
}


def bench_engine(store: Store, folder: Path, rounds: int) -> dict:
    url = store_of_records(store, folder, "index-cost")
    engine = make_engine(url)
    runs = []
    with engine.connect() as conn:
        records = [tuple(r) for r in conn.exec_driver_sql(_RECORDS[store.kind]).fetchall()]
        batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
        pid = (
            conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            if store.kind == "postgresql"
            else None
        )
        conn.commit()
        for _ in range(rounds):
            # TRUNCATE on PostgreSQL: a DELETE would leave dead entries for the inserts to step over
            empty = "TRUNCATE" if store.kind == "postgresql" else "DELETE FROM"
            conn.exec_driver_sql(f"{empty} sat_visibility")
            conn.commit()
            client, server = time.process_time(), backend_cpu(pid)
            rows = 0
            for batch in batches:
                rows += index_new(conn, batch)
                conn.commit()
            runs.append(
                {
                    "client_cpu_s": round(time.process_time() - client, 3),
                    "server_cpu_s": round(backend_cpu(pid) - server, 3),
                    "index_rows": rows,
                }
            )
            print(store.kind, runs[-1], file=sys.stderr, flush=True)
    engine.dispose()
    return with_cpu_medians(runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="postgresql")
    a = parser.parse_args()
    on_each_engine(
        a.records,
        a.engines,
        "index_cost",
        lambda store, folder: bench_engine(store, folder, a.rounds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
