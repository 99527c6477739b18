#!/usr/bin/env python3
"""The Watches page's look for the watches with a failed delivery (`watches._failing`), timed
as it was (`watch_id = id AND attempts > 0 LIMIT 1`, by 0011's index or the table) and as it
is (a probe of 0030's partial index of the failed ones), on two shapes of one backlog of
200,000 due deliveries, the failures (one watch's, every other delivery) rewritten by an
UPDATE to the table's end: 50 watches of 4,000, or one watch holding it all; never
analysed, the outbox analysed, and both (audit 63c, after 62g found the analysed look a Seq
Scan):

    .venv/bin/python bench/failed_watches.py --port 20304 [--shape one]

Each figure is the median of 21 looks (ms), as it was and as it is taking turns; as it was,
in a transaction that drops 0030's index and is rolled back. With the plan of one more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # devsupport/ and tests/, beside src/
sys.path.insert(0, str(ROOT / "bench"))

from due_watches import backlog  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402

SHAPES = {"many": (50, 4_000), "one": (1, 200_000)}
WAS = (
    "SELECT watch.id FROM watch WHERE watch.id = ANY(%(ids)s) AND (SELECT o.watch_id"
    " FROM webhook_outbox o WHERE o.watch_id = watch.id AND o.attempts > %(zero)s LIMIT 1)"
    " IS NOT NULL ORDER BY watch.id"
)
IS = (  # as watches._failing writes it
    "SELECT watch.id FROM watch WHERE watch.id = ANY(%(ids)s) AND (SELECT o.watch_id"
    " FROM webhook_outbox o WHERE o.watch_id >= watch.id AND o.watch_id <= watch.id"
    " AND o.attempts > 0 ORDER BY o.watch_id, o.next_attempt_at LIMIT 1) IS NOT NULL"
    " ORDER BY watch.id"
)


def looks(conn: Connection, sql: str, ids: list[int]) -> tuple[list[float], str]:
    cursor = conn.connection.dbapi_connection.cursor()
    runs = []
    for _ in range(21):
        start = time.perf_counter()
        cursor.execute(sql, {"ids": ids, "zero": 0})
        assert len(cursor.fetchall()) == 1
        runs.append((time.perf_counter() - start) * 1000)
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, {"ids": ids, "zero": 0})
    return runs, "\n".join(r[0] for r in cursor.fetchall())


def measure(engine: Engine, shape: tuple[int, int]) -> None:
    """The backlog of `shape` (watches, due each), then both looks in each state."""
    backlog(engine, *shape)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE webhook_outbox SET attempts = 1, last_error = 'answered 503'"
            " WHERE watch_id = (SELECT max(id) FROM watch) AND mod(event_id, 2) = 0"
        )
    for state in ("never analysed", "ANALYZE webhook_outbox", "ANALYZE"):
        if state != "never analysed":
            with engine.begin() as conn:
                conn.exec_driver_sql(state)
        runs: dict[str, list[float]] = {"was": [], "is": []}
        plans: dict[str, Any] = {}
        for _ in range(3):  # in turns
            with engine.connect() as conn:
                ids = conn.exec_driver_sql("SELECT array_agg(id) FROM watch").scalar_one()
                conn.exec_driver_sql("DROP INDEX ix_webhook_outbox_failed")
                took, plans["was"] = looks(conn, WAS, ids)
                runs["was"] += took
                conn.rollback()
                took, plans["is"] = looks(conn, IS, ids)
                runs["is"] += took
        for name, taken in runs.items():
            ms = round(statistics.median(taken), 2)
            print(f"{shape} (watches, due each), {state}, as it {name}: {ms} ms")
            print("    " + plans[name].replace("\n", "\n    "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0, help="PostgreSQL's port (else a free one)")
    ap.add_argument("--shape", choices=SHAPES, default="many", help="50 watches, or one")
    a = ap.parse_args()
    server = PgServer()
    server.port = a.port or server.port
    try:
        engine = open_store(server.start().url())
        try:
            measure(engine, SHAPES[a.shape])
        finally:
            engine.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
