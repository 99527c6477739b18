#!/usr/bin/env python3
"""The peak memory of a command and every process it starts (parse workers, `log verify`'s
workers): the sum of their RSS and of their PSS (shared pages counted once), and the
largest one, sampled from /proc every 0.2 s. `/usr/bin/time -v` gives the largest process
only.

    .venv/bin/python bench/peak_memory.py .venv/bin/servicetrail --db sqlite:///s.db log verify
"""

from __future__ import annotations

import subprocess
import sys
import time


def _tree(pid: int) -> list[int]:
    found = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            for child in children.read().split():
                found += _tree(int(child))
    except OSError:
        pass
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    began = time.monotonic()
    child = subprocess.Popen(sys.argv[1:])
    peak_rss = peak_pss = peak_one = 0
    while child.poll() is None:
        sizes = [_memory_kib(pid) for pid in _tree(child.pid)]
        peak_rss = max(peak_rss, sum(rss for rss, _ in sizes))
        peak_pss = max(peak_pss, sum(pss for _, pss in sizes))
        peak_one = max([peak_one] + [rss for rss, _ in sizes])
        time.sleep(0.2)
    print(
        f"exit {child.returncode}, {time.monotonic() - began:.1f} s: peak RSS {peak_rss // 1024} "
        f"MB summed, PSS {peak_pss // 1024} MB, largest process {peak_one // 1024} MB",
        file=sys.stderr,
    )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
