#!/usr/bin/env python3
"""Correction files whose lines wait for the file's end (ingest.waiting_lines), beside one of
the same size in which nothing waits.

    .venv/bin/python bench/waiting_lines.py                       # 100,000 Devices, both engines
    .venv/bin/python bench/waiting_lines.py --devices 1000000 --engines sqlite

N Devices, each with a change of supplier (A until June, B from June), loaded once; then, each
on a fresh copy of that store, the whole `servicetrail load responsibilities` command for:
- `in place` (the floor): 2N lines correcting each interval at its start (its Party),
  applied in their batches, nothing waiting;
- `next supplier`: a change of supplier to a third, as a daily file gives it: B's end, then
  C's start, side by side: applied in their batches (C takes the time B's end frees);
- `new first`: every change of supplier moved to May, the new supplier's line first: every
  line waits for the file's end;
- `old first`: moved to April, the old supplier's end first: each Device's two lines wait
  together from their batch on.
Each: wall seconds, rows/s, peak memory, and the Devices left with a gap between suppliers.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, OUT, Store, stores  # noqa: E402
from registry import timed_command  # noqa: E402

HEADER = "device_id,party_id,relation,valid_from,valid_to\n"


def device(i: int) -> str:
    return f"00-DB-{i >> 16:02X}-{(i >> 8) & 255:02X}-{i & 255:02X}-00-00-01"


def write_inputs(folder: Path, devices: int) -> dict[str, Path]:
    files = {
        "users": "user_id,party_id,party_name,role\n"
        "90-B3-D5-1F-30-01-00-01,SUPA,Supplier A,IS\n90-B3-D5-1F-30-01-00-02,SUPB,Supplier B,IS\n"
        "90-B3-D5-1F-30-01-00-03,SUPC,Supplier C,IS\n",
    }

    def lines(make) -> str:
        return "".join(make(device(i)) for i in range(devices))

    files["devices"] = "device_id,device_type,smets\n" + lines(lambda d: f"{d},ESME,2\n")
    files["registry"] = HEADER + lines(
        lambda d: (
            f"{d},SUPA,supplier,2024-01-01T00:00:00Z,2024-06-01T00:00:00Z\n"
            f"{d},SUPB,supplier,2024-06-01T00:00:00Z,\n"
        )
    )
    files["in place"] = HEADER + lines(
        lambda d: (
            f"{d},SUPB,supplier,2024-01-01T00:00:00Z,2024-06-01T00:00:00Z\n"
            f"{d},SUPA,supplier,2024-06-01T00:00:00Z,\n"
        )
    )
    files["next supplier"] = HEADER + lines(
        lambda d: (
            f"{d},SUPB,supplier,2024-06-01T00:00:00Z,2025-01-01T00:00:00Z\n"
            f"{d},SUPC,supplier,2025-01-01T00:00:00Z,\n"
        )
    )
    files["new first"] = HEADER + lines(
        lambda d: (
            f"{d},SUPB,supplier,2024-05-01T00:00:00Z,\n"
            f"{d},SUPA,supplier,2024-01-01T00:00:00Z,2024-05-01T00:00:00Z\n"
        )
    )
    files["old first"] = HEADER + lines(
        lambda d: (
            f"{d},SUPA,supplier,2024-01-01T00:00:00Z,2024-04-01T00:00:00Z\n"
            f"{d},SUPB,supplier,2024-04-01T00:00:00Z,\n"
        )
    )
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.csv"
        paths[name].write_text(text)
    return paths


def gaps(store: Store, url: str) -> int:
    """Devices whose supplier intervals leave a gap between two of them."""
    conn = store.raw(url)
    try:
        found = conn.execute(
            "SELECT count(*) FROM (SELECT valid_to, lead(valid_from) OVER "
            "(PARTITION BY device_id ORDER BY valid_from) AS next_from FROM responsibility "
            "WHERE relation = 'supplier') s WHERE next_from IS NOT NULL AND valid_to <> next_from"
        ).fetchone()[0]
    finally:
        conn.close()
    return int(found)


def loaded_base(store: Store, paths: dict[str, Path]) -> str:
    """A fresh store with the users, devices and registry files loaded: each case's start."""
    base = store.fresh("base")
    for what, name in (
        ("users", "users"),
        ("devices", "devices"),
        ("responsibilities", "registry"),
    ):
        timed_command([BIN, "--db", base, "load", what, str(paths[name])])
    return base


def measure(store: Store, paths: dict[str, Path], devices: int) -> dict:
    base = loaded_base(store, paths)
    results = {}
    for name in ("in place", "next supplier", "new first", "old first"):
        url = copy_of(store, base, name)
        wall, cpu, peak_mb, said, _, _ = timed_command(
            [BIN, "--db", url, "load", "responsibilities", str(paths[name])]
        )
        results[name] = {
            "seconds": round(wall, 2),
            "rows_per_s": round(2 * devices / wall),
            "cpu_s": round(cpu, 2),
            "peak_mb": peak_mb,
            "gaps": gaps(store, url),
            "said": said.splitlines()[0],
        }
        print(store.kind, name, json.dumps(results[name]), flush=True)
    return results


def copy_of(store: Store, base: str, name: str) -> str:
    if store.kind == "sqlite":
        source = sqlite3.connect(base.removeprefix("sqlite:///"))
        url = store.fresh(name.replace(" ", "_"))
        target = sqlite3.connect(url.removeprefix("sqlite:///"))
        source.backup(target)
        source.close(), target.close()
        return url
    assert store.pg is not None
    template = base.rsplit("/", 1)[1]
    store.pg.admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{template}'"
    )
    return store.pg.new_database(template=template)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    report = {"devices": args.devices}
    with tempfile.TemporaryDirectory() as work, stores(args.engines, "waiting-") as made:
        paths = write_inputs(Path(work), args.devices)
        for store in made:
            report[store.kind] = measure(store, paths, args.devices)
    OUT.mkdir(exist_ok=True)
    (OUT / f"waiting_lines-{args.devices}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
