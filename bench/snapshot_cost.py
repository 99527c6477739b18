"""What one snapshot per search page costs (store.read_transaction's `one_snapshot`): device
searches through `search_page` in one process, alternately with and without it, no HTTP.

    .venv/bin/python bench/snapshot_cost.py sqlite:///path/to/store.db [SEARCHES]
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import text

import servicetrail.store.queries as queries
from servicetrail.domain.search import Search
from servicetrail.store.engine import open_store
from servicetrail.store.queries import search_page, viewer_for


def main() -> None:
    engine = open_store(sys.argv[1])
    searches = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    with engine.connect() as conn:
        pairs = conn.execute(
            text(
                "SELECT device_id, party_id FROM responsibility WHERE relation = 'supplier' "
                "LIMIT :n"
            ),
            {"n": searches},
        ).all()
        viewers = {party: viewer_for(conn, party) for _, party in pairs}
    with_snapshot = queries.read_as

    def without_snapshot(*args, **kwargs):  # type: ignore[no-untyped-def]
        return with_snapshot(*args, **{**kwargs, "one_snapshot": False})

    def run() -> float:
        started = time.perf_counter()
        with engine.connect() as conn:
            for device_id, party in pairs:
                search_page(conn, viewers[party], Search(device_id=device_id), 10)
                conn.commit()
        return (time.perf_counter() - started) / len(pairs) * 1000

    for _ in range(3):  # the first round warms the caches
        queries.read_as = with_snapshot
        on = run()
        queries.read_as = without_snapshot
        off = run()
        print(f"with the snapshot {on:.3f} ms a search, without {off:.3f} ms")


if __name__ == "__main__":
    main()
