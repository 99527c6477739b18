#!/usr/bin/env python3
"""servicetrail benchmarks: each product figure beside the raw engine's floor for the same
operation, measured in the same run, so the ratio holds on a noisy machine.

    .venv/bin/python bench/run.py --quick                 # minutes: 200k records, both engines
    .venv/bin/python bench/run.py --records 1000000       # the BENCHMARKS.md figures
    .venv/bin/python bench/run.py --engines sqlite --records 1000000 --skip search,export

Measures, per engine: SAT JSONL ingest (rows/s, peak memory) through `servicetrail ingest`
vs raw bulk insert of the same rows; DUIS capture ingest (messages/s); device search through
HTTP (`servicetrail serve`, concurrent clients: p50/p95/p99, requests/s) vs the raw SQL of
the MP141 predicate; own-report export through `servicetrail report own` vs raw cursor+csv
(SQLite) or COPY TO STDOUT (PostgreSQL). Results go to stdout and bench/out/results-N.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (the benchmarks' shared set-up)
    BIN,
    ROOT,
    Store,
    device_page_floor,
    percentile,
    serve,
    stop,
    store_at,
    stores,
    timed_child,
)

UTC = timezone.utc

import orjson  # noqa: E402

from servicetrail.generate import World, write_world  # noqa: E402
from servicetrail.store.driver_sql import mark_of  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402

# ------------------------------------------------------------------ stores


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, "--db", url, *args], capture_output=True, text=True)


def load_registry(url: str, files: dict[str, Path]) -> None:
    for what in ("users", "devices", "responsibilities"):
        done = cli(url, "load", what, str(files[what]))
        if done.returncode != 0:
            raise SystemExit(f"load {what} failed: {done.stderr[-500:]}")


# ------------------------------------------------------------------ ingest


def parsed_chunks(path: Path, size: int, first_id: int = 1):
    """The file's records as plain row tuples, `size` at a time (the floor does no validation),
    so a floor over ten million records needs no more memory than one chunk."""
    records, payloads = [], []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=first_id):
            r = orjson.loads(line)
            when = datetime.fromisoformat(r["logged_at"]).astimezone(UTC)
            records.append(
                (
                    n,
                    when,
                    r["kind"],
                    r["request_id"],
                    r["srv"] or None,
                    r["user_id"],
                    r["device_id"],
                    r["response_code"] or None,
                )
            )
            if r["payload"]:
                payloads.append((n, when, r["device_id"], r["user_id"], r["payload"]))
            if len(records) == size:
                yield records, payloads
                records, payloads = [], []
    if records:
        yield records, payloads


def floor_ingest(
    store: Store, url: str, path: Path, batch: int = 100_000, first_id: int = 1
) -> float:
    """Raw load of the file into the same migrated schema: executemany in `batch`-row
    transactions (SQLite) or binary COPY per batch (PostgreSQL), as in the storage notes.
    Only the database's work is timed, not reading or parsing the file."""
    conn = store.raw(url)
    if store.kind == "sqlite":
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    elapsed, count, months_ready = 0.0, 0, set()
    for chunk, chunk_payloads in parsed_chunks(path, batch, first_id):
        if store.kind == "postgresql":
            months = {(r[1].year, r[1].month) for r in chunk} - months_ready
            if months:  # partitions are DDL, made ahead of data in production: not timed
                from sqlalchemy import create_engine

                from servicetrail.store.partitions import ensure_months

                engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
                with engine.begin() as sa_conn:
                    ensure_months(sa_conn, {r[1] for r in chunk})
                engine.dispose()
                months_ready |= months
        start = time.perf_counter()
        if store.kind == "sqlite":
            conn.executemany(
                "INSERT INTO sat_record VALUES (?,?,?,?,?,?,?,?)",
                [(r[0], r[1].strftime(fmt), *r[2:]) for r in chunk],
            )
            conn.executemany(
                "INSERT INTO sat_payload VALUES (?,?,?,?,?)",
                [(p[0], p[1].strftime(fmt), *p[2:]) for p in chunk_payloads],
            )
        else:
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY sat_record (id, logged_at, kind, request_id, srv, user_id, device_id, "
                    "response_code) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(
                        [
                            "bigint",
                            "timestamptz",
                            "varchar",
                            "varchar",
                            "varchar",
                            "varchar",
                            "varchar",
                            "varchar",
                        ]
                    )
                    for r in chunk:
                        copy.write_row(r)
                with cur.copy(
                    "COPY sat_payload (record_id, logged_at, device_id, user_id, payload) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["bigint", "timestamptz", "varchar", "varchar", "text"])
                    for p in chunk_payloads:
                        copy.write_row(p)
        conn.commit()
        elapsed += time.perf_counter() - start
        count += len(chunk)
    conn.close()
    return count / elapsed


def split_file(path: Path, head_share: float) -> tuple[Path, Path, int, int]:
    """The first part for the bulk load, the rest for appends into the loaded store."""
    with open(path, "rb") as f:
        total = sum(1 for _ in f)
    cut = int(total * head_share)
    head, tail = path.with_suffix(".head.jsonl"), path.with_suffix(".tail.jsonl")
    with open(path, "rb") as f, open(head, "wb") as h, open(tail, "wb") as t:
        for n, line in enumerate(f):
            (h if n < cut else t).write(line)
    return head, tail, cut, total - cut


def bench_ingest(store: Store, files: dict[str, Path], n: int) -> tuple[dict, str]:
    """Bulk: 90% of the file into an empty store. Batched: the last 10% appended in 1,000-record
    batches into the loaded, indexed store (as live traffic arrives). Each beside its floor."""
    head, tail, n_head, n_tail = split_file(files["sat"], 0.9)
    url = store.fresh("ingest")
    load_registry(url, files)
    wall, rss, done = timed_child([BIN, "--db", url, "ingest", str(head)])
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stdout[-300:]} {done.stderr[-500:]}")
    batched_wall, _, done = timed_child(
        [BIN, "--db", url, "ingest", str(tail)], env=dict(os.environ, SERVICETRAIL_BATCH="1000")
    )
    again, _, redo = timed_child([BIN, "--db", url, "ingest", str(files["sat"])])
    floor_url = store.fresh("floor")
    open_store(floor_url).dispose()
    floor = floor_ingest(store, floor_url, head)
    batched_floor = floor_ingest(store, floor_url, tail, batch=1000, first_id=n_head + 1)
    return {
        "records": n,
        "bulk_rows": n_head,
        "product_rows_s": round(n_head / wall),
        "floor_rows_s": round(floor),
        "ratio": round((n_head / wall) / floor, 2),
        "peak_rss_mb": rss,
        "batched_rows": n_tail,
        "batched_product_rows_s": round(n_tail / batched_wall),
        "batched_floor_rows_s": round(batched_floor),
        "batched_ratio": round((n_tail / batched_wall) / batched_floor, 2),
        "reingest_s": round(again, 1),
        "reingest_summary": redo.stdout.strip(),
    }, url


def build_store(store: Store, n: int) -> tuple[dict, str]:
    """The same world (seed 2025) loaded by `servicetrail generate --into-store`, with no
    SAT JSONL file on disk: ten million records with DUIS-sized payloads need about 16 GB as a
    file, and the ingest figures do not change with the store's size (see BENCHMARKS.md)."""
    url = store.fresh("search")
    open_store(url).dispose()
    wall, rss, done = timed_child(
        [BIN, "--db", url, "generate", "--records", str(n), "--seed", "2025", "--into-store"]
    )
    if done.returncode != 0:
        raise SystemExit(f"generate --into-store failed: {done.stderr[-500:]}")
    if store.kind == "postgresql":
        conn = store.raw(url)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # as autovacuum would have, over hours of real traffic
        conn.close()
    return {
        "records": n,
        "rows_s": round(n / wall),
        "seconds": round(wall),
        "peak_rss_mb": rss,
        "summary": done.stdout.strip(),
    }, url


def bench_duis(store: Store, files: dict[str, Path]) -> dict:
    url = store.fresh("duis")
    load_registry(url, files)
    with open(files["duis"], "rb") as f:
        count = sum(1 for _ in f)
    wall, rss, done = timed_child([BIN, "--db", url, "ingest", str(files["duis"])])
    if done.returncode != 0:
        raise SystemExit(f"DUIS ingest failed: {done.stderr[-500:]}")
    return {"messages": count, "product_msgs_s": round(count / wall), "peak_rss_mb": rss}


# ------------------------------------------------------------------ search


def search_targets(url: str, store: Store, how_many: int, rng: random.Random) -> tuple[list, list]:
    """(party, user ids, device) triples: ordinary devices, and the busiest devices seen by a
    supplier that may see only part of their traffic."""
    conn = store.raw(url)
    q = conn.execute
    resp = q(
        "SELECT device_id, party_id FROM responsibility WHERE relation = 'supplier'"
    ).fetchall()
    users: dict[str, list[str]] = {}
    for user_id, party_id in q("SELECT user_id, party_id FROM dcc_user").fetchall():
        users.setdefault(party_id, []).append(user_id)
    busy = [
        d
        for (d,) in q(
            "SELECT device_id FROM sat_record WHERE device_id <> '' GROUP BY device_id "
            "ORDER BY count(*) DESC LIMIT 20"
        ).fetchall()
    ]
    conn.close()
    ordinary = [(p, users.get(p, []), d) for d, p in rng.sample(resp, min(how_many, len(resp)))]
    by_device: dict[str, list[str]] = {}
    for d, p in resp:
        by_device.setdefault(d, []).append(p)
    busy_targets = [(p, users.get(p, []), d) for d in busy for p in by_device.get(d, [])[:1]]
    return ordinary, busy_targets


def floor_search(store: Store, url: str, targets: list) -> dict:
    conn = store.raw(url)
    latencies = []
    for party, ids, device in targets * 3:
        sql, params = device_page_floor(store.kind, party, ids, device)
        start = time.perf_counter()
        conn.execute(sql, params).fetchall()
        latencies.append((time.perf_counter() - start) * 1000)
    conn.close()
    return {
        "p50_ms": round(percentile(latencies, 50), 3),
        "p95_ms": round(percentile(latencies, 95), 3),
    }


def _client(args: tuple[str, list[tuple[str, str]], float]) -> list[float]:
    """One client process: keep-alive requests until its share is done."""
    import http.client

    base, requests, _ = args
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    latencies = []
    for token, path in requests:
        start = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(
                f"{path} -> {response.status}; the server's log: bench/out/serve-{port}.log"
            )
        latencies.append((time.perf_counter() - start) * 1000)
    conn.close()
    return latencies


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _postgres_pids(url: str) -> list[int]:
    """The processes of the PostgreSQL server behind `url`: the postmaster started with its
    port, and its children. On a shared machine other servers' work must not count; when
    no such postmaster is found here (a server started otherwise), every `postgres` process."""
    port = urlsplit(url).port or 5432
    every = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != "postgres":
                continue
            pid = int(comm.parent.name)
            every.append(pid)
            args = (comm.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-p" in args and args[args.index(b"-p") + 1 :][:1] == [str(port).encode()]:
            return [pid, *_descendants(pid)]
    return every


def cpu_split(server_pid: int, url: str = "") -> dict[str, float]:
    """CPU seconds used so far by the server (its worker processes), the database server's
    processes (PostgreSQL; SQLite runs inside the server) and this benchmark's clients."""
    server = sum(_cpu_seconds(p) for p in [server_pid, *_descendants(server_pid)])
    database = 0.0
    if url.startswith("postgres"):
        database = sum(_cpu_seconds(p) for p in _postgres_pids(url))
    children = os.times()
    return {
        "server": server,
        "database": database,
        "clients": children.children_user + children.children_system,
    }


def party_tokens(url: str, parties: set[str], prefix: str) -> dict[str, str]:
    """An account and an API token for each Party, named `prefix` and this process's id (a
    rerun on a kept store needs new names)."""
    from servicetrail.store.accounts import create_account, create_token

    engine = open_store(url)
    tokens = {}
    with engine.begin() as conn:
        for party in parties:
            username = f"{prefix}{os.getpid()}_{party.lower()}"
            create_account(conn, username, party, "benchmark password 1")
            tokens[party] = create_token(conn, username)
    engine.dispose()
    return tokens


def bench_search(store: Store, url: str, clients: int, per_client: int, workers: int) -> dict:
    rng = random.Random(5)
    ordinary, busy = search_targets(url, store, 400, rng)
    tokens = party_tokens(url, {p for p, _, _ in ordinary + busy}, "bench")
    proc, port = serve(url, workers)
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        for label, targets in (("devices", ordinary), ("busy devices", busy)):
            if not targets:
                continue
            plan = [(tokens[p], f"/api/v1/records?device_id={d}&limit=100") for p, _, d in targets]
            _client((base, plan[:20], 0))  # warm up
            shares = [[rng.choice(plan) for _ in range(per_client)] for _ in range(clients)]
            cpu_before = cpu_split(proc.pid, url)
            start = time.perf_counter()
            with ProcessPoolExecutor(clients) as pool:
                latencies = [
                    x for part in pool.map(_client, [(base, s, 0) for s in shares]) for x in part
                ]
            wall = time.perf_counter() - start
            cpu_after = cpu_split(proc.pid, url)
            solo = _client((base, [rng.choice(plan) for _ in range(300)], 0))
            results[label] = {
                "requests": len(latencies),
                "clients": clients,
                "p50_ms": round(percentile(latencies, 50), 2),
                "p95_ms": round(percentile(latencies, 95), 2),
                "p99_ms": round(percentile(latencies, 99), 2),
                "requests_s": round(len(latencies) / wall),
                "one_client_p50_ms": round(percentile(solo, 50), 2),
                "one_client_p95_ms": round(percentile(solo, 95), 2),
                "floor": floor_search(store, url, targets),
                # where two cores' worth of CPU went, per request: 2000 ms / their sum is the
                # most requests/s this machine can serve, before any waiting
                "cpu_ms_per_request": {
                    part: round((cpu_after[part] - cpu_before[part]) * 1000 / len(latencies), 2)
                    for part in cpu_after
                },
            }
    finally:
        stop(proc)
    return results


# ------------------------------------------------------------------ first screen

FIRST_SCREENS = [
    ("all", ""),
    ("own", "&scope=own"),
    ("others", "&scope=others"),
    ("kind=response", "&kind=response"),
]


def first_screen_personas(store: Store, url: str) -> dict[str, str]:
    """Issue 12's personas: the biggest supplier, a supplier with the fewest devices, the
    network operator with the most devices, and an Other User (a Party holding no device)."""
    conn = store.raw(url)
    q = conn.execute
    suppliers = q(
        "SELECT party_id, count(*) FROM responsibility WHERE relation = 'supplier' "
        "GROUP BY party_id ORDER BY count(*) DESC, party_id"
    ).fetchall()
    operators = q(
        "SELECT party_id, count(*) FROM responsibility WHERE relation = 'network_operator' "
        "GROUP BY party_id ORDER BY count(*) DESC, party_id"
    ).fetchall()
    holders = {p for p, _ in suppliers} | {p for p, _ in operators}
    others = [
        p
        for (p,) in q(
            "SELECT DISTINCT u.party_id FROM dcc_user u JOIN sat_record s ON s.user_id = u.user_id "
            "WHERE u.role = 'OU' ORDER BY u.party_id LIMIT 50"
        ).fetchall()
        if p not in holders
    ]
    conn.close()
    personas = {
        "biggest supplier": suppliers[0][0],
        "smallest supplier": suppliers[-1][0],
        "network operator": operators[0][0],
    }
    if others:
        personas["other user"] = others[0]
    return personas


def floor_first_screen(store: Store, url: str, party: str, repeat: int) -> dict:
    """The raw floor of "newest first of what I may see": the same index walk and join, by hand."""
    mark = mark_of(store.kind)
    sql = (
        f"SELECT s.* FROM (SELECT record_id, logged_at FROM sat_visibility WHERE party_id = {mark} "
        f"AND access IN (1, 3) ORDER BY logged_at DESC, record_id DESC LIMIT 101) v "
        "JOIN sat_record s ON s.id = v.record_id AND s.logged_at = v.logged_at"
    )
    conn = store.raw(url)
    latencies = []
    for _ in range(repeat):
        start = time.perf_counter()
        conn.execute(sql, (party,)).fetchall()
        latencies.append((time.perf_counter() - start) * 1000)
    conn.close()
    return {
        "p50_ms": round(percentile(latencies, 50), 3),
        "p95_ms": round(percentile(latencies, 95), 3),
    }


def bench_first_screen(store: Store, url: str, repeat: int = 200) -> dict:
    """Device-less searches, one client, per persona: the first page of each scope and filter,
    and the page after it (through the cursor)."""
    from servicetrail.store.accounts import create_account, create_token

    personas = first_screen_personas(store, url)
    engine = open_store(url)
    tokens = {}
    with engine.begin() as conn:
        for label, party in personas.items():
            username = f"first{os.getpid()}_{party.lower()}"
            create_account(conn, username, party, "benchmark password 1")
            tokens[label] = create_token(conn, username)
    engine.dispose()
    proc, port = serve(url)
    results = {}
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port)

        def get(token: str, path: str) -> tuple[float, dict]:
            start = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{path} -> {response.status} {body[:200]!r}")
            return (time.perf_counter() - start) * 1000, orjson.loads(body)

        for label, party in personas.items():
            token = tokens[label]
            row = {"party": party}
            for name, query in FIRST_SCREENS:
                path = f"/api/v1/records?limit=100{query}"
                _, first = get(token, path)
                cursor = first.get("next_cursor")
                firsts = [get(token, path)[0] for _ in range(repeat)]
                nexts = (
                    [get(token, f"{path}&cursor={cursor}")[0] for _ in range(repeat // 2)]
                    if cursor
                    else []
                )
                row[name] = {
                    "p50_ms": round(percentile(firsts, 50), 2),
                    "p95_ms": round(percentile(firsts, 95), 2),
                    "items": len(first["items"]),
                    **({"next_p95_ms": round(percentile(nexts, 95), 2)} if nexts else {}),
                }
            results[label] = row
        conn.close()
    finally:
        stop(proc)
    # The floors run after the HTTP figures: a slow floor would leave the keep-alive
    # connection idle past the server's timeout, and the next request would find it closed.
    for label, party in personas.items():
        results[label]["floor"] = floor_first_screen(store, url, party, repeat)
    return results


# ------------------------------------------------------------------ export


def report_own(url: str, party: str, to: str, output: str) -> list[str]:
    """The `servicetrail report own` command of the Party's traffic from 2000 until `to`."""
    window = ["--from", "2000-01-01", "--to", to]
    return [BIN, "--db", url, "report", "own", "--party", party, *window, "--output", output]


def bench_export(store: Store, url: str) -> dict:
    conn = store.raw(url)
    party = conn.execute(
        "SELECT u.party_id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id "
        "GROUP BY u.party_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    ids = [
        u
        for (u,) in conn.execute(
            "SELECT user_id FROM dcc_user WHERE party_id = " + mark_of(store.kind),
            (party,),
        ).fetchall()
    ]
    out = Path(tempfile.mkstemp(suffix=".csv")[1])
    wall, rss, done = timed_child(report_own(url, party, "2100-01-01", str(out)))
    rows = sum(1 for _ in csv.reader(open(out, newline=""))) - 1
    # the command's fixed cost (Python start-up, imports, connecting), from a report of no rows:
    # at 1M records it is a fifth of the whole export, so the streaming rate is shown apart
    startup, _, _ = timed_child(report_own(url, party, "2000-01-02", os.devnull))
    marks = ",".join(mark_of(store.kind) for _ in ids)
    # the payload join on all three keys, as the product does: on PostgreSQL that lets the
    # planner join partition by partition
    sql = (
        f"SELECT s.*, p.payload FROM sat_record s LEFT JOIN sat_payload p ON p.record_id = s.id "
        f"AND p.logged_at = s.logged_at AND p.device_id = s.device_id "
        f"WHERE s.user_id IN ({marks}) ORDER BY s.logged_at DESC, s.id DESC"
    )
    start = time.perf_counter()
    if store.kind == "sqlite":
        sink = io.StringIO()
        writer = csv.writer(sink)
        for row in conn.execute(sql, ids):
            writer.writerow(row)
            if sink.tell() > 1 << 20:
                sink.seek(0)
                sink.truncate()
        floor_how = "cursor + csv"
    else:
        literal = ",".join("'" + i + "'" for i in ids)
        with conn.cursor() as cur:
            with cur.copy(f"COPY ({sql.replace(marks, literal)}) TO STDOUT (FORMAT csv)") as copy:
                for _ in copy:
                    pass
        floor_how = "COPY TO STDOUT"
    floor = time.perf_counter() - start
    conn.close()
    out.unlink()
    return {
        "party": party,
        "rows": rows,
        "product_rows_s": round(rows / wall),
        "peak_rss_mb": rss,
        "startup_s": round(startup, 2),
        "streaming_rows_s": round(rows / max(wall - startup, 1e-9)),
        "floor_rows_s": round(rows / floor),
        "floor": floor_how,
        "ratio": round((rows / wall) / (rows / floor), 2),
        "ok": done.returncode == 0,
    }


# ------------------------------------------------------------------ main


def measure_engine(
    store: Store,
    a: argparse.Namespace,
    skip: set[str],
    files: dict[str, Path],
    duis_files: dict[str, Path],
) -> dict:
    kind = store.kind
    result: dict = {}
    if "ingest" in skip:  # the store for search and export, built by the generator itself
        print(f"[{kind}] generate --into-store ...", file=sys.stderr)
        result["generate_into_store"], url = build_store(store, a.records)
    else:
        print(f"[{kind}] ingest ...", file=sys.stderr)
        result["ingest"], url = bench_ingest(store, files, a.records)
    if "duis" not in skip:
        print(f"[{kind}] DUIS ingest ...", file=sys.stderr)
        result["duis"] = bench_duis(store, duis_files)
    if "first" not in skip:
        print(f"[{kind}] HTTP first screen ...", file=sys.stderr)
        result["first_screen"] = bench_first_screen(store, url)
    if "search" not in skip:
        print(f"[{kind}] HTTP device search ...", file=sys.stderr)
        result["search"] = bench_search(store, url, a.clients, a.searches, a.workers)
    if "export" not in skip:
        print(f"[{kind}] own-report export ...", file=sys.stderr)
        result["export"] = bench_export(store, url)
    return result


def measure_existing(a: argparse.Namespace) -> int:
    """Search and export on a store that is already loaded, e.g. one that
    `servicetrail generate --into-store` built: for trying a change without reloading."""
    store = store_at(a.store)
    skip = set(filter(None, a.skip.split(",")))
    result: dict = {}
    if "first" not in skip:
        result["first_screen"] = bench_first_screen(store, a.store)
    if "search" not in skip:
        result["search"] = bench_search(store, a.store, a.clients, a.searches, a.workers)
    if "export" not in skip:
        result["export"] = bench_export(store, a.store)
    print(json.dumps({store.kind: result}, indent=2))
    return 0


def generate(work: Path, records: int, skip: set[str]) -> tuple[dict[str, Path], dict[str, Path]]:
    """The SAT JSON Lines world and the DUIS capture the measurements load, unless skipped."""
    files: dict[str, Path] = {}
    if "ingest" not in skip:
        print(f"generating {records} records in {work} ...", file=sys.stderr)
        written = write_world(World(n_records=records, seed=2025), work, sat=True, duis=False)
        files = {
            "users": written["users.csv"],
            "devices": written["devices.csv"],
            "responsibilities": written["responsibilities.csv"],
            "sat": written["sat.jsonl"],
        }
    duis_files: dict[str, Path] = {}
    if "duis" not in skip:
        duis_written = write_world(
            World(n_records=min(records, 100_000), seed=2026), work / "duis", sat=False, duis=True
        )
        duis_files = {
            "users": duis_written["users.csv"],
            "devices": duis_written["devices.csv"],
            "responsibilities": duis_written["responsibilities.csv"],
            "duis": duis_written["duis.jsonl"],
        }
    return files, duis_files


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="200k records, fewer searches")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--skip", default="", help="comma list of: ingest, duis, first, search, export")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--searches", type=int, default=2000, help="requests per client")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--store",
        default=None,
        help="measure search and export on this existing store (no generation, no ingest)",
    )
    a = ap.parse_args()
    if a.store:
        return measure_existing(a)
    if a.quick:
        a.records, a.searches = 200_000, 500
    skip = set(filter(None, a.skip.split(",")))
    report: dict = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": a.records,
    }
    # a quarter of this machine's memory would be 6 GB, PostgreSQL's usual advice for a
    # dedicated server; 4 GB holds the hot set of the 1M run (payloads and all)
    with stores(a.engines, "servicetrail-bench-", a.work, shared_buffers="4GB") as each:
        work = each[0].work
        files, duis_files = generate(work, a.records, skip)
        for store in each:
            report[store.kind] = measure_engine(store, a, skip, files, duis_files)
            print(json.dumps({store.kind: report[store.kind]}, indent=2))
            for stale in work.glob("*.db*"):  # 22 GB at 10M: gone before the next engine's store
                stale.unlink()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    written = out / f"results-{a.records}.json"  # one file per size: bench-full runs two
    written.write_text(json.dumps(report, indent=2))
    print(f"written {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
