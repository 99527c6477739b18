#!/usr/bin/env python3
"""The lease round's look for the watches with a delivery due (`outbox_sql.due_watches`), timed
on two shapes of one backlog: one watch holding all of it (a Party whose receiver fails, or
is slow, on purpose), and many watches with a few due each; never analysed and analysed
(audit 62i, after 62g found the first, analysed, read by a Seq Scan and a Sort):

    .venv/bin/python bench/due_watches.py --port 20901 [--shape many]          # PostgreSQL
    .venv/bin/python bench/due_watches.py --sqlite /tmp/due.db [--shape many]  # SQLite

Each figure is the median of 21 looks (ms), planned for their values as `outbox.lease_due`
asks; on PostgreSQL with the plan of one more, EXPLAIN (ANALYZE, BUFFERS), and the server's
median Execution Time of 21 more (the fetch of 13,000 rows left out). PostgreSQL times the
look as EXISTS (SQLite's still), as 62i's probe (a SubPlan in the watches' filter) and as it
is (the same probe as a LATERAL join, 63c), taking turns.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # devsupport/ and tests/, beside src/

from sqlalchemy import bindparam, select, text, tuple_  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402
from servicetrail.domain.watches import watch_spec  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.schema import UtcDateTime  # noqa: E402
from servicetrail.store.outbox_sql import due_watches, kept_gone  # noqa: E402
from servicetrail.store.watch_tables import watch, webhook_outbox  # noqa: E402
from servicetrail.store.watches import create_watch  # noqa: E402
from tests import personas as P  # noqa: E402

# watches (hooked), and due deliveries of each: one that holds a backlog, or many with little
SHAPES = {"one": (1, 200_000), "many": (13_000, 15)}
MORE_WATCHES = (
    "INSERT INTO watch (party_id, name, devices, srvs, kinds, senders, created_at,"
    " after_record_id, webhook_url, webhook_secret) WITH RECURSIVE n(i) AS (SELECT 2"
    " WHERE 2 <= :watches UNION ALL SELECT i + 1 FROM n WHERE i < :watches) SELECT party_id,"
    " name, devices, srvs, kinds, senders, created_at, after_record_id, webhook_url,"
    " webhook_secret FROM watch, n"
)
EVENTS = (
    "INSERT INTO watch_event WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < :each) SELECT w.id, n.i, n.i, :at, 'x', :at FROM watch w, n"
)
OUTBOX = (
    "INSERT INTO webhook_outbox (watch_id, event_id, attempts, next_attempt_at)"
    " SELECT watch_id, event_id, 0, matched_at FROM watch_event"
)


def backlog(engine: Engine, watches: int, each: int) -> None:
    """The personas, and `watches` webhooks of SOUTHENERGY's with `each` deliveries due (of
    events whose records are not there: the look reads the outbox and the watches alone)."""
    P.load_personas(engine)
    pg = engine.dialect.name == "postgresql"
    hook = {"name": "w", "webhook": {"url": "https://hooks.example.com/w"}}
    at = datetime(2025, 6, 1, tzinfo=UTC)
    with engine.begin() as conn:
        if pg:  # timed unanalysed, it stays so
            conn.exec_driver_sql("ALTER TABLE webhook_outbox SET (autovacuum_enabled = off)")
            conn.exec_driver_sql("ALTER TABLE watch SET (autovacuum_enabled = off)")
        create_watch(conn, P.SOUTHENERGY, watch_spec(hook), "whsec_bench")
        conn.execute(text(MORE_WATCHES), {"watches": watches})
        conn.execute(text(EVENTS), {"each": each, "at": at})
        conn.execute(text(OUTBOX))
        if pg:  # the events' table is not timed: its statistics are a store's
            conn.exec_driver_sql("ANALYZE watch_event")


def subplan_probe() -> Any:
    """62i's PostgreSQL look, as it was: the same probe per watch, a scalar subquery in the
    WHERE (a SubPlan), not a LATERAL join (63c)."""
    o, w = webhook_outbox.c, watch.c
    now = bindparam("now", type_=UtcDateTime)
    probe = (
        select(o.watch_id)
        .where(o.watch_id >= w.id, tuple_(o.watch_id, o.next_attempt_at) <= tuple_(w.id, now))
        .order_by(o.watch_id, o.next_attempt_at)
        .limit(1)
    )
    hooked = [w.webhook_url.is_not(None), w.webhook_disabled_at.is_(None), ~kept_gone(w.id)]
    due = probe.scalar_subquery().is_not(None)
    return select(w.id, w.webhook_url, w.party_id).where(*hooked, due).order_by(w.id)


def server_ms(cursor: Any, sql: str, params: dict[str, Any]) -> float:
    """The statement's median Execution Time (ms) of 21 runs, by EXPLAIN ANALYZE without
    its timing of each node: the server's work alone, not the fetch of its rows (13,000 of
    them take a client longer than the look)."""
    runs = []
    for _ in range(21):
        cursor.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params)
        runs.append(cursor.fetchone()[0][0]["Execution Time"])
    return round(statistics.median(runs), 2)


def timed(engine: Engine, now: datetime, statements: dict[str, Any]) -> dict[str, Any]:
    """Each statement's median of 21 looks (ms), the statements taking turns (the machine's
    load is each one's), the watches each found and its plan."""
    runs: dict[str, list[float]] = {name: [] for name in statements}
    found: dict[str, int] = {}
    plans: dict[str, str] = {}
    with engine.connect() as conn:
        for _ in range(21):
            for name, statement in statements.items():
                start = time.perf_counter()
                found[name] = len(conn.execute(statement, {"now": now}).all())
                runs[name].append((time.perf_counter() - start) * 1000)
        for name, statement in statements.items():
            compiled = statement.compile(conn)
            sql, params = str(compiled), compiled.construct_params({"now": now})
            if engine.dialect.name == "postgresql":
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plans[name] = "\n".join(r[0] for r in cursor.fetchall())
                plans[name] += f"\nserver's median: {server_ms(cursor, sql, params)} ms"
            else:
                values = tuple(params[k] for k in compiled.positiontup or ())
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, values).all()
                plans[name] = "\n".join(str(r) for r in rows)
    return {n: (round(statistics.median(r), 2), found[n], plans[n]) for n, r in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, help="the PostgreSQL server's port (else a free one)")
    ap.add_argument("--shape", choices=SHAPES, default="one", help="one watch, or 13,000")
    ap.add_argument("--sqlite", help="time on SQLite, in this (new) file's folder, instead")
    a = ap.parse_args()
    now = datetime.now(UTC) + timedelta(minutes=1)
    watches, each = SHAPES[a.shape]  # a store a run: the writer remembers its partitions
    server = None
    if a.sqlite:
        Path(a.sqlite).unlink(missing_ok=True)
        url = f"sqlite:///{a.sqlite}"
    else:
        server = PgServer()
        server.port = a.port or server.port
        server.start()
        url = server.url()
    try:
        engine = open_store(url)
        backlog(engine, watches, each)
        statements = {"EXISTS (SQLite's)": due_watches(postgresql=False)}
        if engine.dialect.name == "postgresql":  # as it was, and as it is
            statements["62i's probe (a SubPlan)"] = subplan_probe()
            statements["probe (PostgreSQL's: LATERAL)"] = due_watches(postgresql=True)
        # 62g's: the outbox analysed, the watches not yet; then both
        for state in ("never analysed", "ANALYZE webhook_outbox", "ANALYZE"):
            if state != "never analysed":
                with engine.begin() as conn:
                    conn.exec_driver_sql(state)
            for name, (ms, found, plan) in timed(engine, now, statements).items():
                print(f"{watches} watches, {each} due each, {state}, {name}: {ms} ms ({found})")
                print("    " + plan.replace("\n", "\n    "))
        engine.dispose()
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
