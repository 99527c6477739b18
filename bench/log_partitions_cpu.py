#!/usr/bin/env python3
"""The server CPU the logs' writes cost, read from the backend's /proc stat (the server must
run on this machine), which other load on the cores does not change (migration 0029's cost,
helper 53b). Run once with each layout's code on PYTHONPATH, on a new database each:

    PYTHONPATH=/tmp/before/src .venv/bin/python bench/log_partitions_cpu.py URL ingest 200000
    PYTHONPATH=src .venv/bin/python bench/log_partitions_cpu.py URL2 seal 1000000

- ingest: N leaves appended as an ingest appends them (add_leaves, 5,000 a batch);
- seal: N leaves queued (the access log's way), then one seal, its CPU by step.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from servicetrail.signing import log_prefix, signer_for
from servicetrail.store import merkle_log as ml
from servicetrail.store.access_partitions import ensure_access_months
from servicetrail.store.engine import open_store
from servicetrail.store.partitions import ensure_months

TICK = os.sysconf("SC_CLK_TCK")
STEPS = ("_write_leaves", "_grow_tiles", "_unqueue", "_tile_appended")


def backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def timed_steps(pid: int, spent: dict[str, float]) -> None:
    """The seal's steps, each wrapped to add its backend CPU to `spent`."""
    for name in STEPS:
        real = getattr(ml, name)

        def step(*args: Any, real: Callable[..., Any] = real, name: str = name) -> Any:
            began = backend_cpu(pid)
            try:
                return real(*args)
            finally:
                spent[name] += backend_cpu(pid) - began

        setattr(ml, name, step)
    queued = ml._queued

    def reading(*args: Any) -> Iterator[Any]:
        chunks = queued(*args)
        while True:
            began = backend_cpu(pid)
            chunk = next(chunks, None)
            spent["_queued"] += backend_cpu(pid) - began
            if chunk is None:
                return
            yield chunk

    ml._queued = reading  # type: ignore[assignment]


def main() -> int:
    url, mode, leaves = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = open_store(url)
    months = [datetime(2025, m, 15, tzinfo=timezone.utc) for m in range(1, 13)]
    ensure_months(engine, months)
    ensure_access_months(engine, months)
    rng = random.Random(1)
    spent: dict[str, float] = defaultdict(float)
    with engine.connect() as conn:
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        conn.commit()
        if mode == "seal":
            for first in range(0, leaves, 20_000):
                rows = [
                    (i + 1, "2025-06", rng.randbytes(32), None)
                    for i in range(first, first + 20_000)
                ]
                ml.queue_leaves(conn, "access", rows[: leaves - first])
                conn.commit()
            timed_steps(pid, spent)
        began, cpu = time.perf_counter(), backend_cpu(pid)
        if mode == "seal":
            signer = signer_for(engine.url.render_as_string(hide_password=False))
            assert ml.seal(conn, signer, log_prefix())[0].size == leaves
            conn.commit()
        else:
            for first in range(0, leaves, 5_000):
                rows = [
                    (i + 1, "2025-06", rng.randbytes(32), None) for i in range(first, first + 5_000)
                ]
                ml.add_leaves(conn, "sat", rows[: leaves - first])
                conn.commit()
        spent["server_cpu_s"] = backend_cpu(pid) - cpu
        spent["wall_s"] = time.perf_counter() - began
    engine.dispose()
    print(json.dumps({name: round(value, 2) for name, value in spent.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
