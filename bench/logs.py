#!/usr/bin/env python3
"""The verifiable logs (issue 14 targets), on each engine, beside a floor of the same run.

    .venv/bin/python bench/logs.py                  # 1M leaves, 20k records, both engines
    .venv/bin/python bench/logs.py --leaves 100000 --records 5000 --engines sqlite

- seal: N leaves added to one month's log (random leaf hashes, in batches by the ingest's own
  add_leaves: appended on SQLite, queued on PostgreSQL), then one `seal`: (appending the
  queued ones,) the tiles, the root and the signature.
  Floor: hashing the same N leaves into a root in memory (domain.merkle), no store.
- proof: the store's part of /records/{id}/proof for random leaves of that log (where the
  leaf is, the newest checkpoint, the inclusion proof from leaves and tiles), p50 / p95.
- log verify: `audit` of a store of R generated records (generate --into-store), records/s.
- ingest A/B (--ingest-records N): `servicetrail ingest` of the same generated SAT JSONL into
  fresh stores, with the logs and without them (bench/without_logs on the child's
  PYTHONPATH), alternating, by CPU seconds of the ingest process and its parse worker (and
  the PostgreSQL server's).
- proofs through HTTP (--proof-store URL, an existing store such as `generate --records
  1000000 --into-store` makes): GET /api/v1/records/{id}/proof of random records by their
  own Party, one client and four, p50 / p95, and CPU per request.
CPU seconds (this process; the database server's CPU is not in them) are given beside wall
seconds, as the machine is shared. Results go to stdout and bench/out/logs-N.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import BIN, PgServer, Store, percentile, serve, stop, switched_off  # noqa: E402
from run import _client, cpu_split  # noqa: E402

from servicetrail.domain import merkle  # noqa: E402
from servicetrail.generate import World, load_into  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.log_audit import audit  # noqa: E402
from servicetrail.store.log_tree import StoredTree, latest_checkpoint, leaf_place  # noqa: E402
from servicetrail.store.merkle_log import add_leaves, seal_store  # noqa: E402
from servicetrail.store.partitions import ensure_months  # noqa: E402


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
    ensure_months(engine, [datetime(2025, 3, 15, tzinfo=timezone.utc)])  # its leaves' partitions
    rng = random.Random(14)
    hashes = [rng.randbytes(32) for _ in range(leaves)]
    began = clock()
    for start in range(0, leaves, 20_000):
        with engine.begin() as conn:
            add_leaves(
                conn,
                "sat",
                [
                    (i + 1, "2025-03", hashes[i], None)
                    for i in range(start, min(leaves, start + 20_000))
                ],
            )
    added = since(began)
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
        "add_in_batches_of_20k": added,
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


WITHOUT_LOGS = str(ROOT / "bench" / "without_logs")


def _server_cpu(pg) -> float:
    """CPU seconds of a PostgreSQL server so far: the postmaster with its exited backends
    (cutime, cstime) and the live ones."""
    if pg is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])

    def used(p: int, fields: slice) -> float:
        stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in stat[fields]) / tick

    total = used(pid, slice(11, 15))
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += used(int(child), slice(11, 13))
        except OSError:
            pass
    return total


def _ingest_once(url: str, sat: Path, with_logs: bool, pg) -> dict:
    env = dict(os.environ) if with_logs else switched_off(WITHOUT_LOGS)
    before, server = resource.getrusage(resource.RUSAGE_CHILDREN), _server_cpu(pg)
    began = time.perf_counter()
    done = subprocess.run([BIN, "--db", url, "ingest", str(sat)], capture_output=True, env=env)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stderr[-500:]!r}")
    time.sleep(0.3)  # let the server reap the ingest's backend
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {
        "cpu_s": round(cpu, 2),
        "server_cpu_s": round(_server_cpu(pg) - server, 2),
        "wall_s": round(wall, 1),
    }


def bench_ingest_ab(store: Store, records: int, rounds: int) -> dict:
    """Ingest with and without the logs, alternating which goes first each round."""
    from servicetrail.generate import write_world

    folder = store.work / "ingest-input"
    if not (folder / "sat.jsonl").exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_world(World(n_records=records, seed=2025), folder)
    runs: dict[str, list[dict]] = {"with_logs": [], "without_logs": []}
    for round_ in range(rounds):
        for with_logs in (True, False) if round_ % 2 == 0 else (False, True):
            label = "with_logs" if with_logs else "without_logs"
            url = store.fresh(f"ingest-{label}")
            runs[label].append(_ingest_once(url, folder / "sat.jsonl", with_logs, store.pg))
            print(label, runs[label][-1], file=sys.stderr, flush=True)

    def mean(label: str, key: str) -> float:
        return round(sum(r[key] for r in runs[label]) / len(runs[label]), 2)

    cpu = {label: mean(label, "cpu_s") + mean(label, "server_cpu_s") for label in runs}
    return {
        "records": records,
        "runs": runs,
        "cpu_s_mean": cpu,
        "ratio_by_cpu": round(cpu["without_logs"] / cpu["with_logs"], 3),
    }


def bench_http_proofs(url: str, requests: int) -> dict:
    """Proofs of random records by their own Party through `servicetrail serve`."""
    from sqlalchemy import text

    from servicetrail.store.accounts import create_account, create_token

    rng = random.Random(9162)
    engine = open_store(url)
    with engine.begin() as conn:
        top = conn.execute(text("SELECT max(id) FROM sat_record")).scalar()
        owners = dict(conn.execute(text("SELECT user_id, party_id FROM dcc_user")).all())
        picked = []
        while len(picked) < 400:
            found = conn.execute(
                text("SELECT id, user_id FROM sat_record WHERE id = :id"),
                {"id": rng.randrange(1, top + 1)},
            ).first()
            if found is not None and found.user_id in owners:
                picked.append((found.id, owners[found.user_id]))
        tokens = {}
        for party in {party for _, party in picked}:
            username = f"proofs{os.getpid()}_{party.lower()}"
            create_account(conn, username, party, "benchmark password 1")
            tokens[party] = create_token(conn, username)
    engine.dispose()
    plan = [(tokens[party], f"/api/v1/records/{i}/proof") for i, party in picked]
    proc, port = serve(url, 1)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict] = {}
    try:
        _client((base, plan[:50], 0))  # warm up
        for clients in (1, 4):
            shares = [
                [rng.choice(plan) for _ in range(requests // clients)] for _ in range(clients)
            ]
            before = cpu_split(proc.pid, url)
            began = time.perf_counter()
            with ProcessPoolExecutor(clients) as pool:
                times = [
                    x for part in pool.map(_client, [(base, s, 0) for s in shares]) for x in part
                ]
            wall = time.perf_counter() - began
            after = cpu_split(proc.pid, url)
            results[f"{clients}_clients"] = {
                "requests": len(times),
                "p50_ms": round(percentile(times, 50), 2),
                "p95_ms": round(percentile(times, 95), 2),
                "requests_s": round(len(times) / wall),
                "cpu_ms_per_request": {
                    part: round((after[part] - before[part]) * 1000 / len(times), 2)
                    for part in after
                },
            }
    finally:
        stop(proc)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--skip", default="", help="comma list of: seal, verify")
    parser.add_argument("--ingest-records", type=int, default=0, help="ingest A/B of N records")
    parser.add_argument("--rounds", type=int, default=3, help="ingest A/B rounds")
    parser.add_argument(
        "--proof-store", action="append", default=[], help="measure HTTP proofs on this store"
    )
    parser.add_argument("--proof-requests", type=int, default=2000)
    a = parser.parse_args()
    skip = set(a.skip.split(","))
    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    results: dict[str, dict] = {}
    pg = None
    with tempfile.TemporaryDirectory() as work:
        for kind in filter(None, a.engines.split(",")):
            store = Store(kind, Path(work), PgServer().start() if kind == "postgresql" else None)
            pg = store.pg or pg
            results[kind] = {}
            if "seal" not in skip:
                results[kind]["seal_and_proofs"] = bench_seal_and_proofs(
                    store.fresh("seal"), a.leaves, a.proofs
                )
            if "verify" not in skip:
                results[kind]["log_verify"] = bench_verify(store.fresh("verify"), a.records)
            if a.ingest_records:
                results[kind]["ingest_ab"] = bench_ingest_ab(store, a.ingest_records, a.rounds)
            print(kind, json.dumps(results[kind], indent=1), flush=True)
    if pg is not None:
        pg.stop()
    for url in a.proof_store:
        results[f"http_proofs {url}"] = bench_http_proofs(url, a.proof_requests)
        print(url, json.dumps(results[f"http_proofs {url}"], indent=1), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"logs-{a.leaves}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
