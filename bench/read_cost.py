#!/usr/bin/env python3
"""What a device search costs as the API makes it, without HTTP: a pooled checkout, the logged
read (the search and its access-log entry) and its COMMIT, one search at a time, on a store
you already have. It gives this process's CPU (Python), PostgreSQL's backend's (/proc/PID/stat)
and the wall time, per search: the round trips a read makes show in the wall time and in both
CPUs, without the load generator's noise.

    .venv/bin/python bench/read_cost.py --store postgresql://.../st10m
    PYTHONPATH=DIR/src .venv/bin/python bench/read_cost.py --store URL   # another copy of src/

The searches: `--searches` devices drawn (seed 5) from the registry's supplier intervals, each
searched by its supplier, newest 100, after 50 searches to warm up.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from harness import backend_cpu  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from servicetrail.domain.access_log import Reader  # noqa: E402
from servicetrail.domain.search import Search  # noqa: E402
from servicetrail.domain.visibility import Viewer  # noqa: E402
from servicetrail.store.engine import open_store, reading  # noqa: E402
from servicetrail.store.logged_reads import logged_read  # noqa: E402
from servicetrail.store.queries import viewer_for  # noqa: E402


def search_plan(engine: Engine, searches: int) -> tuple[list[Any], dict[str, Viewer]]:
    """(device, party) pairs drawn from the supplier intervals (seed 5), and each Party's
    viewer."""
    with engine.connect() as conn:
        intervals = conn.execute(
            text("SELECT device_id, party_id FROM responsibility WHERE relation = 'supplier'")
        ).all()
        targets = random.Random(5).sample(intervals, min(searches, len(intervals)))
        viewers = {party: viewer_for(conn, party) for _, party in targets}
        conn.commit()
    return targets, {party: viewer for party, viewer in viewers.items() if viewer}


def logged_search(engine: Engine, viewer: Viewer, device: str) -> None:
    """The API's device search (its newest 100) and its access-log entry, on a pooled
    connection."""
    with reading(engine) as conn:
        reader = Reader(viewer.party_id, "bench", "api")
        filters = {"device_id": device, "limit": "100"}
        with logged_read(conn, viewer, reader, "search", filters) as read:
            read.search_page(Search(device_id=device), 100)


def arguments(doc: str) -> argparse.ArgumentParser:
    """--store, --searches and --rounds, for this bench and those that reuse its searches."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--searches", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    return ap


def main() -> int:
    a = arguments(__doc__ or "").parse_args()
    engine = open_store(a.store)
    targets, viewers = search_plan(engine, a.searches)
    # one search at a time: the pool hands back its one connection, whose backend is measured
    pid = None
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()

    def search(device: str, party: str) -> None:
        logged_search(engine, viewers[party], device)

    for device, party in targets[:50]:
        search(device, party)
    rounds = []
    for _ in range(a.rounds):
        python, backend, wall = time.process_time(), backend_cpu(pid), time.perf_counter()
        for device, party in targets:
            search(device, party)
        n = len(targets)
        rounds.append(
            {
                "python_ms": round((time.process_time() - python) * 1000 / n, 3),
                "backend_ms": round((backend_cpu(pid) - backend) * 1000 / n, 3),
                "wall_ms": round((time.perf_counter() - wall) * 1000 / n, 3),
            }
        )
        print(json.dumps(rounds[-1]))
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "read_cost.json").write_text(json.dumps({"store": a.store, "rounds": rounds}))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
