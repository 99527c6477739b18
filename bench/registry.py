#!/usr/bin/env python3
"""The registry loader at DCC scale (issue 12 item 2), beside the raw floor of the same run.

    .venv/bin/python bench/registry.py      # 1M devices (~2.7M intervals), both engines
    .venv/bin/python bench/registry.py --devices 100000 --engines sqlite

Per engine, each figure the whole `servicetrail load ...` command (a child process: start-up,
reading and validating the CSV, the store's decisions, writes and the visibility index),
with its wall time, rows/s, peak memory, and its CPU seconds: all told (its parsing worker
included), its own process's, the PostgreSQL server's, and its time waiting for a core
(wall time on a shared machine is mostly that wait):
- first load of devices.csv and responsibilities.csv into an empty store, then re-load of both;
- the raw floor: the same rows, read with the csv module and no validation, inserted with
  executemany (SQLite) or binary COPY (PostgreSQL) into the same migrated, indexed tables;
- a daily correction file of 10,000 intervals (half the Devices of 5,000 open supply
  intervals closed at a recent date, half their successors opened from it) applied to the
  store after its SAT records were ingested, so the visibility index has records to re-derive.
Results go to stdout and bench/out/registry-N.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, ROOT, Store, stores  # noqa: E402

UTC = timezone.utc
CORRECTED_AT = "2025-12-01T00:00:00Z"  # a recent day inside the generated traffic (2025)


def generate(work: Path, devices: int, records: int) -> Path:
    folder = work / f"world-{devices}"
    if not (folder / "responsibilities.csv").exists():
        done = subprocess.run(
            [BIN, "generate", str(folder), "--devices", str(devices), "--records", str(records)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"generate failed: {done.stderr[-500:]}")
    return folder


def correction_file(folder: Path, intervals: int = 10_000, seed: int = 12) -> Path:
    """Close open supply intervals at CORRECTED_AT and open a successor from it: what a daily
    change-of-supplier feed looks like."""
    path = folder / "corrections.csv"
    suppliers, open_supply = set(), []
    with open(folder / "responsibilities.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["relation"] == "supplier":
                suppliers.add(row["party_id"])
                if not row["valid_to"] and row["valid_from"] < CORRECTED_AT:
                    open_supply.append(row)
    rng = random.Random(seed)
    chosen = rng.sample(open_supply, intervals // 2)
    suppliers = sorted(suppliers)
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["device_id", "party_id", "relation", "valid_from", "valid_to"])
        for row in chosen:
            successor = rng.choice([p for p in suppliers if p != row["party_id"]])
            out.writerow(
                [row["device_id"], row["party_id"], "supplier", row["valid_from"], CORRECTED_AT]
            )
            out.writerow([row["device_id"], successor, "supplier", CORRECTED_AT, ""])
    return path


def rows_in(path: Path) -> int:
    with open(path, newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def timed_command(args: list[str]) -> tuple[float, float, int, str, float, float]:
    """Wall seconds, CPU seconds (user + system, its parsing worker's included), peak RSS
    (MB) and standard output of one child process, then from /proc/PID/schedstat, for its
    own process alone: seconds on a core and seconds waiting for one (the kernel's run-queue
    time). The CPU time says what the command costs when
    the machine is shared: on a busy one the wall time mostly measures the queue for the
    cores, and the run-queue time says how much of it."""
    start, cpu_before = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = ThreadPoolExecutor(1).submit(proc.communicate)
    peak_kb, ran_ns, waited_ns = 0, 0, 0
    status_file = Path(f"/proc/{proc.pid}/status")
    schedstat = Path(f"/proc/{proc.pid}/schedstat")
    while not reader.done():
        try:
            peak_kb = max(
                [peak_kb]
                + [
                    int(line.split()[1])
                    for line in status_file.read_text().splitlines()
                    if line.startswith("VmHWM:")
                ]
            )
            ran_ns, waited_ns = map(int, schedstat.read_text().split()[:2])
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.02)
    out, err = reader.result()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[3:])} failed: {out[-300:]!r} {err[-500:]!r}")
    cpu = _children_cpu() - cpu_before
    return wall, cpu, peak_kb // 1024, out.decode().strip(), ran_ns / 1e9, waited_ns / 1e9


def _children_cpu() -> float:
    """CPU seconds of this process's ended children, all told (one command runs at a time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(store: Store) -> float:
    """CPU seconds the PostgreSQL server has spent so far (0 for SQLite): the postmaster's
    own, its ended children's (each command's backend ends with it), and its live ones'
    (WAL writer, checkpointer...). A COPY's parsing, index and foreign-key work is there."""
    if store.kind != "postgresql" or store.pg is None:
        return 0.0
    postmaster = int((store.pg.data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        # after the command name, which is in parentheses and may hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(postmaster)
    total = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    for child in children:
        try:
            total += sum(int(v) for v in fields(int(child))[11:13])
        except OSError:
            pass  # ended meanwhile: now in the postmaster's cutime
    return total / tick


def load(store: Store, url: str, what: str, path: Path) -> dict:
    server_before = server_cpu(store)
    wall, cpu, peak_mb, said, ran, waited = timed_command(
        [BIN, "--db", url, "load", what, str(path)]
    )
    rows = rows_in(path)
    figures = {
        "rows": rows,
        "seconds": round(wall, 2),
        "rows_per_s": round(rows / wall),
        "cpu_seconds": round(cpu, 2),
        "rows_per_cpu_s": round(rows / cpu),
        "loader_process_cpu_s": round(ran, 2),  # the rest of cpu_seconds: its parsing worker
        "peak_mb": peak_mb,
        "waiting_for_a_core_s": round(waited, 2),
        "load_average": round(os.getloadavg()[0], 1),
        "said": said,
    }
    server = server_cpu(store) - server_before
    if store.kind == "postgresql":
        figures["server_cpu_seconds"] = round(server, 2)
    # the loader, its parsing worker and the PostgreSQL server each on a core of their own:
    # an idle machine with cores enough would need about the busiest one's CPU time
    figures["rows_per_busier_cpu_s"] = round(rows / max(ran, cpu - ran, server))
    return figures


def _sqlite_time(text: str) -> str | None:
    return (
        datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if text
        else None
    )


def floor(store: Store, url: str, folder: Path, batch: int = 100_000) -> dict:
    """Raw inserts of devices.csv and responsibilities.csv into an empty migrated store (its
    Parties loaded), in `batch`-row transactions, as bench/run.py's ingest floor: only the
    database's work is timed, not reading or converting the file."""
    load(store, url, "users", folder / "users.csv")
    conn = store.raw(url)
    if store.kind == "sqlite":  # as the store's engine sets them (store.engine)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "cache_size=-65536",
            "wal_autocheckpoint=16384",
        ):
            conn.execute(f"PRAGMA {pragma}")
    figures = {}
    for table, columns, types in (
        ("device", ("device_id", "device_type", "smets"), ["varchar", "varchar", "int2"]),
        (
            "responsibility",
            ("device_id", "party_id", "relation", "valid_from", "valid_to"),
            ["varchar", "varchar", "varchar", "timestamptz", "timestamptz"],
        ),
    ):
        elapsed, count, server_before = 0.0, 0, server_cpu(store)
        with open(
            folder / ("devices.csv" if table == "device" else "responsibilities.csv"), newline=""
        ) as f:
            reader = csv.reader(f)
            next(reader)
            while True:
                chunk = [row for _, row in zip(range(batch), reader)]
                if not chunk:
                    break
                count += len(chunk)
                if table == "device":
                    chunk = [(d, t, int(s)) for d, t, s in chunk]
                elif store.kind == "sqlite":
                    chunk = [(d, p, r, _sqlite_time(a), _sqlite_time(b)) for d, p, r, a, b in chunk]
                else:
                    chunk = [
                        (
                            d,
                            p,
                            r,
                            datetime.fromisoformat(a),
                            datetime.fromisoformat(b) if b else None,
                        )
                        for d, p, r, a, b in chunk
                    ]
                start = time.perf_counter()
                if store.kind == "sqlite":
                    marks = ",".join("?" * len(columns))
                    conn.executemany(
                        f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", chunk
                    )
                else:
                    with (
                        conn.cursor() as cursor,
                        cursor.copy(
                            f"COPY {table} ({','.join(columns)}) FROM STDIN (FORMAT BINARY)"
                        ) as copy,
                    ):
                        copy.set_types(types)
                        for row in chunk:
                            copy.write_row(row)
                conn.commit()
                elapsed += time.perf_counter() - start
        figures[table] = {
            "rows": count,
            "seconds": round(elapsed, 2),
            "rows_per_s": round(count / elapsed),
        }
        if store.kind == "postgresql":  # what a load's server CPU compares with
            figures[table]["server_cpu_seconds"] = round(server_cpu(store) - server_before, 2)
    conn.close()
    return figures


def measure(store: Store, folder: Path, corrections: Path) -> dict:
    url = store.fresh("registry")
    result: dict = {}
    load(store, url, "users", folder / "users.csv")
    for step, what in (
        ("devices_first", "devices"),
        ("responsibilities_first", "responsibilities"),
        ("devices_reload", "devices"),
        ("responsibilities_reload", "responsibilities"),
    ):
        result[step] = load(store, url, what, folder / f"{what}.csv")
    result["floor"] = floor(store, store.fresh("floor"), folder)
    ingest = subprocess.run(
        [BIN, "--db", url, "ingest", str(folder / "sat.jsonl")], capture_output=True, text=True
    )
    result["records_ingested"] = ingest.stdout.strip()
    result["correction"] = load(store, url, "responsibilities", corrections)
    return result


def table(kind: str, result: dict) -> str:
    """The figures as BENCHMARKS.md shows them, each load beside the raw floor of its table."""
    lines = [
        f"{kind}: command | rows | wall s | rows/s wall | CPU s | rows per CPU s | "
        "loader process CPU s | server CPU s | rows per busier CPU s | peak MB | load avg | "
        "waiting for a core s | "
        "rows/s wall / floor"
    ]
    for step, table_name in (
        ("devices_first", "device"),
        ("devices_reload", "device"),
        ("responsibilities_first", "responsibility"),
        ("responsibilities_reload", "responsibility"),
        ("correction", "responsibility"),
    ):
        f = result[step]
        floor_rate = result["floor"][table_name]["rows_per_s"]
        lines.append(
            f"  {step} | {f['rows']:,} | {f['seconds']} | {f['rows_per_s']:,} | "
            f"{f['cpu_seconds']} | {f['rows_per_cpu_s']:,} | {f['loader_process_cpu_s']} | "
            f"{f.get('server_cpu_seconds', '')} | "
            f"{f.get('rows_per_busier_cpu_s', '')} | {f['peak_mb']} | {f['load_average']} | "
            f"{f['waiting_for_a_core_s']} | {f['rows_per_s'] / floor_rate:.2f}"
        )
    for table_name, f in result["floor"].items():
        lines.append(
            f"  floor {table_name} | {f['rows']:,} | {f['seconds']} | {f['rows_per_s']:,} | "
            f"server CPU s {f.get('server_cpu_seconds', '')}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument(
        "--records", type=int, default=500_000, help="SAT records in the store the correction meets"
    )
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument(
        "--work", type=Path, default=None, help="keep the generated files here (and reuse them)"
    )
    a = ap.parse_args()
    report: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "devices": a.devices,
        "records": a.records,
    }
    with stores(a.engines, "servicetrail-registry-", a.work) as each:
        work = each[0].work
        folder = generate(work, a.devices, a.records)
        corrections = correction_file(folder)
        for store in each:
            report[store.kind] = measure(store, folder, corrections)
            print(json.dumps({store.kind: report[store.kind]}, indent=2), flush=True)
            print(table(store.kind, report[store.kind]), flush=True)
            for stale in work.glob("*.db*"):
                stale.unlink()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"registry-{a.devices}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
