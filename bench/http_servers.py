#!/usr/bin/env python3
"""The same app under uvicorn (as `servicetrail serve --workers N` runs it) and under granian,
alternated on a store you already have: device searches (bench/run.py's, 4 keep-alive
clients) and a trivial route, with the server's CPU a request (issue 12 item 4, session 57).

    .venv/bin/python bench/http_servers.py --store sqlite:////tmp/s1m.db --granian VENV/bin/granian

granian is not a dependency: install it in a venv of your own that also sees this one's
packages (a .pth file naming .venv's site-packages), and give its `granian` here. The trivial
route, `GET /bench/ping`, is added to the app only here: async, "ok", through every
middleware (the gate included); its token is looked up once per process, as a search's is,
so the gate counts it in its Party's share afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# at the top: FastAPI reads the route's annotations (strings here) in this module's names
from starlette.requests import Request
from starlette.responses import PlainTextResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import OUT, answering, free_port, percentile, stop, store_at  # noqa: E402
from run import _client, cpu_split, party_tokens, search_targets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def app() -> Any:
    """The app factory both servers start in each worker (the store's URL in BENCH_STORE)."""
    from servicetrail.web import api
    from servicetrail.web.app import app_for_store

    made = app_for_store(os.environ["BENCH_STORE"])
    looked_up: set[str] = set()

    @made.get("/bench/ping", include_in_schema=False)
    async def ping(request: Request) -> PlainTextResponse:
        token = api.bearer_token(request)
        if token not in looked_up:
            api._token_holder(request)  # the credential seen, as after a search
            looked_up.add(token)
        return PlainTextResponse("ok")

    return made


def run_uvicorn(port: int, workers: int) -> None:
    """`serve`'s way (web.server.run): CappedHeadProtocol, the listening socket with
    TCP_NODELAY, web.workers' supervisor."""
    import uvicorn

    from servicetrail.web import server
    from servicetrail.web.http_limits import CappedHeadProtocol
    from servicetrail.web.open_files import raise_open_file_limit
    from servicetrail.web.stopping import GRACEFUL_SECONDS

    server.fewer_malloc_arenas()
    raise_open_file_limit()
    config = uvicorn.Config(
        "http_servers:app",
        factory=True,
        workers=workers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        http=CappedHeadProtocol,
    )
    server._run_workers(config)


def start(
    kind: str, store: str, workers: int, granian: str, port: int | None
) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    env = {
        **os.environ,
        "BENCH_STORE": store,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT / "src")]),
    }
    if kind == "uvicorn":
        command = [
            sys.executable,
            __file__,
            "--serve-uvicorn",
            str(port),
            "--workers",
            str(workers),
        ]
    else:
        command = [granian, "--interface", "asgi", "--workers", str(workers), "--host"]
        command += ["127.0.0.1", "--port", str(port), "--factory", "--loop", "uvloop"]
        command += ["--http", "1", "--no-ws", "--log-level", "warning", "http_servers:app"]
    OUT.mkdir(exist_ok=True)
    log = OUT / f"http-servers-{kind}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    return answering(proc, port, log)


def measure(
    kind: str, a: argparse.Namespace, plan: list[tuple[str, str]], rng: random.Random
) -> dict:
    proc, port = start(kind, a.store, a.workers, a.granian, a.port)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(4):  # each worker sees the tokens (a connection ends after 100 on uvicorn)
            _client((base, plan[:120], 0))
        shares = [[rng.choice(plan) for _ in range(a.requests)] for _ in range(a.clients)]
        before, load, started = cpu_split(proc.pid), os.getloadavg()[0], time.perf_counter()
        with ProcessPoolExecutor(a.clients) as pool:
            latencies = [
                x for part in pool.map(_client, [(base, s, 0) for s in shares]) for x in part
            ]
        wall = time.perf_counter() - started
        after = cpu_split(proc.pid)
    finally:
        stop(proc)
    n = len(latencies)
    return {
        "server": kind,
        "requests_s": round(n / wall),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "server_cpu_ms": round((after["server"] - before["server"]) * 1000 / n, 3),
        "clients_cpu_ms": round((after["clients"] - before["clients"]) * 1000 / n, 3),
        "load": round((load + os.getloadavg()[0]) / 2, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store")
    ap.add_argument("--granian", default="granian", help="granian's command, from your venv")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, help="the servers' port (else a free one)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=1500, help="per client")
    ap.add_argument("--rounds", type=int, default=3, help="uvicorn then granian, each round")
    ap.add_argument("--serve-uvicorn", type=int, help=argparse.SUPPRESS)  # the child's port
    a = ap.parse_args()
    if a.serve_uvicorn:
        run_uvicorn(a.serve_uvicorn, a.workers)
        return 0
    if not a.store:
        ap.error("--store is required")
    rng = random.Random(5)
    ordinary, _ = search_targets(a.store, store_at(a.store), 400, rng)
    tokens = party_tokens(a.store, {p for p, _, _ in ordinary}, "servers")
    plans = {
        "device search": [
            (tokens[p], f"/api/v1/records?device_id={d}&limit=100") for p, _, d in ordinary
        ],
        "/bench/ping": [(tokens[p], "/bench/ping") for p, _, _ in ordinary],
    }
    for label, plan in plans.items():
        for _ in range(a.rounds):
            for kind in ("uvicorn", "granian"):
                print(json.dumps({"what": label, **measure(kind, a, plan, rng)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
