#!/usr/bin/env python3
"""A Party deletes its watch of --events events, each with a delivery waiting for a retry (a
receiver down for months), while two deliverer rounds run every 50 ms through the store's
functions: one settles a delivery of that watch (one the worker holds in flight) and one of
another Party's watch, the other only the other Party's. Prints the deletion's time and each
round's longest wait before and during it (review 50d: on PostgreSQL the first round waited
for the whole deletion, and a worker's deliveries of every Party wait with its round).

    .venv/bin/python bench/watch_deletion.py postgresql://.../NEWDB --events 1000000
    PYTHONPATH=OLD/src .venv/bin/python bench/watch_deletion.py URL ...   # another src/
    .venv/bin/python bench/watch_deletion.py URL --at-once   # as a server deletes (session 51)

The database must be new (the script loads the test personas into it).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from servicetrail.domain.watches import watch_spec  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.outbox import Outcome, record_outcomes  # noqa: E402
from servicetrail.store.watches import (  # noqa: E402
    create_watch,
    delete_watch_and_backlog,
    delete_watch_at_once,
    shed_deleted_watches,
)
from servicetrail.webhooks.deliver import SHED_STEPS  # noqa: E402
from tests.personas import NORTHPOWER, SOUTHENERGY, load_personas  # noqa: E402

PG_FILL = (
    "INSERT INTO watch_event SELECT :w, i, i, now(), '', now() FROM generate_series(1, :n) i",
    "INSERT INTO webhook_outbox SELECT :w, i, 1, now() + interval '1 hour', 'failed' "
    "FROM generate_series(1, :n) i",
)
SQLITE_FILL = tuple(
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) " + insert
    for insert in (
        "INSERT INTO watch_event SELECT :w, i, i, '2025-06-01T00:00:00.000000Z', '', "
        "'2026-01-01T00:00:00.000000Z' FROM s",
        "INSERT INTO webhook_outbox SELECT :w, i, 1, '2099-01-01T00:00:00.000000Z', 'failed' "
        "FROM s",
    )
)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url", help="a new database")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument(
        "--at-once",
        action="store_true",
        help="as a server deletes (delete_watch_at_once), then the worker's shedding timed "
        "(shed_deleted_watches, its steps a round, back to back)",
    )
    a = ap.parse_args()
    engine = open_store(a.url)
    load_personas(engine)
    hook = {"url": "https://hooks.example.com/w"}
    with engine.begin() as conn:
        deleted, other = (
            create_watch(conn, party, watch_spec({"name": "w", "webhook": hook}), "s" * 32)["id"]
            for party in (SOUTHENERGY, NORTHPOWER)
        )
        fill = PG_FILL if engine.dialect.name == "postgresql" else SQLITE_FILL
        for watch_id, events in ((deleted, a.events), (other, 10)):
            for statement in fill:
                conn.execute(text(statement), {"w": watch_id, "n": events})
            conn.execute(
                text("UPDATE watch SET last_event_id = :n WHERE id = :w"),
                {"w": watch_id, "n": events},
            )
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    waits: dict[str, list[tuple[float, float]]] = {"with_the_watch": [], "other_only": []}
    stop = threading.Event()

    def rounds(name: str, outcomes: list[Outcome]) -> None:
        while not stop.is_set():
            began = time.monotonic()
            with engine.begin() as conn:
                record_outcomes(conn, outcomes, datetime.now(timezone.utc), [3600.0] * 20)
            waits[name].append((began, time.monotonic() - began))
            time.sleep(0.05)

    threads = [
        threading.Thread(
            target=rounds,
            args=(
                "with_the_watch",
                [
                    Outcome(deleted, a.events // 2, 1, "failed", "x"),
                    Outcome(other, 5, 1, "failed", "x"),
                ],
            ),
        ),
        threading.Thread(target=rounds, args=("other_only", [Outcome(other, 6, 1, "failed", "x")])),
    ]
    for thread in threads:
        thread.start()
    time.sleep(2)
    started = time.monotonic()
    if a.at_once:
        assert delete_watch_at_once(engine, SOUTHENERGY, deleted)
    else:
        assert delete_watch_and_backlog(engine, SOUTHENERGY, deleted)
    ended = time.monotonic()
    shed_s, steps = 0.0, 0
    while a.at_once and (taken := shed_deleted_watches(engine, SHED_STEPS)):
        steps += taken
    shed_s = time.monotonic() - ended
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    engine.dispose()
    out: dict[str, object] = {"events": a.events, "delete_s": round(ended - started, 2)}
    if a.at_once:
        out["worker_shed_s"], out["worker_steps"] = round(shed_s, 2), steps
    for name, got in waits.items():
        during = [took for at, took in got if started - 0.1 <= at <= ended]
        out[name] = {
            "before_max_ms": round(
                1000 * max((took for at, took in got if at < started), default=0), 1
            ),
            "rounds_during": len(during),
            "during_max_ms": round(1000 * max(during, default=0), 1),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
