#!/usr/bin/env python3
"""What another connection's commit costs a device search on SQLite (session 57): the logged
search of bench/read_cost.py, one at a time, alone (its pooled connection keeps its page
cache from one search to the next), against the same with an access-log entry committed on
another connection before each (as `serve` does: every read on any of its connections, in
either worker, appends one). SQLite drops a connection's whole page cache when its next read
transaction finds the WAL changed by another connection, so each search then reads its pages
again (read system calls, /proc/self/io). Alternated, `--rounds` times; `--mmap BYTES` maps
the store into memory (PRAGMA mmap_size) on every connection, which the product does not.

    .venv/bin/python bench/page_cache_reset.py --store sqlite:////tmp/s1m.db
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_cost import arguments, logged_search, search_plan  # noqa: E402

import servicetrail.store.engine as engine_module  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402


def _read_calls() -> int:
    lines = Path("/proc/self/io").read_text().split("\n")
    return int(next(line for line in lines if line.startswith("syscr:")).split()[1])


def main() -> int:
    ap = arguments(__doc__ or "")
    ap.add_argument("--mmap", type=int, help="PRAGMA mmap_size on every connection (bytes)")
    a = ap.parse_args()
    if a.mmap:
        shipped = engine_module._sqlite_pragmas

        def mapped(dbapi: Any, record: Any) -> None:
            shipped(dbapi, record)
            dbapi.execute(f"PRAGMA mmap_size={a.mmap}")

        engine_module._sqlite_pragmas = mapped  # before open_store registers it
    engine, other = open_store(a.store), open_store(a.store)
    targets, viewers = search_plan(engine, a.searches)

    def measured(interleaved: bool) -> dict:
        cpu = reads = 0.0
        started = time.perf_counter()
        for device, party in targets:
            if interleaved:
                logged_search(other, viewers[party], device)  # another connection's read, entry
            before_cpu, before_reads = time.thread_time(), _read_calls()
            logged_search(engine, viewers[party], device)
            cpu += time.thread_time() - before_cpu
            reads += _read_calls() - before_reads
        n = len(targets)
        return {
            "another_commits_first": interleaved,
            "cpu_ms_a_search": round(cpu * 1000 / n, 3),
            "reads_a_search": round(reads / n, 1),
            "wall_s": round(time.perf_counter() - started, 1),
        }

    for device, party in targets[:50]:
        logged_search(engine, viewers[party], device)
    for _ in range(a.rounds):
        for interleaved in (False, True):
            print(json.dumps(measured(interleaved)), flush=True)
    engine.dispose()
    other.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
