"""The seal of a long-running process (store.sealing): what it queued is signed every round
and once more as it stops (SPEC section 8: at least once a minute and at shutdown)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from servicetrail import settings
from servicetrail.domain.access_log import Reader, Tally
from servicetrail.store.access_log import append_entry
from servicetrail.store.sealing import seal_every_minute, seal_now
from tests import personas as P


def queued(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM log_pending WHERE family = 'access'")
        ).scalar_one()


def look(engine, n: int = 1) -> None:
    with engine.connect() as conn:
        for i in range(n):
            append_entry(conn, Reader(P.NORTHPOWER, "np", "api"), "search", {"n": str(i)}, Tally())


def test_the_rounds_seal_what_is_queued_without_being_asked(engine):
    async def two_rounds() -> None:
        look(engine, 3)
        sealer = asyncio.create_task(seal_every_minute(engine, seconds=0.05))
        try:
            for _ in range(200):  # up to 10 s on a slow machine
                await asyncio.sleep(0.05)
                if queued(engine) == 0:
                    break
            assert queued(engine) == 0
            look(engine, 2)  # and the next round takes what came since
            for _ in range(200):
                await asyncio.sleep(0.05)
                if queued(engine) == 0:
                    break
            assert queued(engine) == 0
        finally:
            sealer.cancel()

    asyncio.run(two_rounds())


def test_a_seal_that_fails_leaves_the_entries_queued_and_raises_nothing(engine, monkeypatch):
    look(engine, 2)
    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", "/nonexistent/folder/key")
    settings.reload()
    try:
        asyncio.run(seal_now(engine))  # said in the log, for the next round to try again
        assert queued(engine) == 2
    finally:
        monkeypatch.undo()
        settings.reload()
