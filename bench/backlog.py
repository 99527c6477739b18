"""Memory of the deliverer with a large backlog (issue 13: "memory stays bounded with 1M
undelivered events, receiver down for a day").

One Party's watches, each hooked to a receiver that is down (a loopback port nobody listens
on), match everything the Party may see in a generated trail until the outbox holds about
`--events` deliveries. Then `servicetrail deliver` runs against it for `--seconds`, every
attempt refused and rescheduled, and its resident memory is sampled from /proc twice a
second. The figure beside it: the same process's memory with an empty outbox (its floor).

    .venv/bin/python bench/backlog.py                       # 1M events, SQLite
    .venv/bin/python bench/backlog.py --events 100000 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from webhooks import SERVICETRAIL, busiest_party, cli, free_port, hook_watches, load_registry
from webhooks import start, stop

ENV = {"SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK": "1"}


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kb = lambda name: int(fields[name].split()[0])  # noqa: E731
    return kb("VmRSS") / 1024, kb("VmHWM") / 1024


def watch_memory(url: str, seconds: float) -> dict:
    worker = start([str(SERVICETRAIL), "--db", url, "deliver"], ENV)
    samples: list[float] = []
    peak = 0.0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and worker.poll() is None:
            now, peak = rss_mb(worker.pid)
            samples.append(now)
            time.sleep(0.5)
    finally:
        stop(worker)
    quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3, 4)]
    return {
        "seconds": seconds,
        # a plateau, not a climb: resident memory at each quarter of the run
        "rss_mb_by_quarter": [round(mb, 1) for mb in quarters] if samples else [],
        "peak_rss_mb": round(peak, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--hooks", type=int, default=100, help="webhook watches of the Party")
    ap.add_argument("--keep", action="store_true", help="keep the store (its path on stderr)")
    a = ap.parse_args()
    os.environ.update(ENV)
    from servicetrail.generate import World, write_world
    from servicetrail.store.engine import open_store
    from servicetrail.store.outbox import pending_count
    from servicetrail.store.watch_tables import webhook_outbox
    from servicetrail.store.watch_matcher import catch_up
    from sqlalchemy import func, select

    work = Path(tempfile.mkdtemp(prefix="st-backlog-"))
    try:
        url = f"sqlite:///{work / 'backlog.db'}"
        records = max(10_000, a.events * 7 // a.hooks)  # the busiest Party sees about 1 in 7
        world = write_world(World(n_records=records, seed=2031), work / "w", sat=True, duis=False)
        load_registry(url, {k: world[f"{k}.csv"] for k in ("users", "devices", "responsibilities")})
        engine = open_store(url)
        floor = watch_memory(url, min(10.0, a.seconds))  # no watch, nothing to deliver
        dead_port = free_port()  # nobody listens: every attempt is refused
        hook_watches(engine, dead_port, busiest_party(engine), a.hooks, work / "secrets.json")
        cli(url, "ingest", str(world["sat.jsonl"]))
        began = time.perf_counter()
        catch_up(engine, steps=10**9)
        matched_s = time.perf_counter() - began
        with engine.connect() as conn:
            pending = pending_count(conn)
        result = {
            "records": records,
            "pending_deliveries": pending,
            "matching_s": round(matched_s, 1),
            "deliverer_empty_outbox": floor,
            "deliverer_with_backlog": watch_memory(url, a.seconds),
        }
        with engine.connect() as conn:
            result["pending_after"] = pending_count(conn)
            result["attempted_in_the_run"] = conn.execute(
                select(func.count()).where(webhook_outbox.c.attempts > 0)
            ).scalar_one()
        engine.dispose()
        print(json.dumps(result, indent=2))
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
