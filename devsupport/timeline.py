"""Where a parallel run's time goes: each test's start and end on its worker.

As a pytest plugin (`-p devsupport.timeline`, PYTHONPATH holding the checkout, TIMELINE_DIR a
folder) each worker appends "start end test-id" lines to TIMELINE_DIR/<worker>.txt; then
`python -m devsupport.timeline TIMELINE_DIR` tells when each worker ended, the tests running in
the run's last two minutes and the modules by wall time. Run `vmstat -t 5` beside it to see
whether the cores were busy then: a module that mostly waits, left to the end, left them idle
(session 60). Measurement only: the suite never loads it."""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # where the test runs (xdist's controller is told of each test's start and end too)
    started = time.time()
    yield
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    folder = Path(os.environ.get("TIMELINE_DIR", "timeline"))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{worker}.txt", "a") as lines:
        lines.write(f"{started:.3f}\t{time.time():.3f}\t{item.nodeid}\n")


def summary(folder: Path) -> None:
    runs = []
    for file in sorted(folder.glob("*.txt")):
        for line in file.read_text().splitlines():
            start, end, test = line.split("\t")
            runs.append((float(start), float(end), file.stem, test))
    if not runs:
        sys.exit(f"no timeline in {folder}")
    first, last = min(r[0] for r in runs), max(r[1] for r in runs)
    print(f"{len(runs)} tests over {last - first:.0f} s")
    ends: dict[str, float] = collections.defaultdict(float)
    by_module: collections.Counter[str] = collections.Counter()
    for start, end, worker, test in runs:
        ends[worker] = max(ends[worker], end)
        by_module[test.split("::")[0]] += end - start
    for worker, end in sorted(ends.items()):
        print(f"{worker} ended at {end - first:.0f} s")
    print("tests of over 3 s ending in the last 120 s (start, end, seconds, worker):")
    for start, end, worker, test in sorted(runs, key=lambda r: r[1]):
        if end > last - 120 and end - start > 3:
            print(f"{start - first:6.0f} {end - first:6.0f} {end - start:6.1f} {worker} {test}")
    print("modules by wall time:")
    for module, seconds in by_module.most_common(30):
        print(f"{seconds:7.1f} {module}")


if __name__ == "__main__":
    summary(Path(sys.argv[1] if len(sys.argv) > 1 else "timeline"))
