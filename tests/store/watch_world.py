"""What the tests of watches and of their webhooks share: a watch made, records stored and
matched, a Party's events read, and work left to run in a thread of its own while the test
holds locks. The `world` they run on is tests/store/conftest.py's."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.domain.watches import watch_spec
from servicetrail.store.watch_events import events_after
from servicetrail.store.watch_matcher import match_new_records
from servicetrail.store.watches import create_watch
from servicetrail.store.writer import append_records
from tests.personas import ESME_1, LK_OU, World, t


def add_watch(world: World, party: str, **fields) -> dict:
    with world.engine.begin() as conn:
        return create_watch(conn, party, watch_spec({"name": "w", **fields}), "whsec_test")


def append(world: World, *records: SatRecord) -> None:
    with world.engine.begin() as conn:
        append_records(conn, list(records))


def match_all(world: World) -> None:
    while True:
        with world.engine.begin() as conn:
            if not match_new_records(conn):
                return


def events(world: World, party: str, watch_id: int, after: int = 0, limit: int = 100):
    with world.engine.connect() as conn:
        return events_after(conn, world.viewer(party), watch_id, after, limit)


def rid(user: str, device: str, n: int) -> str:
    return f"{user}:{device}:{n}"


LATER = t("2025-04-01T10:00:00Z")


def lk_request(n: int, device: str = ESME_1, at=LATER, srv: str = "4.1.1") -> SatRecord:
    return SatRecord(
        at + timedelta(seconds=n),
        "request",
        rid(LK_OU, device, n + 100),
        srv,
        LK_OU,
        device,
        "",
        f"<secret body {n}>",
    )


def in_background(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(1.0)
    return thread


def transaction_in_background(
    engine: Engine, work, failures: list[BaseException]
) -> threading.Thread:
    """`work(conn)` in a transaction of its own thread, given a second to get as far as it
    can; what it raises goes to `failures`, the test's to judge."""

    def body() -> None:
        try:
            with engine.begin() as conn:
                work(conn)
        except Exception as e:  # the test's to judge
            failures.append(e)

    return in_background(body)
