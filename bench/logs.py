#!/usr/bin/env python3
"""The verifiable logs (issue 14 targets), on each engine, beside a floor of the same run.

    .venv/bin/python bench/logs.py                  # 1M leaves, 20k records, both engines
    .venv/bin/python bench/logs.py --leaves 100000 --records 5000 --engines sqlite

- seal: N leaves queued for one month's log (random leaf hashes, written by the ingest's own
  queue_leaves), then one `seal`: appending them, the tiles, the root and the signature.
  Floor: hashing the same N leaves into a root in memory (domain.merkle), no store.
- proof: the store's part of /records/{id}/proof for random leaves of that log (where the
  leaf is, the newest checkpoint, the inclusion proof from leaves and tiles), p50 / p95.
- log verify: `audit` of a store of R generated records (generate --into-store), records/s.
CPU seconds (this process; the database server's CPU is not in them) are given beside wall
seconds, as the machine is shared. Results go to stdout and bench/out/logs-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servicetrail.domain import merkle  # noqa: E402
from servicetrail.generate import World, load_into  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.log_audit import audit  # noqa: E402
from servicetrail.store.merkle_log import (  # noqa: E402
    StoredTree,
    latest_checkpoint,
    leaf_place,
    queue_leaves,
    seal_store,
)


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = clock()
    return {"wall_s": round(wall - start[0], 3), "cpu_s": round(cpu - start[1], 3)}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def bench_seal_and_proofs(url: str, leaves: int, proofs: int) -> dict:
    engine = open_store(url)
    rng = random.Random(14)
    hashes = [rng.randbytes(32) for _ in range(leaves)]
    for start in range(0, leaves, 20_000):
        with engine.begin() as conn:
            queue_leaves(
                conn,
                "sat",
                [
                    (i + 1, "2025-03", hashes[i], None)
                    for i in range(start, min(leaves, start + 20_000))
                ],
            )
    began = clock()
    sealed = seal_store(engine)
    seal = since(began)
    began = clock()
    root = merkle.root_of([merkle.leaf_hash(h) for h in hashes])  # the floor: hashing alone
    floor = since(began)
    assert sealed[0].size == leaves and root  # (roots differ: the floor hashes as leaf data)
    times = []
    with engine.connect() as conn:
        for _ in range(proofs):
            entry = rng.randrange(1, leaves + 1)
            began_one = time.perf_counter()
            place = leaf_place(conn, "sat", entry)
            checkpoint = latest_checkpoint(conn, "sat", place.month)
            StoredTree(conn, "sat", place.month).inclusion(place.index, checkpoint.size)
            times.append((time.perf_counter() - began_one) * 1000)
    engine.dispose()
    return {
        "leaves": leaves,
        "seal": seal,
        "floor_hash_in_memory": floor,
        "proof_ms": {"p50": round(pct(times, 0.5), 3), "p95": round(pct(times, 0.95), 3)},
    }


def bench_verify(url: str, records: int) -> dict:
    engine = open_store(url)
    load_into(engine, World(n_records=records, seed=141))
    began = clock()
    result = audit(engine, "servicetrail/sat")
    took = since(began)
    engine.dispose()
    assert result.findings == [], result.findings[:5]
    return {
        "records": result.entries,
        **took,
        "records_per_s": round(result.entries / took["wall_s"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    a = parser.parse_args()
    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    results: dict[str, dict] = {}
    pg = None
    with tempfile.TemporaryDirectory() as work:
        for kind in a.engines.split(","):
            if kind == "postgresql":
                from tests.pg_server import PgServer

                pg = PgServer().start()
                urls = [pg.new_database(), pg.new_database()]
            else:
                urls = [f"sqlite:///{work}/seal.db", f"sqlite:///{work}/verify.db"]
            results[kind] = {
                "seal_and_proofs": bench_seal_and_proofs(urls[0], a.leaves, a.proofs),
                "log_verify": bench_verify(urls[1], a.records),
            }
            print(kind, json.dumps(results[kind], indent=1), flush=True)
    if pg is not None:
        pg.stop()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"logs-{a.leaves}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
