#!/usr/bin/env python3
"""The deliverer's reads and writes of the webhook outbox, timed on a watch with a backlog of
N due deliveries, half failed once, that PostgreSQL has never analysed (a new store's first
backlog, until autovacuum's next round), or with --analyse after an ANALYZE (audit 62g,
after 61h found the failing windows sorted such a backlog whole):

    .venv/bin/python bench/outbox_reads.py --deliveries 200000 --port 20712 [--analyse]

Each step is the median of 7 runs, each in a transaction rolled back (the backlog stays as it
was): a lease of 64 (`lease_deliveries`: the probe, `due_watches`, `due_deliveries` locked,
the lease and its access-log entries), a round's settling of those 64 (`lock_in_key_order`,
`record_outcomes` of 64 failures, `hidden_since_lease`, `renew`), their `release`, and the
Watches page's failing windows (`list_watches(with_state=True)`); then, every delivery's
retry put hours away, a lease that finds nothing due (an idle deliverer asks ten times a
second). With each figure: the time of each statement naming the outbox in one run more,
and the plans auto_explain logged of that run (as run, generic plans included), whose rows
a node of the outbox returned and whose Sorts say whether the backlog was walked.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # devsupport/ and tests/, beside src/

from sqlalchemy import event, update  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402
from failing_count import due_backlog  # noqa: E402
from servicetrail.store.engine import open_store, planned_generically  # noqa: E402
from servicetrail.store.logged_reads import lease_deliveries  # noqa: E402
from servicetrail.store.outbox import (  # noqa: E402
    Outcome,
    hidden_since_lease,
    lock_in_key_order,
    record_outcomes,
    release,
    renew,
)
from servicetrail.store.watch_tables import webhook_outbox  # noqa: E402
from servicetrail.store.watches import list_watches  # noqa: E402
from tests import personas as P  # noqa: E402

LEASE = timedelta(minutes=5)
SCHEDULE = [5.0, 300.0, 1800.0]


def backlog(engine, deliveries: int) -> None:
    due_backlog(engine, deliveries)
    with engine.begin() as conn:  # half of them failed once: the failing windows have work
        conn.execute(
            update(webhook_outbox)
            .where(webhook_outbox.c.event_id % 2 == 0)
            .values(attempts=1, last_error="answered 503")
        )


def statement_times(engine) -> tuple[list[str], Callable[[], None]]:
    """The time of each statement that names the outbox, run until the returned callable is
    called (as run: generic plans where the deliverer asks for them)."""
    seen: list[str] = []
    began: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        began.append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        took = (time.perf_counter() - began.pop()) * 1000
        if "webhook_outbox" in statement:
            seen.append(f"{took:7.2f} ms  {' '.join(statement.split())[:80]}")

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)

    def stop() -> None:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)

    return seen, stop


def plans_logged(log: Path, since: int) -> list[str]:
    """The outbox's plan nodes (and sorts) that auto_explain logged past `since` bytes of the
    server's log, with their actual rows: as run, generic plans included."""
    text = log.read_bytes()[since:].decode(errors="replace")
    found = []
    for line in text.splitlines():
        if "actual" in line and ("webhook_outbox" in line or "Sort" in line):
            found.append(re.sub(r"\(cost=[^)]*\) ", "", " ".join(line.split())))
    # a statement run once a row (record_outcomes' updates) is shown once
    return list(dict.fromkeys(re.sub(r"actual time=\S+ ", "", n) for n in found))


def timed(engine, step: Callable, log: Path) -> tuple[float, list[str]]:
    runs = []
    for i in range(8):
        if i == 7:  # each statement's time and plan, of one run more
            seen, stop = statement_times(engine)
            since = log.stat().st_size
        with engine.connect() as conn:
            conn.begin()
            if i == 7:
                conn.exec_driver_sql("LOAD 'auto_explain'")
                conn.exec_driver_sql("SET LOCAL auto_explain.log_min_duration = 0")
                conn.exec_driver_sql("SET LOCAL auto_explain.log_analyze = on")
            start = time.perf_counter()
            step(conn)
            runs.append((time.perf_counter() - start) * 1000)
            conn.rollback()
        if i == 7:
            stop()
    time.sleep(0.2)  # the log written
    return round(statistics.median(runs[:7]), 1), seen + plans_logged(log, since)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--deliveries", type=int, default=100_000)
    ap.add_argument("--port", type=int, help="the PostgreSQL server's port (else a free one)")
    ap.add_argument("--analyse", action="store_true", help="time after ANALYZE instead")
    a = ap.parse_args()
    server = PgServer()
    server.port = a.port or server.port
    server.start()
    try:
        engine = open_store(server.url())
        backlog(engine, a.deliveries)
        if a.analyse:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE webhook_outbox")
        now = datetime.now(UTC) + timedelta(minutes=1)
        with engine.connect() as conn:
            conn.begin()
            leased = [
                (d.watch_id, d.event_id, d.attempts) for d in lease_deliveries(conn, now, 64, LEASE)
            ]
            conn.rollback()
        keys = [(w, e) for w, e, _ in leased]

        def settle(conn) -> None:
            with planned_generically(conn):
                lock_in_key_order(conn, keys)
                failed = [Outcome(w, e, n, "failed", "answered 503") for w, e, n in leased]
                record_outcomes(conn, failed, now, SCHEDULE, locked=True)
                hidden_since_lease(conn, keys)
                renew(conn, {k: now for k in keys}, now + LEASE)

        steps = {
            "lease of 64": lambda conn: lease_deliveries(conn, now, 64, LEASE),
            "settle 64": settle,
            "release 64": lambda conn: release(conn, keys, now - LEASE),
            "failing windows": lambda conn: list_watches(conn, P.SOUTHENERGY, with_state=True),
        }
        for name, step in steps.items():
            ms, nodes = timed(engine, step, server.folder / "log")
            print(f"{name}: {ms} ms", *nodes, sep="\n    ")
        with engine.begin() as conn:  # a dead receiver's backlog, every retry hours away
            later = {"next_attempt_at": now + timedelta(hours=5)}
            conn.execute(update(webhook_outbox).values(later))
        ms, nodes = timed(engine, steps["lease of 64"], server.folder / "log")
        print(f"lease, nothing due: {ms} ms", *nodes, sep="\n    ")
        with engine.connect() as conn:
            never = "SELECT reltuples < 0 FROM pg_class WHERE relname = 'webhook_outbox'"
            print("outbox never analysed:", conn.exec_driver_sql(never).scalar())
        engine.dispose()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
