"""The walk of every log (store.log_sizes), on both engines: the logs a servicetrail of before
migration 0031 appended to without listing them are listed for the next seal, which signs
them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from servicetrail.store.log_sizes import list_unlisted_logs
from servicetrail.store.log_tables import log_unsealed
from servicetrail.store.log_tree import latest_checkpoint
from servicetrail.store.merkle_log import add_leaves, seal_store
from servicetrail.store.partitions import ensure_months
from tests.store.test_log_copy import logs_made

MONTHS = ("2025-01", "2025-02")


def leaves(first: int, count: int, month: str) -> list[tuple[int, str, bytes, None]]:
    return [(first + i, month, (first + i).to_bytes(32, "big"), None) for i in range(count)]


def sealed_logs(engine) -> None:
    """Two record logs of three leaves each, sealed; on PostgreSQL with their months'
    partitions of the trail (`db check` names a log whose records' partitions are gone)."""
    if engine.dialect.name == "postgresql":
        ensure_months(engine, [datetime(2025, month, 15, tzinfo=UTC) for month in (1, 2)])
    logs_made(engine, "sat", *MONTHS)
    with engine.begin() as conn:
        for number, month in enumerate(MONTHS):
            add_leaves(conn, "sat", leaves(100 * number + 1, 3, month))
    assert len(seal_store(engine)) == 2


def listed(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(log_unsealed.c.family, log_unsealed.c.month)).tuples())


def test_leaves_appended_unlisted_are_listed_then_signed_by_the_next_seal(engine):
    """A process of before 0031, still running after `db upgrade`, appends as add_leaves
    does less the listing: its log is in no row of log_unsealed when it stops before its
    own seal. No seal looked at that log again until a batch of today appended to it; the
    walk lists it, once, and the seal then signs the leaves."""
    sealed_logs(engine)
    with engine.begin() as conn:  # the state an older process leaves: leaves, no listing
        add_leaves(conn, "sat", leaves(1_000, 2, MONTHS[0]))
        conn.execute(delete(log_unsealed))
    assert seal_store(engine) == []  # the gap: no seal looks at it
    assert list_unlisted_logs(engine) == [("sat", MONTHS[0])]
    assert list_unlisted_logs(engine) == []  # listed already: said once
    sealed = seal_store(engine)
    assert [(s.origin.split("/")[-1], s.size) for s in sealed] == [(MONTHS[0], 5)]
    with engine.connect() as conn:
        assert latest_checkpoint(conn, "sat", MONTHS[0]).size == 5
        assert latest_checkpoint(conn, "sat", MONTHS[1]).size == 3
    assert listed(engine) == []


def test_a_log_never_sealed_and_unlisted_is_listed_too(engine):
    """Leaves with no checkpoint at all (an older ingest stopped before its first seal)."""
    logs_made(engine, "sat", MONTHS[0])
    with engine.begin() as conn:
        add_leaves(conn, "sat", leaves(1, 4, MONTHS[0]))
        conn.execute(delete(log_unsealed))
    assert list_unlisted_logs(engine) == [("sat", MONTHS[0])]
    assert [s.size for s in seal_store(engine)] == [4]
