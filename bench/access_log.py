"""What the access log (SPEC section 8) costs a device search: the same searches by `clients`
threads, with and without their access-log entry, in alternating rounds of one run, so that
a shared machine's load falls on both alike. Target (issue 14): logging costs <= 10% of
device-search throughput at 4 clients.

Two ways, both in one run:
- in process, through the same read the API makes (store.queries.search_page, or the
  store.logged_reads facade around it, which adds the entry's INSERT and COMMIT), without
  HTTP: the HTTP layer adds the same work to both sides, so this ratio is the harsher one;
- through HTTP (`--http`): two servers on the same store, one as shipped and one whose
  access-log write is patched out (here only), `GET /api/v1/records?device_id=` from
  `clients` threads, alternating between them.

Each way reports the throughput ratio and the same ratio by CPU (ms a search, counting this
process, the server and PostgreSQL's processes): on a shared machine, where throughput is
mostly the wait for a core, the CPU ratio is the one that holds.

    .venv/bin/python bench/access_log.py [--records 200000] [--clients 4] [--rounds 6]
        [--engine sqlite|postgresql] [--http] [--store URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from run import cpu_split  # noqa: E402
from servicetrail.domain.access_log import Reader  # noqa: E402
from servicetrail.domain.search import Search  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.logged_reads import logged_read  # noqa: E402
from servicetrail.store.queries import search_page, viewer_for  # noqa: E402

BIN = str(ROOT / ".venv" / "bin" / "servicetrail")
PAGE = 100


def build(url: str, records: int) -> None:
    done = subprocess.run(
        [BIN, "--db", url, "generate", "--records", str(records), "--into-store"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])


def targets(engine, how_many: int, rng: random.Random) -> list:
    with engine.connect() as conn:
        pairs = conn.execute(
            text("SELECT party_id, device_id FROM responsibility WHERE relation = 'supplier'")
        ).all()
        viewers = {p: viewer_for(conn, p) for p in {p for p, _ in pairs}}
    chosen = [rng.choice(pairs) for _ in range(how_many)]
    return [(viewers[p], d) for p, d in chosen]


def one_search(engine, viewer, device: str, logged: bool) -> None:
    search = Search(device_id=device)
    with engine.connect() as conn:
        if not logged:
            search_page(conn, viewer, search, PAGE)
            conn.commit()
            return
        reader = Reader(viewer.party_id, "bench", "api")
        asked = {"device_id": device, "limit": str(PAGE)}
        with logged_read(conn, viewer, reader, "search", asked) as read:
            read.search_page(search, PAGE)


def round_of(engine, plan: list, clients: int, logged: bool) -> dict:
    shares = [plan[i::clients] for i in range(clients)]

    def client(share: list) -> None:
        for viewer, device in share:
            one_search(engine, viewer, device, logged)

    url = engine.url.render_as_string(hide_password=False)
    database = cpu_split(os.getpid(), url)["database"]  # PostgreSQL's own processes
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cpu += cpu_split(os.getpid(), url)["database"] - database
    return {"per_second": len(plan) / wall, "cpu_ms_per_search": 1000 * cpu / len(plan)}


SERVER = """
import sys, uvicorn
from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
if sys.argv[3] == "without":
    import servicetrail.store.logged_reads as logged_reads
    # the bench's floor only: the read's transaction still ends by COMMIT, as with an entry
    # (a ROLLBACK would make psycopg forget the prepared device search, see web.api)
    logged_reads.append_entry = lambda conn, *args, **kwargs: conn.commit()
uvicorn.run(create_app(open_store(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def start_server(url: str, port: int, label: str) -> subprocess.Popen:
    import httpx

    server = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port), label], cwd=ROOT)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the {label} server did not start")


def http_round(port: int, plan: list, tokens: dict, clients: int) -> float:
    """Searches a second through one server."""
    import httpx

    shares = [plan[i::clients] for i in range(clients)]

    def client(share: list) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for viewer, device in share:
                answer = http.get(
                    f"/api/v1/records?device_id={device}&limit={PAGE}",
                    headers={"Authorization": f"Bearer {tokens[viewer.party_id]}"},
                )
                answer.raise_for_status()

    wall = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    return len(plan) / (time.perf_counter() - wall)


def bench_http(engine, url: str, plan: list, clients: int, rounds: int) -> dict:
    from servicetrail.store.accounts import create_account, create_token

    tokens = {}
    with engine.begin() as conn:
        for party in sorted({viewer.party_id for viewer, _ in plan}):
            name = f"bench{os.getpid()}.{party.lower()}"[:64]  # a kept store is measured again
            create_account(conn, name, party, "bench password 123")
            tokens[party] = create_token(conn, name)
    servers = {
        "with": start_server(url, 8731, "with"),
        "without": start_server(url, 8732, "without"),
    }
    ports = {"with": 8731, "without": 8732}
    try:
        for label in ports:  # warm both
            http_round(ports[label], plan[: len(plan) // 4], tokens, clients)
        found: dict[str, list[float]] = {"with": [], "without": []}
        # CPU ms a search, server + database + these client threads: on a shared machine the
        # ratio of these is the steadier figure (2 cores' worth divided by it is the ceiling)
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        for n in range(rounds):
            for label in ("without", "with") if n % 2 == 0 else ("with", "without"):
                before, clients_before = cpu_split(servers[label].pid, url), time.process_time()
                found[label].append(http_round(ports[label], plan, tokens, clients))
                after, clients_after = cpu_split(servers[label].pid, url), time.process_time()
                spent = after["server"] - before["server"] + after["database"] - before["database"]
                cpu[label].append(1000 * (spent + clients_after - clients_before) / len(plan))
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(10)
    without, logged = statistics.median(found["without"]), statistics.median(found["with"])
    cpu_without, cpu_with = statistics.median(cpu["without"]), statistics.median(cpu["with"])
    return {
        "http_cpu_ms_per_search_without_log": round(cpu_without, 3),
        "http_cpu_ms_per_search_with_log": round(cpu_with, 3),
        "http_cost_of_logging_by_cpu": f"{100 * (1 - cpu_without / cpu_with):.1f}%",
        "http_searches_per_second_without_log": round(without, 1),
        "http_searches_per_second_with_log": round(logged, 1),
        "http_cost_of_logging": f"{100 * (1 - logged / without):.1f}%",
        "http_rounds": found,
    }


def cpu_ms(rounds: list[dict]) -> float:
    return statistics.median(r["cpu_ms_per_search"] for r in rounds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--searches", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=6, help="of each kind, alternating")
    ap.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--http", action="store_true", help="also through HTTP (two servers)")
    ap.add_argument("--store", help="measure on this store (a URL) instead of building one")
    a = ap.parse_args()
    if a.store:
        a.engine = "postgresql" if a.store.startswith("postgres") else "sqlite"
    http: dict = {}
    rng = random.Random(14)
    with tempfile.TemporaryDirectory() as work:
        pg = None
        if a.store:
            url = a.store
        elif a.engine == "postgresql":
            from devsupport.pg_server import PgServer

            pg = PgServer().start()
            url = pg.new_database()
        else:
            url = f"sqlite:///{Path(work) / 'bench.db'}"
        try:
            if not a.store:
                print(f"building a {a.records}-record store ...", file=sys.stderr)
                build(url, a.records)
            engine = open_store(url)
            plan = targets(engine, a.searches, rng)
            round_of(engine, plan[: a.searches // 4], a.clients, True)  # warm both paths
            round_of(engine, plan[: a.searches // 4], a.clients, False)
            rounds: dict[str, list[dict]] = {"without": [], "with": []}
            for n in range(a.rounds):
                for label in ("without", "with") if n % 2 == 0 else ("with", "without"):
                    rng.shuffle(plan)
                    rounds[label].append(round_of(engine, plan, a.clients, label == "with"))
            if a.http:
                print("through HTTP ...", file=sys.stderr)
                http = bench_http(engine, url, plan, a.clients, a.rounds)
            engine.dispose()
        finally:
            if pg is not None:
                pg.stop()
    without = statistics.median(r["per_second"] for r in rounds["without"])
    logged = statistics.median(r["per_second"] for r in rounds["with"])
    result = {
        "engine": a.engine,
        "records": a.store or a.records,
        "clients": a.clients,
        "searches_per_round": a.searches,
        "rounds": a.rounds,
        "searches_per_second_without_log": round(without, 1),
        "searches_per_second_with_log": round(logged, 1),
        "cost_of_logging": f"{100 * (1 - logged / without):.1f}%",
        "cost_of_logging_by_cpu": (
            f"{100 * (1 - cpu_ms(rounds['without']) / cpu_ms(rounds['with'])):.1f}%"
        ),
        "cpu_ms_per_search_without": round(cpu_ms(rounds["without"]), 3),
        "cpu_ms_per_search_with": round(cpu_ms(rounds["with"]), 3),
    }
    print(json.dumps({**result, **http}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
