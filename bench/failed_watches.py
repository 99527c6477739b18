#!/usr/bin/env python3
"""The Watches page's look for the watches with a failed delivery (`watches._failing`), timed
as it was (`watch_id = id AND attempts > 0 LIMIT 1`, by 0011's index or the table) and as it
is (a probe of 0030's partial index of the failed ones), on three shapes of one backlog of
200,000 due deliveries, the failures (the last watch's, every other delivery) rewritten by
an UPDATE to the table's end: 50 watches of 4,000, two of 100,000 (63i), or one watch
holding it all; never
analysed, the outbox analysed, and both (audit 63c, after 62g found the analysed look a Seq
Scan):

    .venv/bin/python bench/failed_watches.py --port 20304 [--shape one|two] [--read windows]

Each figure is the median of 21 looks (ms), as it was and as it is taking turns; as it was,
in a transaction that drops 0030's index and is rolled back. With the plan of one more.
`--read windows`: the failing watch's two windows instead (`outbox_sql.failed_window`, read
with sorts off as `watches._failing` reads them), as they were (`watch_id = id`, ordered by
the retry time: audit 63i) and as they are, both with 0030's index.
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
from sqlalchemy.dialects import postgresql  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.outbox_sql import failed_window  # noqa: E402
from servicetrail.store.watches import FAILING_WINDOW  # noqa: E402

SHAPES = {"many": (50, 4_000), "two": (2, 100_000), "one": (1, 200_000)}
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
WINDOWS_SHOWN = ("on webhook_outbox", "Sort", "Execution Time")


def looks(conn: Connection, sqls: list[str], params: dict[str, Any]) -> tuple[list[float], str]:
    """21 runs of the statements `sqls` in a row (ms), and their plans when run once more.
    The look finds the one watch; the windows may find nothing the Party sees (the events'
    records are not there), and read their whole windows for it."""
    cursor = conn.connection.dbapi_connection.cursor()
    runs = []
    for _ in range(21):
        start = time.perf_counter()
        for sql in sqls:
            cursor.execute(sql, params)
            assert len(cursor.fetchall()) == 1 or "ids" not in params
        runs.append((time.perf_counter() - start) * 1000)
    plans = []
    for sql in sqls:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plans += [r[0] for r in cursor.fetchall()]
    return runs, "\n".join(plans)


def windows(was: bool) -> tuple[list[str], dict[str, Any]]:
    """A watch's two windows as `watches._failing_one` reads them, with their constants'
    parameters; `was`: as they were before 63i, the watch an equality and each window ordered
    by the retry time alone."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    said, constants = [], {}
    for newest_first in (True, False):
        compiled = failed_window(newest_first, True).compile(dialect=dialect)
        said.append(str(compiled))
        constants.update({k: v for k, v in compiled.params.items() if v is not None})
    if was:
        bound = (
            "webhook_outbox.watch_id >= %(watch_id)s AND webhook_outbox.watch_id <= %(watch_id)s"
        )
        old = {
            bound: "webhook_outbox.watch_id = %(watch_id)s",
            "ORDER BY webhook_outbox.watch_id DESC, webhook_outbox.next_attempt_at DESC": (
                "ORDER BY webhook_outbox.next_attempt_at DESC"
            ),
            "ORDER BY webhook_outbox.watch_id, webhook_outbox.next_attempt_at": (
                "ORDER BY webhook_outbox.next_attempt_at"
            ),
            "ORDER BY failed.watch_id DESC, failed.next_attempt_at DESC": (
                "ORDER BY failed.next_attempt_at DESC"
            ),
        }
        for new, then in old.items():
            assert new in "".join(said), new
            said = [sql.replace(new, then) for sql in said]
    return said, constants


def measure(engine: Engine, shape: tuple[int, int], read: str) -> None:
    """The backlog of `shape` (watches, due each), then both looks (or windows) in each
    state."""
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
                if read == "windows":  # as watches._sorts_off has them read
                    conn.exec_driver_sql("SET enable_sort = off")
                    for name in runs:
                        sqls, constants = windows(name == "was")
                        asked = {"watch_id": max(ids), "window": FAILING_WINDOW, **constants}
                        took, plans[name] = looks(conn, sqls, asked)
                        runs[name] += took
                    continue
                conn.exec_driver_sql("DROP INDEX ix_webhook_outbox_failed")
                took, plans["was"] = looks(conn, [WAS], {"ids": ids, "zero": 0})
                runs["was"] += took
                conn.rollback()
                took, plans["is"] = looks(conn, [IS], {"ids": ids, "zero": 0})
                runs["is"] += took
        for name, taken in runs.items():
            ms = round(statistics.median(taken), 2)
            print(f"{shape} (watches, due each), {read}, {state}, as it {name}: {ms} ms")
            shown = plans[name].splitlines()
            if read == "windows":  # the outbox's scans, sorts and times of the long plans
                shown = [line for line in shown if any(w in line for w in WINDOWS_SHOWN)]
            print("    " + "\n    ".join(shown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0, help="PostgreSQL's port (else a free one)")
    ap.add_argument("--shape", choices=SHAPES, default="many", help="50 watches, two, or one")
    ap.add_argument("--read", choices=("look", "windows"), default="look", help="which to time")
    a = ap.parse_args()
    server = PgServer()
    server.port = a.port or server.port
    try:
        engine = open_store(server.start().url())
        try:
            measure(engine, SHAPES[a.shape], a.read)
        finally:
            engine.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
