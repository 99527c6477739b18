#!/usr/bin/env python3
"""What each index of the visibility index's shape costs a bulk insert on PostgreSQL (issue
12's ingest target; migration 0014).

    .venv/bin/python bench/index_shape.py --url postgresql://postgres@127.0.0.1:PORT/scratch

In the database given (a scratch one: its tables are dropped and made again), four tables of
`sat_visibility`'s columns: both indexes keyed as before 0014 (party first), the by-record
index keyed record first (0014), the primary key alone, and no index. Each round COPYs the
same `--rows` rows (`--parties` Parties, one month, growing record ids, as an ingest batch
writes them) into each table in turn, and prints the seconds each took.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone

import psycopg

COLUMNS = "party_id, access, logged_at, record_id, kind, srv"
TYPES = ["varchar", "int2", "timestamptz", "int8", "varchar", "varchar"]
SHAPES = {
    "party_first": "(party_id, record_id)",
    "record_first": "(record_id, party_id)",
    "primary_key_only": None,
    "no_index": None,
}


def make_tables(conn: psycopg.Connection) -> None:
    for name, by_record in SHAPES.items():
        key = (
            ""
            if name == "no_index"
            else (", PRIMARY KEY (party_id, access, logged_at, record_id) INCLUDE (kind, srv)")
        )
        conn.execute(f"DROP TABLE IF EXISTS shape_{name}")
        conn.execute(
            f"CREATE TABLE shape_{name} (party_id varchar(32) NOT NULL, access int2 NOT NULL, "
            f"logged_at timestamptz NOT NULL, record_id int8 NOT NULL, kind varchar(16) NOT NULL, "
            f"srv varchar(12){key})"
        )
        if by_record:
            conn.execute(f"CREATE INDEX ON shape_{name} {by_record}")
    conn.commit()


def rows(count: int, parties: list[str], first_id: int) -> list[tuple]:
    start = datetime(2025, 1, 3, tzinfo=timezone.utc)
    return [
        (
            random.choice(parties),
            1 if i % 2 else 3,
            start + timedelta(seconds=(first_id + i) * 0.5),
            first_id + i,
            "request",
            "4.1.1",
        )
        for i in range(count)
    ]


def copy_into(conn: psycopg.Connection, table: str, batch: list[tuple]) -> float:
    began = time.perf_counter()
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(TYPES)
        for row in batch:
            copy.write_row(row)
    conn.commit()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--parties", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    parties = [f"P{i:04d}" for i in range(a.parties)]
    with psycopg.connect(a.url) as conn:
        make_tables(conn)
        for round_ in range(a.rounds):
            batch = rows(a.rows, parties, first_id=1 + round_ * a.rows)
            names = list(SHAPES)
            turn = round_ % len(names)
            timed = {
                name: copy_into(conn, f"shape_{name}", batch)
                for name in names[turn:] + names[:turn]
            }
            print(round_, {name: round(timed[name], 2) for name in SHAPES}, flush=True)


if __name__ == "__main__":
    main()
