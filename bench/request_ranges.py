#!/usr/bin/env python3
"""Session 49: the time of a search by Request ID, in process (`search_page`, newest 100), on a
store you already have (`servicetrail generate --records 1000000 --seed 2025 --into-store`).

    .venv/bin/python bench/request_ranges.py setup URL       # once: Parties CHURN1..CHURN100
    .venv/bin/python bench/request_ranges.py ranges URL --caps 32,4
    .venv/bin/python bench/request_ranges.py steps sqlite:///FILE   # SQLite's statement alone
    .venv/bin/python bench/request_ranges.py device URL      # a search of the Device (session 50)
    .venv/bin/python bench/request_ranges.py own URL
    PYTHONPATH=DIR/src .venv/bin/python bench/request_ranges.py ...   # another copy of src/

`setup` gives Parties CHURN{N} N six-hour supplier intervals spread over 2025 on the busiest
Device (written to the registry and the index directly: they overlap its supplier's).
`ranges`: another User's Request IDs on that Device searched by each: requests inside one
of its intervals (found), between two (hidden) and unused counters of the same senders;
`--caps` sets MAX_RANGE_BRANCHES (SQLite's form before session 50; PostgreSQL's before 49).
`own`: 40 own Request IDs of each of the three Parties with the most requests. p50 / p95 in
ms, the first round left out (it plans each statement shape). `steps`: SQLite's statement
alone, its virtual machine instructions and time. `device`: a search of the Device by each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.engine import Connection, Engine

import servicetrail.store.request_search as request_search
from servicetrail.domain.search import Search
from servicetrail.domain.times import parse_time
from servicetrail.store.engine import open_store
from servicetrail.store.queries import search_page, viewer_for
from servicetrail.store.schema import party, responsibility
from servicetrail.store.visibility_index import Touched, refresh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devsupport/, beside src/

from devsupport.sqlite_steps import instructions as vm_instructions  # noqa: E402

HOLDS = (1, 4, 8, 32, 33, 40, 100)
FIRST = parse_time("2025-01-03T00:00:00Z")
KINDS = ("found", "hidden", "unused")


def busiest(conn: Connection) -> str:
    return str(
        conn.execute(
            text(
                "SELECT device_id FROM sat_record WHERE device_id <> '' "
                "GROUP BY device_id ORDER BY count(*) DESC LIMIT 1"
            )
        ).scalar()
    )


def intervals(n: int) -> list[tuple[datetime, datetime]]:
    step = 340 // n
    return [
        (
            FIRST + timedelta(days=i * step, minutes=n),
            FIRST + timedelta(days=i * step, minutes=n, hours=6),
        )
        for i in range(n)
    ]


def setup(url: str) -> None:
    with open_store(url).begin() as conn:
        device = busiest(conn)
        for n in HOLDS:
            p = f"CHURN{n}"
            conn.execute(insert(party), [{"party_id": p, "name": p}])
            conn.execute(
                insert(responsibility),
                [
                    {"device_id": device, "party_id": p, "relation": "supplier"}
                    | {"valid_from": a, "valid_to": b}
                    for a, b in intervals(n)
                ],
            )
            refresh(conn, [Touched(device, a, b, frozenset({p})) for a, b in intervals(n)])
    print("device", device)


def request_ids(conn: Connection, device: str, n: int) -> dict[str, list[str]]:
    rows = conn.execute(
        text(
            "SELECT request_id, logged_at, user_id FROM sat_record "
            "WHERE device_id = :d AND kind = 'request' ORDER BY id"
        ),
        {"d": device},
    ).all()
    held = intervals(n)

    def at(row: Any) -> datetime:
        return parse_time(row[1]) if isinstance(row[1], str) else row[1]

    def inside(row: Any) -> bool:
        return any(a <= at(row) < b for a, b in held)

    follows = [r for r in rows if r[0].startswith(r[2])]
    between = [r for r in follows if held[0][0] <= at(r) < held[-1][1] and not inside(r)]
    random.Random(n).shuffle(between)
    hidden = [r[0] for r in between[:20]]
    return {
        "found": [r[0] for r in follows if inside(r)][:20],
        "hidden": hidden,
        "unused": [r.rsplit(":", 1)[0] + f":{4242420 + i}" for i, r in enumerate(hidden)],
    }


def ranges(url: str, rounds: int, caps: list[int]) -> None:
    engine = open_store(url)
    with engine.connect() as conn:
        device = busiest(conn)
        ids = {n: request_ids(conn, device, n) for n in HOLDS}
        viewers = {n: viewer_for(conn, f"CHURN{n}") for n in HOLDS}
    times: dict[tuple[int, int, str], list[float]] = {}
    with engine.connect() as conn:
        for r in range(rounds + 1):
            jobs = [
                (cap, n, kind, rid)
                for cap in caps
                for n in HOLDS
                for kind, rids in ids[n].items()
                for rid in rids
            ]
            random.Random(r).shuffle(jobs)
            for cap, n, kind, rid in jobs:
                request_search.MAX_RANGE_BRANCHES = cap  # type: ignore[attr-defined]
                started = time.perf_counter()
                search_page(conn, viewers[n], Search(request_id=rid), 100)
                if r:
                    times.setdefault((cap, n, kind), []).append(time.perf_counter() - started)
                conn.commit()
    print(request_search.__file__)
    print("cap  ranges  " + "  ".join(f"{k + ' p50/p95':>17}" for k in KINDS))
    for n in HOLDS:
        for cap in caps:
            cells = [times.get((cap, n, k)) for k in KINDS]
            shown = [f"{p50_p95(c):>17}" if c else f"{'-':>17}" for c in cells]
            print(f"{cap:3d}  {n:6d}  " + "  ".join(shown))


def p50_p95(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{statistics.median(ordered) * 1000:.3f} / {p95 * 1000:.3f}"


def steps(url: str) -> None:
    """SQLite's VM instructions for the statement that reads the trail (as
    tests/store/test_request_search_work.py counts them), median of 10 Request IDs, and the
    statement's own time (sqlite3 alone, prepared: 5 runs each), p50 / p95 in ms."""
    engine = open_store(url)
    with engine.connect() as conn:
        device = busiest(conn)
        ids = {n: request_ids(conn, device, n) for n in HOLDS}
        viewers = {n: viewer_for(conn, f"CHURN{n}") for n in HOLDS}
    print(request_search.__file__)
    print("ranges  " + "  ".join(f"{k + ': steps, p50 / p95':>30}" for k in KINDS))
    for n in HOLDS:
        cells = []
        for kind in KINDS:
            counts: list[int] = []
            times: list[float] = []
            for rid in ids[n][kind][:10]:
                statement = statement_of(engine, viewers[n], Search(request_id=rid))
                counts.append(instructions(engine, *statement, times))
            cells.append(f"{statistics.median(counts):.0f}, {p50_p95(times)}" if counts else "-")
        print(f"{n:6d}  " + "  ".join(f"{c:>30}" for c in cells))


def device(url: str, rounds: int) -> None:
    """A search of the Device by each CHURN{n}, newest 100: in process, p50 / p95 ms of 10
    searches a round (the first round left out), and on SQLite the statement's instructions."""
    engine = open_store(url)
    with engine.connect() as conn:
        target = busiest(conn)
        viewers = {n: viewer_for(conn, f"CHURN{n}") for n in HOLDS}
    times: dict[int, list[float]] = {}
    with engine.connect() as conn:
        for r in range(rounds + 1):
            jobs = [n for n in HOLDS for _ in range(10)]
            random.Random(r).shuffle(jobs)
            for n in jobs:
                started = time.perf_counter()
                search_page(conn, viewers[n], Search(device_id=target), 100)
                if r:
                    times.setdefault(n, []).append(time.perf_counter() - started)
                conn.commit()
    print(request_search.__file__)
    for n in HOLDS:
        steps = ""
        if engine.dialect.name == "sqlite":
            statement = statement_of(engine, viewers[n], Search(device_id=target))
            steps = f", {instructions(engine, *statement, [])} steps"
        print(f"{n:4d} ranges: {p50_p95(times[n])} ms{steps}")


def statement_of(engine: Engine, viewer: Any, search: Search) -> tuple[str, Any]:
    """The statement, and its parameters, with which `search_page` reads the trail."""
    sent: list[tuple[str, Any]] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FROM sat_record" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with engine.connect() as conn:
            search_page(conn, viewer, search, 100)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    return sent[-1]


def instructions(engine: Engine, statement: str, parameters: Any, times: list[float]) -> int:
    """Its VM instructions, adding 5 runs' times to `times`."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        driver.execute(statement, parameters).fetchall()
        for _ in range(5):
            started = time.perf_counter()
            driver.execute(statement, parameters).fetchall()
            times.append(time.perf_counter() - started)
        return vm_instructions(driver, statement, parameters)
    finally:
        raw.close()


def own(url: str, rounds: int) -> None:
    engine = open_store(url)
    jobs: list[tuple[str, str]] = []
    with engine.connect() as conn:
        parties = [
            str(r[0])
            for r in conn.execute(
                text(
                    "SELECT u.party_id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id"
                    " WHERE s.kind = 'request' GROUP BY u.party_id ORDER BY count(*) DESC LIMIT 3"
                )
            )
        ]
        for p in parties:
            ids = [
                str(r[0])
                for r in conn.execute(
                    text(
                        "SELECT s.request_id FROM sat_record s JOIN dcc_user u "
                        "ON u.user_id = s.user_id WHERE u.party_id = :p AND s.kind = 'request' "
                        "AND substr(s.request_id, 1, 23) = s.user_id ORDER BY s.id LIMIT 2000"
                    ),
                    {"p": p},
                )
            ]
            jobs += [(p, i) for i in random.Random(p).sample(ids, 40)]
        viewers = {p: viewer_for(conn, p) for p in parties}
    times: list[float] = []
    with engine.connect() as conn:
        for r in range(rounds + 1):
            random.Random(r).shuffle(jobs)
            for p, rid in jobs:
                started = time.perf_counter()
                search_page(conn, viewers[p], Search(request_id=rid), 100)
                if r:
                    times.append(time.perf_counter() - started)
                conn.commit()
    times.sort()
    print(
        request_search.__file__,
        f"own Request IDs: {len(times)} searches, p50 {statistics.median(times) * 1000:.3f} ms,"
        f" p95 {times[int(len(times) * 0.95)] * 1000:.3f} ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["setup", "ranges", "own", "steps", "device"])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--caps", default="32")
    a = parser.parse_args()
    if a.what == "setup":
        setup(a.url)
    elif a.what == "ranges":
        ranges(a.url, a.rounds, [int(c) for c in a.caps.split(",")])
    elif a.what == "steps":
        steps(a.url)
    elif a.what == "device":
        device(a.url, a.rounds)
    else:
        own(a.url, a.rounds)


if __name__ == "__main__":
    main()
