#!/usr/bin/env python3
"""A correction file of N lines for one Device (a file built to exhaust the loader), beside the
same N lines spread over N Devices (the floor: the same work, no Device with more than two).

    .venv/bin/python bench/one_device.py                          # N = 10,000 and 100,000
    .venv/bin/python bench/one_device.py --lines 20000 --engines sqlite,postgresql

The store holds, for one Device, N supply intervals an hour long (two suppliers in turn), and
for each of N other Devices one such interval. Each case, on a fresh copy of that store, is the
whole `servicetrail load responsibilities` command, in one batch:
- `ends earlier`: each interval's end moved a second earlier (nothing takes the freed second,
  so every line waits for the file's end);
- `filled`: each end moved a second earlier and that second given to a third supplier.
Each: wall seconds, lines/s, CPU seconds, peak memory. A Device's intervals were scanned for
every line (N^2: 20,000 lines of one Device took 40-80 s, audit 40a); bisected now.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, OUT, Store, stores  # noqa: E402
from registry import timed_command  # noqa: E402
from waiting_lines import HEADER, copy_of, device, loaded_base  # noqa: E402

HOUR0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def hour(n: int) -> datetime:
    return HOUR0 + timedelta(hours=n)


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_inputs(folder: Path, lines: int) -> dict[str, Path]:
    """One Device (number 0) with `lines` intervals; Devices 1..lines with one each."""

    def supplier(i: int) -> str:
        return "SUPA" if i % 2 else "SUPB"

    def interval(d: str, party: str, start: datetime, end: datetime) -> str:
        return f"{d},{party},supplier,{text(start)},{text(end)}\n"

    def one(i: int) -> tuple[str, int]:  # the Device and hour of interval i
        return device(0), i

    def spread(i: int) -> tuple[str, int]:
        return device(i + 1), 0

    def held(where) -> str:
        return "".join(
            interval(d, supplier(i), hour(h), hour(h + 1))
            for i in range(lines)
            for d, h in [where(i)]
        )

    def corrections(where, filled: bool) -> str:
        out = []
        for i in range(lines):
            d, start = where(i)
            moved = hour(start + 1) - SECOND
            out.append(interval(d, supplier(i), hour(start), moved))
            if filled:
                out.append(interval(d, "SUPC", moved, hour(start + 1)))
        return "".join(out)

    files = {
        "users": "user_id,party_id,party_name,role\n"
        "90-B3-D5-1F-30-01-00-01,SUPA,Supplier A,IS\n90-B3-D5-1F-30-01-00-02,SUPB,Supplier B,IS\n"
        "90-B3-D5-1F-30-01-00-03,SUPC,Supplier C,IS\n",
        "devices": "device_id,device_type,smets\n"
        + "".join(f"{device(i)},ESME,2\n" for i in range(lines + 1)),
        "registry": HEADER + held(one) + held(spread),
        "spread, ends earlier": HEADER + corrections(spread, filled=False),
        "one Device, ends earlier": HEADER + corrections(one, filled=False),
        "spread, filled": HEADER + corrections(spread, filled=True),
        "one Device, filled": HEADER + corrections(one, filled=True),
    }
    paths = {}
    for name, body in files.items():
        paths[name] = folder / (name.replace(" ", "_").replace(",", "") + ".csv")
        paths[name].write_text(body)
    return paths


def measure(store: Store, paths: dict[str, Path], lines: int) -> dict:
    base = loaded_base(store, paths)
    results = {}
    for name in (
        "spread, ends earlier",
        "one Device, ends earlier",
        "spread, filled",
        "one Device, filled",
    ):
        url = copy_of(store, base, name.replace(",", ""))
        wall, cpu, peak_mb, said, _, _ = timed_command(
            [BIN, "--db", url, "load", "responsibilities", str(paths[name])]
        )
        given = lines * (2 if "filled" in name else 1)
        results[name] = {
            "lines": given,
            "seconds": round(wall, 2),
            "lines_per_s": round(given / wall),
            "cpu_s": round(cpu, 2),
            "peak_mb": peak_mb,
            "said": said.splitlines()[0],
        }
        print(store.kind, lines, name, json.dumps(results[name]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", default="10000,100000")
    parser.add_argument("--engines", default="sqlite")
    args = parser.parse_args()
    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    # one batch: the file's lines judged together, the Device's group whole
    os.environ["SERVICETRAIL_REGISTRY_BATCH"] = str(10**7)
    report = {}
    for lines in map(int, args.lines.split(",")):
        with tempfile.TemporaryDirectory() as work, stores(args.engines, "one-device-") as made:
            paths = write_inputs(Path(work), lines)
            report[lines] = {store.kind: measure(store, paths, lines) for store in made}
    OUT.mkdir(exist_ok=True)
    (OUT / "one_device.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
