#!/usr/bin/env python3
"""What 0028's record of the entries written behind its copy ahead costs and saves (session 58).

A store at 0027 with --entries access-log entries (bench/upgrade_copy.py's build_access_log)
and --recent more stamped in the last 55 minutes (copied ahead those older than SETTLED, or
--settled), then:

- the triggers' cost on the old table's writes, on a copy of the store, with them and
  without, alternated --rounds times: --inserts entries one a transaction (as a read's entry
  is written), and --bulk stamped now (the condition false, nothing recorded) or a year ago
  (recorded) in one statement each, server time by EXPLAIN ANALYZE;
- 0028's copy ahead, then --late entries written behind it (stamped across the months held);
- 0028's transaction (`alembic upgrade 0028`, timed) on copies of that store (CREATE
  DATABASE ... TEMPLATE), alternated --repeat times: with the record (the entries recorded
  made again) and without it (the text before: `_mend`, hour by hour), the entries then
  compared with the old table's; and alembic's own start (`upgrade` to where it is).

    .venv/bin/python bench/upgrade_0028_behind.py postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import psycopg

from upgrade_copy import ENTRY, build_access_log

COLUMNS = (
    "at, party_id, actor, interface, action, filters, records_returned, mp141_records_returned, "
    "device_ids"
)
ONE = (
    f"INSERT INTO access_log ({COLUMNS}) VALUES (now(), 'P1', 'user-1', 'api', 'search', "
    "'{\"device_id\": \"00-11-22-33-00000001\"}', 3, 0, '[\"00-11-22-33-00000001\"]') RETURNING id"
)


def bulk(n: int, at: str) -> str:
    """`n` entries stamped `at` (SQL) in one statement, ids drawn from the sequence."""
    values = ENTRY.format(m=1, step=1).split(", ", 1)[1]
    return (
        f"INSERT INTO access_log ({COLUMNS}) SELECT {at}, {values} FROM generate_series(1, {n}) i"
    )


def m0028() -> Any:
    from alembic.script import ScriptDirectory

    from servicetrail.store import migrate

    return ScriptDirectory(str(migrate.MIGRATIONS)).get_revision("0028").module


def write_cost(url: str, a: argparse.Namespace) -> dict[str, list[float]]:
    """Microseconds an entry: one a transaction (client's wall), and in bulk (server time),
    with the triggers (`on`) and without (`off`)."""
    from servicetrail.store.engine import make_engine

    m = m0028()
    engine = make_engine(url)
    found: dict[str, list[float]] = {}
    with psycopg.connect(url, autocommit=True) as db:
        for _ in range(a.rounds):
            for state in ("off", "on"):
                with engine.connect() as conn:
                    if state == "on":
                        m._record_behind(conn, "access_log")
                    else:
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {m.BEHIND}")
                        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {m.RECORD}() CASCADE")
                    conn.commit()
                began = time.perf_counter()
                for _ in range(a.inserts):
                    db.execute(ONE, prepare=True).fetchone()
                each = (time.perf_counter() - began) / a.inserts * 1e6
                found.setdefault(f"one_a_transaction_{state}_us", []).append(round(each, 1))
                kinds = [("now", "now()")]  # the condition false: nothing recorded
                if state == "on":
                    kinds.append(("late", "now() - interval '1 year'"))  # each recorded
                for kind, at in kinds:
                    plan = db.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {bulk(a.bulk, at)}")
                    ms = plan.fetchone()[0][0]["Execution Time"]
                    found.setdefault(f"bulk_{kind}_{state}_us", []).append(
                        round(ms * 1000 / a.bulk, 2)
                    )
    engine.dispose()
    return found


def transaction_0028(url: str) -> dict[str, float]:
    from alembic import command

    from servicetrail.store import migrate
    from servicetrail.store.engine import make_engine

    engine = make_engine(url)
    began = time.perf_counter()
    command.upgrade(migrate._config(engine), "0028")
    wall = time.perf_counter() - began
    began = time.perf_counter()
    command.upgrade(migrate._config(engine), "0028")  # at 0028 already: alembic's start alone
    start = time.perf_counter() - began
    engine.dispose()
    return {"upgrade_0028_s": round(wall, 2), "alembic_start_s": round(start, 2)}


def entries(url: str) -> tuple[int, int, str]:
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT count(*), sum(id), md5(string_agg(id || at::text || filters, ',' "
            "ORDER BY id)) FROM access_log"
        ).fetchone()
        return int(row[0]), int(row[1]), str(row[2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server", help="a PostgreSQL server's URL (its postgres database)")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--recent", type=int, default=10_000)
    ap.add_argument("--late", type=int, default=1_000)
    ap.add_argument("--inserts", type=int, default=5_000)
    ap.add_argument("--bulk", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settled", help="0028's SETTLED for the copy ahead (default its own)")
    ap.add_argument("--repeat", type=int, default=3, help="0028's transaction timed so often")
    a = ap.parse_args()
    from servicetrail.store.engine import make_engine

    base = a.server.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    names = {k: f"behind_{k}_{os.getpid()}" for k in ("source", "recorded", "mended", "writes")}
    url = {k: f"{base}/{name}" for k, name in names.items()}
    admin = psycopg.connect(f"{base}/postgres", autocommit=True)
    result: dict[str, Any] = {"entries": a.entries, "recent": a.recent, "late": a.late}
    try:
        admin.execute(f"CREATE DATABASE {names['source']}")
        build_access_log(url["source"], a.entries, a.months)
        with psycopg.connect(url["source"], autocommit=True) as db:
            db.execute(bulk(a.recent, "now() - random() * interval '55 minutes'"))
        if a.rounds:
            admin.execute(f"CREATE DATABASE {names['writes']} TEMPLATE {names['source']}")
            result["writes"] = write_cost(url["writes"], a)
            admin.execute(f"DROP DATABASE {names['writes']}")
        engine = make_engine(url["source"])
        with engine.connect() as conn:
            began = time.perf_counter()
            ahead = m0028()
            ahead.SETTLED = a.settled or ahead.SETTLED
            result["settled"] = ahead.SETTLED
            ahead.copy_ahead(conn, conn.commit)
            result["copy_ahead_s"] = round(time.perf_counter() - began, 1)
        engine.dispose()
        with psycopg.connect(url["source"], autocommit=True) as db:
            span = f"interval '{a.months * 27} days' * i / {a.late}"
            db.execute(bulk(a.late, f"'2025-01-01 00:00+00'::timestamptz + {span}"))
            result["left_to_0028"] = db.execute(
                f"SELECT count(*) FROM access_log WHERE id > 0 AND (at, id) > (SELECT at, id "
                f"FROM {m0028().STAGED} WHERE id > 0 ORDER BY at DESC, id DESC LIMIT 1)"
            ).fetchone()[0]
            result["recorded_rows"] = db.execute(
                f"SELECT count(*) FROM {m0028().BEHIND}"
            ).fetchone()[0]
        held = entries(url["source"])
        for i in range(a.repeat):  # alternated, each on a copy of the store made for it
            for kind in ("mended", "recorded")[:: 1 if i % 2 == 0 else -1]:
                admin.execute(f"CREATE DATABASE {names[kind]} TEMPLATE {names['source']}")
                if kind == "mended":  # as the text before left its copy: no record
                    with psycopg.connect(url[kind], autocommit=True) as db:
                        db.execute(f"DROP TABLE {m0028().BEHIND}")
                        db.execute(f"DROP FUNCTION {m0028().RECORD}() CASCADE")
                run = transaction_0028(url[kind])
                run["same_entries"] = entries(url[kind]) == held
                result.setdefault(kind, []).append(run)
                admin.execute(f"DROP DATABASE {names[kind]} WITH (FORCE)")
    finally:
        for name in names.values():
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
