#!/usr/bin/env python3
"""Where the test suite's time goes: a pytest plugin that notes each test's start, end and CPU
(its worker's, and that of the processes the test started and waited for), and a summary of
what it noted. PostgreSQL's server and Chromium are not children the tests wait for, so their
CPU is not in it.

    rm -rf /tmp/suite-time
    SUITE_TIME=/tmp/suite-time PYTHONPATH=bench .venv/bin/pytest -n 4 --dist worksteal -p suite_time
    .venv/bin/python bench/suite_time.py /tmp/suite-time
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_notes: Any = None


def _cpu(who: int) -> float:
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    global _notes
    folder = os.environ.get("SUITE_TIME")
    if not folder:
        yield
        return
    if _notes is None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _notes = open(Path(folder) / f"{worker}.jsonl", "a")  # noqa: SIM115 - the run's
    started, own, children = time.time(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    yield
    note = {
        "test": item.nodeid,
        "start": started,
        "end": time.time(),
        "cpu": _cpu(resource.RUSAGE_SELF) - own,
        "children_cpu": _cpu(resource.RUSAGE_CHILDREN) - children,
    }
    _notes.write(json.dumps(note) + "\n")
    _notes.flush()


def summary(folder: Path, most: int = 20) -> None:
    notes = {
        path.stem: [json.loads(line) for line in path.open()]
        for path in sorted(folder.glob("*.jsonl"))
    }
    every = [n for worker in notes.values() for n in worker]
    first, last = min(n["start"] for n in every), max(n["end"] for n in every)
    print(f"{len(every)} tests, {last - first:.0f} s from the first start to the last end")
    for worker, its in notes.items():
        busy = sum(n["end"] - n["start"] for n in its)
        done = max(n["end"] for n in its) - first
        print(f"  {worker}: {len(its)} tests, busy {busy:.0f} s, done at {done:.0f} s")
    own, children = sum(n["cpu"] for n in every), sum(n["children_cpu"] for n in every)
    print(f"CPU: {own:.0f} s in the workers, {children:.0f} s in the processes they waited for")
    by_file: Counter[str] = Counter()
    wall: Counter[str] = Counter()
    for n in every:
        module = n["test"].split("::")[0]
        by_file[module] += n["cpu"] + n["children_cpu"]
        wall[module] += n["end"] - n["start"]
    print(f"the {most} modules that take the most CPU (CPU s, wall s):")
    for module, cpu in by_file.most_common(most):
        print(f"  {cpu:6.1f} {wall[module]:6.1f}  {module}")


if __name__ == "__main__":
    summary(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/suite-time"))
