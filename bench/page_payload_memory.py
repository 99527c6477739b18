#!/usr/bin/env python3
"""Peak memory of one search page of large own payloads (audit 30a), in this process.

    .venv/bin/python bench/page_payload_memory.py sqlite:////tmp/m.db build
    .venv/bin/python bench/page_payload_memory.py sqlite:////tmp/m.db index    # or: device
    PYTHONPATH=OLD/src .venv/bin/python bench/page_payload_memory.py URL index   # another src/

`build` loads the test personas and 40 of LOOKER's SRV 11.1 requests with 12 MB payloads;
the others read one page (limit 40) of them, device-less or by Device, and print how many
items it held, the process's peak RSS and the page's time.
"""

from __future__ import annotations

import resource
import sys
import time
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

PAYLOAD = 12_000_000


def build(url: str) -> None:
    engine = open_store(url)
    load_personas(engine)
    first = t("2025-05-01T00:00:00Z")
    for batch in range(4):
        with engine.begin() as conn:
            append_records(
                conn,
                [
                    SatRecord(
                        first + timedelta(minutes=10 * batch + n),
                        "request",
                        f"{LK_OU}:{ESME_1}:{9000 + 10 * batch + n}",
                        "11.1",
                        LK_OU,
                        ESME_1,
                        "",
                        (chr(65 + n) + "xyz0123456789" * 900_000)[:PAYLOAD],
                    )
                    for n in range(10)
                ],
            )


def one_page(url: str, by_device: bool) -> None:
    engine = open_store(url)
    with engine.connect() as conn:
        viewer = viewer_for(conn, LOOKER)
    assert viewer is not None
    search = Search(srvs=("11.1",), scope=Scope.OWN, device_id=ESME_1 if by_device else None)
    with engine.connect() as conn:
        started = time.monotonic()
        items, _ = search_page(conn, viewer, search, 40)
        seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"items {len(items)}, peak RSS {peak_mb} MB, {seconds:.2f} s")


if __name__ == "__main__":
    url, mode = sys.argv[1], sys.argv[2]
    if mode == "build":
        build(url)
    else:
        one_page(url, by_device=mode == "device")
