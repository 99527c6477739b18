#!/usr/bin/env python3
"""CPU per row of the own-traffic report, which a busy machine disturbs far less than wall time.

    .venv/bin/python bench/export_cpu.py URL [RUNS]
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/export_cpu.py URL [RUNS]   # other code

Generates the report of the Party with the most own traffic (all time) in this process, RUNS
times (default 5), and prints for each run the rows/s and the CPU seconds per row spent by
this process and, on PostgreSQL, by the server backend that ran the report.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

import servicetrail
from servicetrail.domain.times import parse_time
from servicetrail.store.engine import open_store
from servicetrail.store.export import own_report_csv
from servicetrail.store.queries import viewer_for


def backend_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> int:
    url, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    engine = open_store(url, upgrade=False)
    with engine.connect() as conn:
        party = conn.execute(
            text(
                "SELECT u.party_id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id "
                "GROUP BY u.party_id ORDER BY count(*) DESC LIMIT 1"
            )
        ).scalar()
        viewer = viewer_for(conn, party)
    rates, cpu = [], []
    for _ in range(runs):
        with engine.connect() as conn:
            pid = (
                conn.execute(text("SELECT pg_backend_pid()")).scalar()
                if conn.dialect.name == "postgresql"
                else None
            )
            conn.commit()
            cpu_before, backend_before, start = (
                time.process_time(),
                backend_cpu(pid),
                time.perf_counter(),
            )
            report = own_report_csv(
                conn, viewer, parse_time("2000-01-01"), parse_time("2100-01-01")
            )
            for _chunk in report:
                pass
            rates.append(report.rows / (time.perf_counter() - start))
            cpu.append(
                (time.process_time() - cpu_before + backend_cpu(pid) - backend_before)
                / report.rows
                * 1e6
            )
    print(
        f"{servicetrail.__file__}: {party}, {report.rows} rows; rows/s "
        f"{[round(r) for r in rates]}; CPU us/row {[round(c, 2) for c in cpu]}, median "
        f"{statistics.median(cpu):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
