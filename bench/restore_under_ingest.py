#!/usr/bin/env python3
"""A store restored from an older backup under a running `servicetrail ingest` (audit 60e):
the run remembers the months it made (store.partitions._known); here the current month's
partitions (records, payloads, visibility, logs) are dropped once the previous month's first
batch has committed, as a restore from a backup older than the current month leaves them.

A new database on the server; `servicetrail generate --records N` from two months back to
tomorrow, its SAT file split in two at the current month's first line, and one ingest of both.
Prints the ingest's exit code, seconds, last words, the records stored by month and what
`log verify` says. Runs the servicetrail on PYTHONPATH (its `servicetrail` command beside
this Python), so a checkout's src compares before and after:

    PYTHONPATH=/tmp/before/src .venv/bin/python bench/restore_under_ingest.py postgresql://.../postgres
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

TABLES = ("sat_record", "sat_payload", "sat_visibility", "log_leaf_sat", "log_node_sat")


def run(server_url: str, records: int) -> None:
    now = datetime.now(timezone.utc)
    month = f"{now.year:04d}-{now.month:02d}"
    index = now.year * 12 + now.month - 1 - 1
    previous = f"{index // 12:04d}-{index % 12 + 1:02d}"
    index -= 1
    start = f"{index // 12:04d}-{index % 12 + 1:02d}-01"
    end = (now + timedelta(days=1)).strftime("%Y-%m-%d")
    command = str(Path(sys.executable).with_name("servicetrail"))
    name = "restore_under_ingest"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    env = {**os.environ, "SERVICETRAIL_DATABASE_URL": url.replace("://", "+psycopg://", 1)}
    try:
        with tempfile.TemporaryDirectory() as folder:
            world = Path(folder)
            generate = ["generate", "--records", str(records), "--start", start, "--end", end]
            subprocess.run([command, *generate, folder], env=env, check=True, capture_output=True)
            subprocess.run([command, "db", "upgrade"], env=env, check=True, capture_output=True)
            lines = (world / "sat.jsonl").read_bytes().splitlines(keepends=True)
            mark = f'"logged_at":"{month}'.encode()
            cut = next(i for i, line in enumerate(lines) if mark in line)
            (world / "a.jsonl").write_bytes(b"".join(lines[:cut]))
            (world / "b.jsonl").write_bytes(b"".join(lines[cut:]))
            began = time.monotonic()
            load = subprocess.Popen(
                [command, "ingest", str(world / "a.jsonl"), str(world / "b.jsonl")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            suffix = month.replace("-", "_")
            with psycopg.connect(url, autocommit=True) as conn:
                seen = f"SELECT count(*) FROM sat_record WHERE logged_at >= '{previous}-01'"
                while load.poll() is None and not conn.execute(seen).fetchone()[0]:  # type: ignore[index]
                    time.sleep(0.05)
                for table in TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table}_p{suffix}")
                dropped = time.monotonic() - began
                said, _ = load.communicate()
                took = time.monotonic() - began
                verify = subprocess.run(
                    [command, "log", "verify"], env=env, capture_output=True, text=True
                )
                stored = conn.execute(
                    "SELECT to_char(logged_at AT TIME ZONE 'UTC', 'YYYY-MM'), count(*) "
                    "FROM sat_record GROUP BY 1 ORDER BY 1"
                ).fetchall()
        print(f"{month}'s partitions dropped at {dropped:.1f} s; {len(lines) - cut} records of it")
        print(f"ingest: exit {load.returncode} after {took:.1f} s: {said.strip()}")
        print("stored by month:", ", ".join(f"{m} {n}" for m, n in stored))
        last = (verify.stdout.strip() or verify.stderr.strip()).splitlines()[-1:]
        print(f"log verify: exit {verify.returncode}: {' '.join(last)}")
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a PostgreSQL server's URL (a database is made beside it)")
    parser.add_argument("--records", type=int, default=40_000)
    args = parser.parse_args()
    run(args.url, args.records)


if __name__ == "__main__":
    main()
