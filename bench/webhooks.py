"""Watches and webhooks against issue 13's targets, through servicetrail's own code paths.

1. Matching overhead: the same generated SAT JSON Lines ingested with `servicetrail ingest`
   into a store without watches, and into one where each of the ~130 Parties keeps 100
   watches (random filters); then the matcher (`store.watch_matcher.catch_up`, what `serve` and
   `deliver` run) catches up. Target: matching <= 10% of the ingest time.
2. Sustained deliveries/s: events of watches hooked to a local receiver (uvicorn, its own
   process), delivered by `servicetrail deliver` (its own process). Target >= 1,000/s.
3. Commit to arrival: while `servicetrail deliver` runs, small batches are committed every
   half second; each event's arrival at the receiver minus its batch's commit. Target p95
   <= 2 s.

    .venv/bin/python bench/webhooks.py                        # SQLite and PostgreSQL
    .venv/bin/python bench/webhooks.py --engines sqlite --records 100000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, PgServer, free_port, percentile, stop  # noqa: E402

SERVICETRAIL = Path(sys.executable).with_name("servicetrail")
UTC = timezone.utc


# --- the receiver (run as `bench/webhooks.py --receiver PORT`) ----------------------------------


def receiver_app():
    """An ASGI app that answers 204 to every POST and keeps (arrival time, webhook-id); every
    hundredth delivery's signature is checked with the reference library (the secret comes
    in SECRET_FILE once the bench knows it)."""
    from standardwebhooks import Webhook

    arrivals: list[tuple[float, str]] = []
    state = {"checked": 0, "bad": 0}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            out = json.dumps({"arrivals": arrivals, **state}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": out})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        arrivals.append((time.time(), headers.get("webhook-id", "")))
        secret_file = os.environ.get("SECRET_FILE")
        if len(arrivals) % 100 == 1 and secret_file and os.path.exists(secret_file):
            secrets = json.loads(Path(secret_file).read_text())
            try:
                Webhook(secrets[scope["path"]]).verify(body, headers)
                state["checked"] += 1
            except Exception:  # noqa: BLE001 - counted, the bench reports it
                state["bad"] += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def run_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(
        receiver_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        access_log=False,
    )


# --- helpers -------------------------------------------------------------------------------


LAST_CPU = {"s": 0.0}  # the CPU seconds of the last `cli` run (its process, SQLite included)


def cli(url: str, *args: str, env: dict | None = None) -> float:
    """Run a servicetrail command; its wall seconds (its CPU seconds in LAST_CPU): on a
    machine shared with other work, CPU seconds compare better than wall seconds."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [str(SERVICETRAIL), "--db", url, *args],
        check=True,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU["s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - started


def load_registry(url: str, files: dict[str, Path]) -> None:
    for what in ("users", "devices", "responsibilities"):
        cli(url, "load", what, str(files[what]))


def random_watches(engine, per_party: int, mix: str, seed: int = 13) -> int:
    """`per_party` watches for every Party.

    "analyst": what a security or operations analyst keeps: mostly "mine", some Device
    lists; SRVs mostly a few named ones or the critical ones, now and then all of them;
    requests mostly; other Users' traffic mostly.
    "broad": the same shapes drawn far more often broad (all SRVs, a quarter of the time),
    so that each record becomes many events: the cost per event shows."""
    from sqlalchemy import select

    from servicetrail.domain.catalogue import CATALOGUE
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.schema import party, responsibility
    from servicetrail.store.watches import create_watch

    rng = random.Random(seed)
    srvs = sorted(CATALOGUE)
    made = 0
    with engine.begin() as conn:
        parties = list(conn.execute(select(party.c.party_id).order_by(party.c.party_id)).scalars())
        devices_of: dict[str, list[str]] = {}
        for device_id, party_id in conn.execute(
            select(responsibility.c.device_id, responsibility.c.party_id).order_by(
                responsibility.c.party_id, responsibility.c.device_id
            )
        ):
            devices_of.setdefault(party_id, []).append(device_id)
        for party_id in parties:
            for n in range(per_party):
                if mix == "broad":
                    body = {
                        "kinds": rng.choice(
                            [
                                ["request"],
                                ["request"],
                                ["request", "response"],
                                ["response"],
                                ["device_alert", "request"],
                            ]
                        ),
                        "senders": rng.choice(["others", "others", "all"]),
                        "srvs": rng.choice(
                            ["all", "critical", rng.sample(srvs, 3), rng.sample(srvs, 10)]
                        ),
                    }
                    listed = rng.random() < 0.3
                else:
                    body = {
                        "kinds": rng.choices(
                            [["request"], ["request", "response"], ["response"], ["device_alert"]],
                            [70, 15, 10, 5],
                        )[0],
                        "senders": rng.choices(["others", "all"], [80, 20])[0],
                        "srvs": rng.choices(
                            ["all", "critical", rng.sample(srvs, rng.randint(1, 5))], [10, 30, 60]
                        )[0],
                    }
                    listed = rng.random() < 0.15
                if listed and devices_of.get(party_id):
                    held = devices_of[party_id]
                    body["devices"] = rng.sample(held, min(rng.randint(5, 20), len(held)))
                create_watch(conn, party_id, watch_spec({"name": f"w{n}", **body}), None)
                made += 1
    return made


def hook_watches(
    engine, receiver_port: int, party_id: str, count: int, secrets_file: Path
) -> list[int]:
    """Watches of one Party that match everything it may see, each with a webhook."""
    from servicetrail.domain.model import KINDS
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.watches import create_watch
    from servicetrail.webhooks.signing import new_secret

    secrets, ids = {}, []
    with engine.begin() as conn:
        for n in range(count):
            path = f"/hook/{n}"
            secret = new_secret()
            made = create_watch(
                conn,
                party_id,
                watch_spec(
                    {
                        "name": f"hook {n}",
                        "kinds": list(KINDS),
                        "senders": "all",
                        "webhook": {"url": f"http://127.0.0.1:{receiver_port}{path}"},
                    }
                ),
                secret,
            )
            secrets[path] = secret
            ids.append(made["id"])
    secrets_file.write_text(json.dumps(secrets))
    return ids


def busiest_party(engine) -> str:
    from sqlalchemy import func, select

    from servicetrail.store.schema import responsibility

    with engine.connect() as conn:
        return conn.execute(
            select(responsibility.c.party_id)
            .group_by(responsibility.c.party_id)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar_one()


def receiver_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        return json.loads(answer.read())


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a running process so far (/proc/PID/stat): a child that
    is still running has no rusage yet."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pg) -> float:
    """PostgreSQL's CPU seconds so far: the postmaster with its reaped children (backends that
    ended), and every backend still running."""
    if pg is None:
        return 0.0
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def start(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_listening(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# --- the three measurements ------------------------------------------------------------------


def matching_overhead(
    new_store, files: dict[str, Path], per_party: int, mixes: list[str], env: dict
) -> dict:
    """Ingest without watches; then, per watch mix, ingest while `servicetrail deliver` matches
    alongside (what a live system does) and the time it takes to catch up; then the matcher
    alone over the same records (its events cleared, its cursor put back), in this process."""
    from sqlalchemy import func, select, text

    from servicetrail.store.engine import open_store
    from servicetrail.store.watch_tables import watch_event
    from servicetrail.store.watch_matcher import _watch_index, catch_up, unmatched_backlog

    plain = new_store("plain")
    load_registry(plain, files)
    ingest_plain = cli(plain, "ingest", str(files["sat"]))
    ingest_cpu = LAST_CPU["s"]
    found: dict = {
        "ingest_s_without_watches": round(ingest_plain, 2),
        "ingest_cpu_s": round(ingest_cpu, 2),
    }
    for mix in mixes:
        url = new_store(f"watched-{mix}")
        load_registry(url, files)
        engine = open_store(url)
        made = random_watches(engine, per_party, mix)
        worker = start([str(SERVICETRAIL), "--db", url, "deliver"], env)
        started = time.perf_counter()
        ingest_watched = cli(url, "ingest", str(files["sat"]))
        while True:
            with engine.connect() as conn:
                if unmatched_backlog(conn) == 0:
                    break
            time.sleep(0.1)
        caught_up = time.perf_counter() - started
        stop(worker)
        with engine.begin() as conn:
            events = conn.execute(select(func.count()).select_from(watch_event)).scalar_one()
            records = conn.execute(text("SELECT count(*) FROM sat_record")).scalar_one()
            # the matcher alone, over the same records: events cleared, cursor put back
            conn.execute(text("DELETE FROM watch_event"))
            conn.execute(text("UPDATE watch SET last_event_id = 0, after_record_id = 0"))
            conn.execute(
                text("UPDATE watch_cursor SET record_id = 0, seen_id = 0, gap_since = NULL")
            )
        with engine.connect() as conn:
            _watch_index(conn)  # a running matcher holds its watches indexed already
        began, cpu = time.perf_counter(), time.process_time()
        catch_up(engine, steps=10**9)
        alone, alone_cpu = time.perf_counter() - began, time.process_time() - cpu
        engine.dispose()
        found[mix] = {
            "watches": made,
            "records": records,
            "events": events,
            "events_per_record": round(events / max(1, records), 2),
            "ingest_s_with_matcher_alongside": round(ingest_watched, 2),
            "ingest_slowdown": round(ingest_watched / ingest_plain - 1, 3),
            "caught_up_s_after_ingest_start": round(caught_up, 2),
            "matcher_alone_s": round(alone, 2),
            "matcher_alone_cpu_s": round(alone_cpu, 2),
            "matcher_alone_share_of_ingest": round(alone / ingest_plain, 3),
            "matcher_cpu_share_of_ingest_cpu": round(alone_cpu / max(ingest_cpu, 1e-9), 3),
            "us_per_record": round(alone / max(1, records) * 1e6, 1),
            "us_per_event": round(alone / max(1, events) * 1e6, 2),
        }
    return found


def deliveries(
    new_store,
    files: dict[str, Path],
    work: Path,
    hooks: int,
    env: dict,
    pg=None,
    analyze: bool = True,
) -> dict:
    """Sustained throughput, then commit-to-arrival latency, on one store. PostgreSQL: the
    store analyzed once filled (`analyze`), as autovacuum finds a store whose backlog has
    grown over minutes; not analyzed, the outbox's 18,504 rows may or may not be analyzed by
    autovacuum during the run (its naptime is a minute), and the run says which."""
    from sqlalchemy import text

    from servicetrail.store.engine import open_store
    from servicetrail.store.outbox import pending_count
    from servicetrail.store.watch_matcher import catch_up

    url = new_store("deliveries")
    load_registry(url, files)
    engine = open_store(url)
    port = free_port()
    secrets = work / "secrets.json"
    receiver = start(
        [sys.executable, __file__, "--receiver", str(port)], {"SECRET_FILE": str(secrets)}
    )
    wait_listening(port)
    party = busiest_party(engine)
    hook_watches(engine, port, party, hooks, secrets)
    cli(url, "ingest", str(files["sat"]))
    catch_up(engine, steps=10**9)
    with engine.begin() as conn:
        pending = pending_count(conn)
        if pg is not None and analyze:
            conn.execute(text("ANALYZE"))
    receiver_cpu = cpu_seconds(receiver.pid)
    server_cpu = server_cpu_seconds(pg)
    load_before = os.getloadavg()[0]
    worker = start([str(SERVICETRAIL), "--db", url, "deliver"], env)
    started = time.perf_counter()
    profile = os.environ.get("BENCH_PYSPY")  # a file: sample the worker's threads with py-spy
    if profile:
        spy = Path(sys.executable).with_name("py-spy")
        subprocess.Popen(
            [spy, "record", "-p", str(worker.pid), "-d", "8", "-f", "raw", "-o", profile, "-t"]
        )
    while True:
        time.sleep(0.2)
        with engine.connect() as conn:
            left = pending_count(conn)
        if left == 0 or time.perf_counter() - started > 600:
            break
    elapsed = time.perf_counter() - started
    autoanalyzed = None
    if pg is not None:
        with engine.connect() as conn:
            autoanalyzed = conn.execute(
                text(
                    "SELECT autoanalyze_count FROM pg_stat_user_tables "
                    "WHERE relname = 'webhook_outbox'"
                )
            ).scalar_one()
    worker_cpu = cpu_seconds(worker.pid)  # start-up (imports) included: ~1 s
    receiver_cpu = cpu_seconds(receiver.pid) - receiver_cpu
    server_cpu = server_cpu_seconds(pg) - server_cpu
    stats = receiver_stats(port)
    delivered = len(stats["arrivals"])
    # steady state: from the 10th to the 90th percentile of arrivals (start-up and tail left out)
    times = sorted(t for t, _ in stats["arrivals"])
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    sustained = (len(times) * 8 // 10) / (hi - lo) if hi > lo else float("nan")
    throughput = {
        "pending": pending,
        "delivered": delivered,
        "seconds": round(elapsed, 2),
        "deliveries_per_s_overall": round(delivered / elapsed, 1),
        "deliveries_per_s_sustained": round(sustained, 1),
        "deliver_cpu_s": round(worker_cpu, 2),
        "deliver_cpu_ms_per_delivery": round(worker_cpu / max(1, delivered) * 1e3, 3),
        "receiver_cpu_s": round(receiver_cpu, 2),
        "postgresql_cpu_s": round(server_cpu, 2),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "analyzed_before": analyze if pg is not None else None,
        "outbox_autoanalyzed": autoanalyzed,  # times autovacuum analyzed it, the run included
        "signatures_checked": stats["checked"],
        "signatures_bad": stats["bad"],
    }

    # commit to arrival: batches committed every half second while the worker runs
    latency = commit_to_arrival(engine, port, party, before=delivered)
    stop(worker)
    stop(receiver)
    engine.dispose()
    return {"throughput": throughput, "commit_to_arrival": latency}


def commit_to_arrival(
    engine, port: int, party: str, before: int, batches: int = 40, size: int = 50
) -> dict:
    from sqlalchemy import select

    from servicetrail.domain.model import SatRecord
    from servicetrail.store.schema import dcc_user, responsibility
    from servicetrail.store.watch_tables import watch_event
    from servicetrail.store.writer import append_records

    with engine.connect() as conn:
        devices = list(
            conn.execute(
                select(responsibility.c.device_id)
                .where(responsibility.c.party_id == party, responsibility.c.valid_to.is_(None))
                .limit(50)
            ).scalars()
        )
        sender = conn.execute(
            select(dcc_user.c.user_id).where(dcc_user.c.party_id != party).limit(1)
        ).scalar_one()
    committed: dict[str, float] = {}
    counter = 10**9
    for _ in range(batches):
        now = datetime.now(UTC)
        records = []
        for n in range(size):
            counter += 1
            device = devices[n % len(devices)]
            records.append(
                SatRecord(
                    now + timedelta(microseconds=n),
                    "request",
                    f"{sender}:{device}:{counter}",
                    "4.1.1",
                    sender,
                    device,
                    "",
                    "<bench/>",
                )
            )
        with engine.begin() as conn:
            append_records(conn, records)
        at = time.time()
        for r in records:
            committed[r.request_id] = at
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        arrivals = receiver_stats(port)["arrivals"][before:]
        if (
            len(arrivals) >= 0.999 * len(committed) * 1
        ):  # at least one event per record (one watch may match)
            break
        time.sleep(0.5)
    # each event's record, to find its batch's commit time
    with engine.connect() as conn:
        record_of = {
            f"evt_{w}_{e}": r
            for w, e, r in conn.execute(
                select(watch_event.c.watch_id, watch_event.c.event_id, watch_event.c.record_id)
            )
        }
        from servicetrail.store.schema import (
            sat_record,
        )  # the bench reads ids directly: no viewer here

        ids = {}
        wanted = list(committed)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            ids.update(
                {
                    record_id: request_id
                    for record_id, request_id in conn.execute(
                        select(sat_record.c.id, sat_record.c.request_id).where(
                            sat_record.c.request_id.in_(chunk)
                        )
                    )
                }
            )
    delays = [
        t - committed[ids[record_of[wid]]]
        for t, wid in arrivals
        if wid in record_of and record_of[wid] in ids
    ]
    return {
        "records": len(committed),
        "arrivals_measured": len(delays),
        "p50_s": round(percentile(delays, 50), 3),
        "p95_s": round(percentile(delays, 95), 3),
        "max_s": round(max(delays), 3) if delays else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument(
        "--records", type=int, default=200_000, help="records of the matching measurement"
    )
    ap.add_argument(
        "--delivery-records", type=int, default=40_000, help="records of the delivery measurement"
    )
    ap.add_argument("--watches-per-party", type=int, default=100)
    ap.add_argument("--parts", default="matching,deliveries", help="which parts to run")
    ap.add_argument(
        "--hooks", type=int, default=4, help="webhook watches of the delivery measurement"
    )
    ap.add_argument(
        "--no-analyze",
        action="store_true",
        help="PostgreSQL: deliver from a store not analyzed since it was filled (as before "
        "session 55; autovacuum may analyze it during the run)",
    )
    ap.add_argument(
        "--mixes", default="analyst,broad", help="watch mixes of the matching measurement"
    )
    a = ap.parse_args()
    if a.receiver:
        run_receiver(a.receiver)
        return 0
    from servicetrail.generate import World, write_world

    work = Path(tempfile.mkdtemp(prefix="st-webhooks-"))
    env = {"SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK": "1"}
    os.environ.update(env)
    report: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
    }
    pg = None
    try:
        big = (
            write_world(World(n_records=a.records, seed=2025), work / "big", sat=True, duis=False)
            if "matching" in a.parts
            else {}
        )
        small = write_world(
            World(n_records=a.delivery_records, seed=2027), work / "small", sat=True, duis=False
        )
        files = lambda w: {  # noqa: E731
            "users": w["users.csv"],
            "devices": w["devices.csv"],
            "responsibilities": w["responsibilities.csv"],
            "sat": w["sat.jsonl"],
        }
        for kind in a.engines.split(","):
            if kind == "postgresql":
                pg = pg or PgServer(shared_buffers="1GB").start()
                new_store = lambda name, server=pg: server.new_database()  # noqa: E731
            else:
                new_store = lambda name, k=kind: f"sqlite:///{work / f'{k}-{name}.db'}"  # noqa: E731
            result: dict = {}
            if "matching" in a.parts:
                result["matching"] = matching_overhead(
                    new_store, files(big), a.watches_per_party, a.mixes.split(","), env
                )
                print(json.dumps({kind: result}, indent=2), flush=True)
            if "deliveries" in a.parts:
                server = pg if kind == "postgresql" else None
                result.update(
                    deliveries(
                        new_store, files(small), work, a.hooks, env, server, not a.no_analyze
                    )
                )
            report[kind] = result
            print(json.dumps({kind: result}, indent=2), flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "webhooks.json").write_text(json.dumps(report, indent=2))
    print(f"written {out / 'webhooks.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
