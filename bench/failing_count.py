#!/usr/bin/env python3
"""The Watches page's count of a webhook's failing deliveries (`list_watches(with_state=True)`),
timed on a watch whose N deliveries failed, before and after a registry correction hides all
their records (audit 59f: only those of records the Party may still see are counted).

    .venv/bin/python bench/failing_count.py --deliveries 20000 --engine postgresql --port 20530
    .venv/bin/python bench/failing_count.py --deliveries 20000 --engine sqlite
    .venv/bin/python bench/failing_count.py --deliveries 20000 --never-analyse --port 20530

Prints the median of 7 reads (ms) and what they said, both times (on PostgreSQL, the visible
backlog is timed before and after the outbox is analysed; with --never-analyse, the visible and
the hidden backlog both before; autovacuum leaves the outbox alone, and each unanalysed figure
says it was). A throwaway store: a new PostgreSQL server (on --port, else a free one) or a
SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # devsupport/ and tests/, beside src/

from sqlalchemy import update  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402
from servicetrail.domain.model import Responsibility, SatRecord  # noqa: E402
from servicetrail.domain.watches import watch_spec  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.watch_matcher import catch_up  # noqa: E402
from servicetrail.store.watch_tables import webhook_outbox  # noqa: E402
from servicetrail.store.watches import create_watch, list_watches  # noqa: E402
from servicetrail.store.registry import load_responsibility  # noqa: E402
from servicetrail.store.writer import append_records  # noqa: E402
from tests import personas as P  # noqa: E402


def due_backlog(engine, deliveries: int) -> datetime:
    """The personas, and a webhook of SOUTHENERGY's with `deliveries` due, of records of June
    2025 (returned: its first), never attempted; autovacuum leaves the outbox alone (timed
    unanalysed, it is). bench/outbox_reads.py's too."""
    P.load_personas(engine)
    if engine.dialect.name == "postgresql":  # the unanalysed figures are timed unanalysed:
        with engine.begin() as conn:  # a backlog of 200,000 took autovacuum's minute to write
            conn.exec_driver_sql("ALTER TABLE webhook_outbox SET (autovacuum_enabled = off)")
    hook = {"name": "w", "webhook": {"url": "https://hooks.example.com/w"}}
    with engine.begin() as conn:
        create_watch(conn, P.SOUTHENERGY, watch_spec(hook), "whsec_bench")
    june = P.t("2025-06-01T00:00:00Z")
    for start in range(0, deliveries, 5000):
        records = [
            SatRecord(june + timedelta(seconds=n), "request", f"{P.LK_OU}:{P.ESME_1}:{n + 5000}",
                      "11.2", P.LK_OU, P.ESME_1, "", "<b>")
            for n in range(start, min(deliveries, start + 5000))
        ]  # fmt: skip
        with engine.begin() as conn:
            append_records(conn, records)
        catch_up(engine)
    return june


def failing_backlog(url: str, deliveries: int, never_analyse: bool = False) -> None:
    engine = open_store(url)
    june = due_backlog(engine, deliveries)
    with engine.begin() as conn:
        conn.execute(update(webhook_outbox).values(attempts=1, last_error="answered 503"))
    try:
        if engine.dialect.name == "postgresql":  # as a backlog that came in minutes finds it
            print("visible, outbox not analysed", *timed(engine), analysed(engine))
            if never_analyse:
                hidden_from_southenergy(engine, june)
                print("hidden, outbox not analysed", *timed(engine), analysed(engine))
                return
            with engine.begin() as conn:  # as autovacuum does, within a minute or so
                conn.exec_driver_sql("ANALYZE webhook_outbox")
        print("visible", *timed(engine))
        hidden_from_southenergy(engine, june)
        print("hidden ", *timed(engine))
    finally:
        engine.dispose()


def hidden_from_southenergy(engine, june) -> None:
    with engine.begin() as conn:  # SOUTHENERGY's supply of ESME-1 ended in May after all
        load_responsibility(
            conn,
            Responsibility(
                P.ESME_1, P.SOUTHENERGY, "supplier", P.CHANGE_OF_SUPPLIER, june - timedelta(31)
            ),
        )


def analysed(engine) -> str:
    """Whether PostgreSQL had analysed the outbox by the end of a timing: a figure said to be
    unanalysed must be."""
    with engine.connect() as conn:
        never = "SELECT reltuples < 0 FROM pg_class WHERE relname = 'webhook_outbox'"
        return "(still never analysed)" if conn.exec_driver_sql(never).scalar() else "(ANALYSED)"


def timed(engine) -> tuple[float, dict | None]:
    runs, said = [], None
    for _ in range(7):
        start = time.perf_counter()
        with engine.connect() as conn:
            said = list_watches(conn, P.SOUTHENERGY, with_state=True)[0]["webhook"]["failing"]
        runs.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(runs), 1), said


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--deliveries", type=int, default=20_000)
    ap.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--port", type=int, help="the PostgreSQL server's port (else a free one)")
    ap.add_argument(
        "--never-analyse",
        action="store_true",
        help="PostgreSQL: time the hidden backlog on the outbox never analysed as well (and "
        "nothing analysed)",
    )
    a = ap.parse_args()
    if a.engine == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            failing_backlog(f"sqlite:///{folder}/bench.db", a.deliveries)
        return 0
    server = PgServer()
    server.port = a.port or server.port
    server.start()
    try:
        failing_backlog(server.url(), a.deliveries, a.never_analyse)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
