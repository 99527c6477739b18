#!/usr/bin/env python3
"""Time and peak memory of search pages of 1,000 own payloads (reviews 30e and 31a), in this
process: ordinary DUIS-sized payloads (7 KB of ASCII) or long ones of 4-byte characters.

    .venv/bin/python bench/large_pages.py sqlite:////tmp/p.db build ascii      # or: emoji
    .venv/bin/python bench/large_pages.py sqlite:////tmp/p.db read
    PYTHONPATH=OLD/src .venv/bin/python bench/large_pages.py URL read          # another src/

`build` loads the test personas and 1,000 of LOOKER's requests to ESME-1; `read` reads one
page of `limit=1000` of them seven times in each form (device-less own traffic through the
index, by Device, by Device and own) and prints the median and fastest time, the items and
the peak of Python's allocations during one page (tracemalloc, a separate read).
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servicetrail.domain.model import SatRecord  # noqa: E402
from servicetrail.domain.search import Search  # noqa: E402
from servicetrail.domain.visibility import Scope  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.queries import search_page, viewer_for  # noqa: E402
from servicetrail.store.writer import append_records  # noqa: E402
from tests.personas import ESME_1, LK_OU, LOOKER, load_personas, t  # noqa: E402

RECORDS = 1000
FORMS = {
    "own, device-less": Search(scope=Scope.OWN),
    "by Device": Search(device_id=ESME_1, srvs=("11.1",)),
    "by Device, own": Search(device_id=ESME_1, scope=Scope.OWN),
}


def payload(n: int, kind: str) -> str:
    if kind == "emoji":  # 280 KB, longer than any head
        return f"{n:04}" + "\N{GRINNING FACE}" * 70_000
    return f"<x n='{n}'>" + "abcdefghij" * 700 + "</x>"  # about 7 KB


def build(url: str, kind: str) -> None:
    engine = open_store(url)
    load_personas(engine)
    sent = t("2025-05-01T00:00:00Z")
    for start in range(0, RECORDS, 100):
        with engine.begin() as conn:
            append_records(
                conn,
                [
                    SatRecord(
                        sent + timedelta(seconds=n),
                        "request",
                        f"{LK_OU}:{ESME_1}:{8000 + n}",
                        "11.1",
                        LK_OU,
                        ESME_1,
                        "",
                        payload(n, kind),
                    )
                    for n in range(start, start + 100)
                ],
            )


def read(url: str) -> None:
    engine = open_store(url)
    with engine.connect() as conn:
        viewer = viewer_for(conn, LOOKER)
    assert viewer is not None
    for name, search in FORMS.items():
        times = []
        for _ in range(7):
            with engine.connect() as conn:
                started = time.perf_counter()
                items, _ = search_page(conn, viewer, search, RECORDS)
                times.append(time.perf_counter() - started)
        with engine.connect() as conn:
            tracemalloc.start()
            search_page(conn, viewer, search, RECORDS)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        print(
            f"{name}: {len(items)} items, median {statistics.median(times) * 1000:.0f} ms, "
            f"fastest {min(times) * 1000:.0f} ms, peak {peak / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    if sys.argv[2] == "build":
        build(sys.argv[1], sys.argv[3])
    else:
        read(sys.argv[1])
