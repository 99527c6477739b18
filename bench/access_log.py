"""What the access log (SPEC section 8) costs a device search: the same searches by `clients`
threads, with and without their access-log entry, in alternating rounds of one run, so that
a shared machine's load falls on both alike. Target (issue 14): logging costs <= 10% of
device-search throughput at 4 clients.

In process, through the same read the API makes (store.queries.search_page, or the
store.logged_reads facade around it, which adds one INSERT and COMMIT), without HTTP: the
HTTP layer adds the same work to both sides, so the ratio here is the harsher one.

    .venv/bin/python bench/access_log.py [--records 200000] [--clients 4] [--rounds 6]
        [--engine sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
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

    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"per_second": len(plan) / wall, "cpu_ms_per_search": 1000 * cpu / len(plan)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--searches", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=6, help="of each kind, alternating")
    ap.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    a = ap.parse_args()
    rng = random.Random(14)
    with tempfile.TemporaryDirectory() as work:
        pg = None
        if a.engine == "postgresql":
            from tests.pg_server import PgServer

            pg = PgServer().start()
            url = pg.new_database()
        else:
            url = f"sqlite:///{Path(work) / 'bench.db'}"
        try:
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
            engine.dispose()
        finally:
            if pg is not None:
                pg.stop()
    without = statistics.median(r["per_second"] for r in rounds["without"])
    logged = statistics.median(r["per_second"] for r in rounds["with"])
    result = {
        "engine": a.engine,
        "records": a.records,
        "clients": a.clients,
        "searches_per_round": a.searches,
        "rounds": a.rounds,
        "searches_per_second_without_log": round(without, 1),
        "searches_per_second_with_log": round(logged, 1),
        "cost_of_logging": f"{100 * (1 - logged / without):.1f}%",
        "cpu_ms_per_search_without": round(
            statistics.median(r["cpu_ms_per_search"] for r in rounds["without"]), 3
        ),
        "cpu_ms_per_search_with": round(
            statistics.median(r["cpu_ms_per_search"] for r in rounds["with"]), 3
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
