#!/usr/bin/env python3
"""Device search latency through HTTP on the demo data (issue 3's figure).

    .venv/bin/python bench/demo_search.py            # builds a fresh demo store in a temp folder

Builds the 60k-record demo, serves it, and asks as the demo's Responsible Supplier for the
trail of devices it is responsible for (100 per page), one client with keep-alive, then
prints p50/p95 beside the raw SQL floor of the same searches.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (_client, floor_search)
from harness import Store, percentile, serve, stop  # noqa: E402

from servicetrail.demo import build_demo  # noqa: E402
from servicetrail.store.accounts import create_token  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="servicetrail-demo-bench-"))
    url = f"sqlite:///{work / 'demo.db'}"
    engine = open_store(url)
    logins = build_demo(engine)
    supplier = next(login for login in logins if login.username == "supplier")
    with engine.begin() as conn:
        token = create_token(conn, supplier.username)
    engine.dispose()
    store = Store("sqlite", work)
    conn = store.raw(url)
    devices = [
        d
        for (d,) in conn.execute(
            "SELECT device_id FROM responsibility WHERE party_id = ?", (supplier.party_id,)
        )
    ]
    user_ids = [
        u
        for (u,) in conn.execute(
            "SELECT user_id FROM dcc_user WHERE party_id = ?", (supplier.party_id,)
        )
    ]
    conn.close()
    rng = random.Random(3)
    plan = [
        (token, f"/api/v1/records?device_id={rng.choice(devices)}&limit=100") for _ in range(2000)
    ]
    proc, port = serve(url)
    base = f"http://127.0.0.1:{port}"
    try:
        run._client((base, plan[:50], 0))  # warm up
        latencies = run._client((base, plan, 0))
    finally:
        stop(proc)
    floor = run.floor_search(store, url, [(supplier.party_id, user_ids, d) for d in devices[:300]])
    print(
        f"demo: {len(devices)} devices of {supplier.party_id}, {len(latencies)} searches, one "
        "client"
    )
    print(
        f"HTTP device search   p50 {percentile(latencies, 50):.2f} ms   p95 "
        f"{percentile(latencies, 95):.2f} ms"
    )
    print(f"raw SQL floor        p50 {floor['p50_ms']:.3f} ms   p95 {floor['p95_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
