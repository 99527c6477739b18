"""Run a time-sensitive test the way a loaded CI machine breaks it: six xdist workers on two
cores, each a long-lived process whose full garbage collections pause it with the GIL held.
The suite's CI failures of sessions 57-69 were such tests (a 0.1-s wait, a 2-s wall-clock
bound); helper 69b found seven more this way, which no quiet run showed.

    for n in 1 2 3 4 5 6; do python3 -c "while True: pass" & done   # the other workers
    PYTHONPATH=. .venv/bin/pytest -n 0 -p no:randomly -p devsupport.loaded --reps 12 FILE -k NAME
    kill %1 %2 %3 %4 %5 %6

Loaded, it holds LOADED_OBJECTS (600,000) small containers and runs `gc.collect()` from a
thread every 0.2-1.2 s (~0.13 s each on a quiet machine): harsher than CI, on purpose.
`--reps N` runs each selected test N times in this process (pytest-repeat's shape, which the
venv does not carry). Measurement only: the suite never loads it."""

from __future__ import annotations

import gc
import os
import random
import threading
import time

import pytest

_HELD = [{"n": n, "l": [n]} for n in range(int(os.environ.get("LOADED_OBJECTS", "600000")))]


def _pause_now_and_then() -> None:
    while True:
        time.sleep(random.uniform(0.2, 1.2))
        gc.collect()


threading.Thread(target=_pause_now_and_then, daemon=True).start()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reps", type=int, default=1, help="run each selected test N times")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    reps = metafunc.config.getoption("reps")
    if reps > 1:
        metafunc.fixturenames.append("_rep")
        metafunc.parametrize("_rep", range(reps), ids=lambda n: f"rep{n}")
