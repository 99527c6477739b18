"""What one `create_app` costs in CPU, alone and with a first `/login` and `/watches` in a
TestClient, on a new SQLite store (session 64: the Watches page's routes were built again
for each app): as a server's first requests build the routes they pass, then as the suite's
apps do, with those builds shared (tests/shared_routes.py). Least and median of the runs, ms
of CPU.

    PYTHONPATH=src:. .venv/bin/python bench/app_cost.py --runs 100
"""

from __future__ import annotations

import argparse
import tempfile
import time

from fastapi.testclient import TestClient

from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app


def timed(runs: int, once) -> str:
    costs = []
    for _ in range(runs):
        began = time.process_time()
        once()
        costs.append(time.process_time() - began)
    costs.sort()
    return f"least {costs[0] * 1000:.2f} ms, median {costs[len(costs) // 2] * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    runs = parser.parse_args().runs
    engine = open_store(f"sqlite:///{tempfile.mkdtemp()}/app_cost.db")

    def with_requests() -> None:
        with TestClient(create_app(engine)) as client:
            client.get("/login")
            client.get("/watches")

    with_requests()  # the imports and each router's first build, once a process
    print("create_app:", timed(runs, lambda: create_app(engine)))
    print("create_app, /login, /watches:", timed(runs, with_requests))
    from tests.shared_routes import share_route_contexts

    assert share_route_contexts()
    with_requests()
    print("the same, the routes' builds shared as in the suite:", timed(runs, with_requests))
    engine.dispose()


if __name__ == "__main__":
    main()
