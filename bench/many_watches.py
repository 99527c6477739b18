#!/usr/bin/env python3
"""The shared matcher's time when one Party's many watches all match (review 30c: 200 of
them turn each record into 200 events, and every Party's events wait behind them), beside the
raw floor: the same number of event rows written in bulk into a bare copy of `watch_event`
(same keys and indexes, no foreign key), by binary COPY or executemany.

    .venv/bin/python bench/many_watches.py sqlite:////tmp/w.db --records 2000 --watches 200
    .venv/bin/python bench/many_watches.py postgresql://.../DB --records 2000 --watches 200
    PYTHONPATH=OLD/src .venv/bin/python bench/many_watches.py URL ...   # another src/

The store must be new (the script loads the test personas into it). Prints wall and this
process's CPU seconds of the matcher's steps and of the floor, and events a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servicetrail.domain.watches import watch_spec  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.watch_matcher import match_new_records  # noqa: E402
from servicetrail.store.watches import create_watch  # noqa: E402
from tests.personas import ESME_1, SOUTHENERGY, load_personas, requests_to_esme_1  # noqa: E402

FLOOR_TABLE = """CREATE TABLE bench_event (
    watch_id BIGINT NOT NULL, event_id BIGINT NOT NULL, record_id BIGINT NOT NULL,
    record_logged_at {time} NOT NULL, record_device_id VARCHAR(23) NOT NULL,
    matched_at {time} NOT NULL, PRIMARY KEY (watch_id, event_id),
    UNIQUE (watch_id, record_id))"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--watches", type=int, default=200)
    args = parser.parse_args()
    engine = open_store(args.url)
    load_personas(engine)
    with engine.begin() as conn:
        for n in range(args.watches):
            create_watch(conn, SOUTHENERGY, watch_spec({"name": f"w{n}"}), None)
    requests_to_esme_1(engine, range(args.records), counter_from=0, payload="<body/>")
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        with engine.begin() as conn:
            if not match_new_records(conn):
                break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    events = args.records * args.watches
    floor_wall, floor_cpu = _floor(engine, args.records, args.watches)
    print(f"{events:,} events of {args.watches} watches over {args.records:,} records")
    print(f"matcher: {wall:.2f} s wall, {cpu:.2f} s CPU here, {events / wall:,.0f} events/s")
    print(
        f"floor:   {floor_wall:.2f} s wall, {floor_cpu:.2f} s CPU here, "
        f"{events / floor_wall:,.0f} rows/s"
    )
    engine.dispose()


def _floor(engine, records: int, watches: int) -> tuple[float, float]:
    now = datetime.now(timezone.utc)
    postgres = engine.dialect.name == "postgresql"
    rows = [
        (w, r + 1, r + 1, now + timedelta(seconds=r), ESME_1, now)
        for w in range(watches)
        for r in range(records)
    ]
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        driver.execute(FLOOR_TABLE.format(time="TIMESTAMPTZ" if postgres else "TEXT"))
        driver.execute("CREATE INDEX bench_event_record ON bench_event (record_id)")
        driver.commit()
        if not postgres:
            rows = [(*row[:3], row[3].isoformat(), row[4], row[5].isoformat()) for row in rows]
        wall, cpu = time.perf_counter(), time.process_time()
        if postgres:
            with (
                driver.cursor() as cursor,
                cursor.copy("COPY bench_event FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["int8", "int8", "int8", "timestamptz", "varchar", "timestamptz"])
                for row in rows:
                    copy.write_row(row)
        else:
            driver.executemany("INSERT INTO bench_event VALUES (?, ?, ?, ?, ?, ?)", rows)
        driver.commit()
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        raw.close()


if __name__ == "__main__":
    main()
