#!/usr/bin/env python3
"""Device search (bench/run.py's: 4 keep-alive clients, `serve --workers 2`) with a
keep-alive connection closed after 100 requests (web.http_limits, today), after another
number, or never; the arms alternated, each round in a rotated order (session 57).

    .venv/bin/python bench/keepalive_limit.py --store sqlite:////tmp/s1m.db --arms 100,1000,none

Each arm's `serve` runs with bench/keepalive_limit/sitecustomize.py on its PYTHONPATH, which
sets the limit in its processes (the product has no such setting) and has each worker write
what it served, its garbage collector's time and its requests' wait in the gate. An arm
`N:unlogged` also appends no access-log entries (a diagnosis of what their commits cost);
`--watches` asks for the Party's watches instead of searching. Printed, one JSON line an arm
and round: searches/s, p50/p95/p99, the server's and the clients' CPU a search, and the
split between the workers: of the server's CPU, of the requests and of the connections each
took; the read system calls a search (SQLite's page reads, /proc/PID/io), the GC's and the
gate's ms a search.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import percentile, serve, stop, store_at  # noqa: E402
from run import _client, _cpu_seconds, _descendants, party_tokens, search_targets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = Path(__file__).resolve().parent / "keepalive_limit"


def _read_calls(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/io").read_text().split("\n")
    except OSError:
        return 0
    return int(next(line for line in lines if line.startswith("syscr:")).split()[1])


def _workers(server: int, stats: Path) -> dict[int, dict]:
    """Each serving process's CPU seconds, read calls, and what it wrote in `stats`."""
    seen = {}
    for pid in [server, *_descendants(server)]:
        written = stats / f"{pid}.json"
        if written.exists():
            seen[pid] = {
                "cpu": _cpu_seconds(pid),
                "reads": _read_calls(pid),
                **json.loads(written.read_text()),
            }
    return seen


def measure(a: argparse.Namespace, arm: str, plan: list, rng: random.Random) -> dict:
    stats = Path(tempfile.mkdtemp(prefix="keepalive-", dir=a.work))
    limit, _, unlogged = arm.partition(":")
    os.environ.update(
        BENCH_MAX_REQUESTS=limit,
        BENCH_WORKER_STATS=str(stats),
        BENCH_ACCESS_WRITES="off" if unlogged == "unlogged" else "on",
    )
    code = os.pathsep.join([str(WRAPPER), str(ROOT / "src")])
    proc, port = serve(a.store, a.workers, pythonpath=code, port=a.port)
    base = f"http://127.0.0.1:{port}"
    try:
        # a connection of 25 each, four at a time: both workers see every Party's token and
        # the store's pages are warm, whatever the limit
        warm = [(base, plan[i : i + 25], 0) for i in range(0, len(plan), 25)] * 2
        with ProcessPoolExecutor(a.clients) as pool:
            list(pool.map(_client, warm))
        time.sleep(1)  # the workers' files written
        shares = [[rng.choice(plan) for _ in range(a.requests)] for _ in range(a.clients)]
        before, load = _workers(proc.pid, stats), os.getloadavg()[0]
        server_before = sum(_cpu_seconds(p) for p in [proc.pid, *_descendants(proc.pid)])
        clients_before = os.times().children_user + os.times().children_system
        started = time.perf_counter()
        with ProcessPoolExecutor(a.clients) as pool:
            latencies = [
                x for part in pool.map(_client, [(base, s, 0) for s in shares]) for x in part
            ]
        wall = time.perf_counter() - started
        server_after = sum(_cpu_seconds(p) for p in [proc.pid, *_descendants(proc.pid)])
        clients_after = os.times().children_user + os.times().children_system
        time.sleep(1)
        after = _workers(proc.pid, stats)
    finally:
        stop(proc)
        shutil.rmtree(stats, ignore_errors=True)
    n = len(latencies)

    def delta(key: str) -> list[float]:  # per worker, the busier first
        return sorted((after[p][key] - before[p][key] for p in after if p in before), reverse=True)

    def split(key: str) -> list[float]:
        parts = delta(key)
        return [round(100 * x / (sum(parts) or 1)) for x in parts]

    gc_s = [
        sum(after[p]["gc_s"][g] - before[p]["gc_s"][g] for p in after if p in before)
        for g in range(3)
    ]
    return {
        "arm": arm,
        "searches_s": round(n / wall),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "server_cpu_ms": round((server_after - server_before) * 1000 / n, 3),
        "clients_cpu_ms": round((clients_after - clients_before) * 1000 / n, 3),
        "cpu_split_pct": split("cpu"),
        "served_split_pct": split("served"),
        "connections": [int(x) for x in delta("connections")],
        "reads_a_search": round(sum(delta("reads")) / n, 1),
        "gc_ms_a_search": [round(s * 1000 / n, 4) for s in gc_s],
        "gate_ms_a_search": round(sum(delta("gate_s")) * 1000 / n, 3),
        "load": [round(load, 1), round(os.getloadavg()[0], 1)],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument(
        "--arms",
        default="100,1000,none",
        help="requests a connection (or none), each with :unlogged for no access-log entries",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=2000, help="per client, as bench/run.py")
    ap.add_argument("--port", type=int, help="the server's port (else a free one)")
    ap.add_argument(
        "--watches",
        action="store_true",
        help="ask for the Party's watches instead: a cheap read that writes no access-log entry",
    )
    ap.add_argument("--work", default=None, help="where the workers' files go (else /tmp)")
    a = ap.parse_args()
    rng = random.Random(5)
    ordinary, _ = search_targets(a.store, store_at(a.store), 400, rng)
    tokens = party_tokens(a.store, {p for p, _, _ in ordinary}, "keepalive")
    plan = [
        (tokens[p], "/api/v1/watches" if a.watches else f"/api/v1/records?device_id={d}&limit=100")
        for p, _, d in ordinary
    ]
    arms = a.arms.split(",")
    for r in range(a.rounds):
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
            print(json.dumps({"round": r + 1, **measure(a, arm, plan, rng)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
