"""devsupport.cpu_per_test's counters under xdist: each test's CPU (its own and the children
it waited for) and its worker's throwaway PostgreSQL servers', one JSON Lines file a worker in
$CPU_XDIST_DIR. `CPU_XDIST_DIR=/tmp/cpu-run PYTHONPATH=. pytest -n 2 -p devsupport.cpu_xdist`;
then sum or rank the lines. cpu_per_test alone says its figures at the session's end, which
an xdist worker's never reaches the terminal (helper 68e, session 68). Measurement only: the
suite never loads it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import IO

import pytest

from devsupport import cpu_per_test as counters

_out: IO[str] | None = None


def _file() -> IO[str]:
    global _out
    if _out is None:
        folder = os.environ["CPU_XDIST_DIR"]
        os.makedirs(folder, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _out = open(os.path.join(folder, f"{worker}.jsonl"), "a")
    return _out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    own, server = counters.own_cpu(), counters.server_cpu()
    yield
    spent = {
        "test": item.nodeid,
        "own": counters.own_cpu() - own,
        "server": counters.server_cpu() - server,
    }
    out = _file()
    out.write(json.dumps(spent) + "\n")
    out.flush()
