#!/usr/bin/env python3
"""Would a SQLite layout clustered by device make a device page's payloads cheaper? (issue 12)

    .venv/bin/python bench/cluster_payloads.py --store /path/to/st10m.db

The newest 43 payloads (a device page's average at 10M) of N random devices, read as the
device statement reads them today, one by one by record id from `sat_payload` (a page each
on a large store), against the same payloads from a copy keyed (device_id, logged_at, id)
WITHOUT ROWID, read as one range. The copy is built once in --work (about 3 MB a device at
10M). CPU per device page, both warmed, three rounds. The store is only read.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

PAGE = 43
_SCATTERED = "SELECT payload FROM sat_payload WHERE record_id = ?"
_CLUSTERED = (
    "SELECT payload FROM by_device WHERE device_id = ? "
    f"ORDER BY logged_at DESC, id DESC LIMIT {PAGE}"
)


def build_copy(store: sqlite3.Connection, path: Path, devices: list[str]) -> sqlite3.Connection:
    copy = sqlite3.connect(path)
    copy.execute(
        "CREATE TABLE IF NOT EXISTS by_device (device_id TEXT, logged_at TEXT, id INTEGER, "
        "payload TEXT, PRIMARY KEY (device_id, logged_at, id)) WITHOUT ROWID"
    )
    for device in devices:
        rows = store.execute(
            "SELECT device_id, logged_at, record_id, payload FROM sat_payload WHERE record_id IN "
            "(SELECT id FROM sat_record WHERE device_id = ?)",
            (device,),
        ).fetchall()
        copy.executemany("INSERT OR IGNORE INTO by_device VALUES (?, ?, ?, ?)", rows)
    copy.commit()
    return copy


def cpu_ms_a_page(read: Callable[[str], int], devices: list[str]) -> tuple[float, float]:
    started = time.process_time()
    kilobytes = sum(read(device) for device in devices) / 1024
    return 1000 * (time.process_time() - started) / len(devices), kilobytes / len(devices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="a SQLite store's file")
    parser.add_argument("--work", default="bench/out", help="where the clustered copy goes")
    parser.add_argument("--devices", type=int, default=400)
    args = parser.parse_args()
    store = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    every = [d for (d,) in store.execute("SELECT device_id FROM device ORDER BY device_id")]
    devices = random.Random(7).sample(every, min(args.devices, len(every)))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    copy_path = Path(args.work) / f"cluster_payloads-{len(devices)}.db"
    copy_path.unlink(missing_ok=True)
    copy = build_copy(store, copy_path, devices)
    newest = {
        device: [
            i
            for (i,) in store.execute(
                "SELECT id FROM sat_record WHERE device_id = ? "
                f"ORDER BY logged_at DESC, id DESC LIMIT {PAGE}",
                (device,),
            )
        ]
        for device in devices
    }

    def scattered(device: str) -> int:
        return sum(len(store.execute(_SCATTERED, (i,)).fetchone()[0] or "") for i in newest[device])

    def clustered(device: str) -> int:
        return sum(len(p or "") for (p,) in copy.execute(_CLUSTERED, (device,)))

    for read in (scattered, clustered):
        cpu_ms_a_page(read, devices)  # warm the page cache
    for round_ in range(3):
        for read in (scattered, clustered):
            ms, kb = cpu_ms_a_page(read, devices)
            print(f"round {round_ + 1} {read.__name__}: {ms:.3f} ms CPU a device page, {kb:.0f} KB")
    copy.close()
    copy_path.unlink()


if __name__ == "__main__":
    main()
