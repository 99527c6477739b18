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


def test_the_last_seal_that_fails_says_which_seal_takes_its_entries(monkeypatch, caplog):
    """A server stopped on a full disk (or with PostgreSQL gone) said "sealing waits for the
    next round", and it had none (audit 54g): its entries wait for another process's seal."""
    import sqlite3

    from servicetrail.store import sealing

    def full(_engine) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sealing, "seal_store", full)
    with caplog.at_level("WARNING", logger="servicetrail.logs"):
        asyncio.run(seal_now(None, last=True))  # type: ignore[arg-type]
    [said] = caplog.messages
    assert "next round" not in said and "the store's disk is full" in said
    assert "for the next seal: a server's or `deliver`'s within a minute of its start" in said
