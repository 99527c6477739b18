"""The walk of every log (store.log_sizes), on both engines: the logs a servicetrail of before
migration 0031 appended to without listing them are listed for the next seal, which signs
them; and the rows of log_unsealed that name a log no longer there (retired, or never made)
are dropped by the seal, unsigned."""

from __future__ import annotations

from sqlalchemy import delete, func, select, text

from servicetrail import signing
from servicetrail.signing import log_prefix
from servicetrail.store.log_partitions import LOCK_LOGS, drop_log_month
from servicetrail.store.log_retirement import retire_month
from servicetrail.store.log_sizes import list_unlisted_logs
from servicetrail.store.log_tables import log_checkpoint, log_retirement, log_unsealed
from servicetrail.store.log_tree import latest_checkpoint
from servicetrail.store.merkle_log import add_leaves, seal_store
from tests.store.log_fixtures import SEALED_MONTHS, leaves, logs_made, sealed_logs


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
        add_leaves(conn, "sat", leaves(1_000, 2, SEALED_MONTHS[0]))
        conn.execute(delete(log_unsealed))
    assert seal_store(engine) == []  # the gap: no seal looks at it
    assert list_unlisted_logs(engine) == [("sat", SEALED_MONTHS[0])]
    assert list_unlisted_logs(engine) == []  # listed already: said once
    sealed = seal_store(engine)
    assert [(s.origin.split("/")[-1], s.size) for s in sealed] == [(SEALED_MONTHS[0], 5)]
    with engine.connect() as conn:
        assert latest_checkpoint(conn, "sat", SEALED_MONTHS[0]).size == 5
        assert latest_checkpoint(conn, "sat", SEALED_MONTHS[1]).size == 3
    assert listed(engine) == []


def test_a_log_never_sealed_and_unlisted_is_listed_too(engine):
    """Leaves with no checkpoint at all (an older ingest stopped before its first seal)."""
    logs_made(engine, "sat", SEALED_MONTHS[0])
    with engine.begin() as conn:
        add_leaves(conn, "sat", leaves(1, 4, SEALED_MONTHS[0]))
        conn.execute(delete(log_unsealed))
    assert list_unlisted_logs(engine) == [("sat", SEALED_MONTHS[0])]
    assert [s.size for s in seal_store(engine)] == [4]


# Retention is PostgreSQL's alone (retire_month refuses SQLite, which keeps its logs whole):
# a retired log is PostgreSQL's


def retired(engine, month: str) -> None:
    """Retention's retirement of the log, as partitions.drop_older_than makes it: signed,
    its queue and listing removed, its leaves' and tiles' partitions dropped."""
    signer = signing.signer_for(str(engine.url))
    with engine.begin() as conn:
        conn.execute(text(f"LOCK TABLE {LOCK_LOGS} IN ACCESS EXCLUSIVE MODE"))
        retire_month(conn, "sat", month, signer, log_prefix(), False)
        drop_log_month(conn, "sat", month)


def test_retirement_removes_the_logs_row(pg_engine):
    """A log listed (appended to, not sealed since) and then retired: its row goes with it."""
    engine = pg_engine
    sealed_logs(engine)
    with engine.begin() as conn:
        add_leaves(conn, "sat", leaves(1_000, 1, SEALED_MONTHS[0]))
    assert listed(engine) == [("sat", SEALED_MONTHS[0])]
    retired(engine, SEALED_MONTHS[0])
    assert listed(engine) == []
    assert seal_store(engine) == []


def test_a_row_naming_a_retired_log_is_dropped_by_the_seal_unsigned(pg_engine):
    """A row left naming a log retired since (written after its retirement, as a walk that
    read the log before retention dropped it would): the seal reads the log as it is, no
    leaves and its checkpoints kept, signs nothing for it and removes the row; the walk does
    not list it again."""
    engine = pg_engine
    sealed_logs(engine)
    retired(engine, SEALED_MONTHS[0])
    with engine.begin() as conn:
        conn.execute(log_unsealed.insert().values(family="sat", month=SEALED_MONTHS[0]))
        checkpoints = conn.execute(select(func.count()).select_from(log_checkpoint)).scalar()
    assert seal_store(engine) == []
    assert listed(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_checkpoint)).scalar() == (
            checkpoints
        )
        assert conn.execute(select(func.count()).select_from(log_retirement)).scalar() == 1
    assert list_unlisted_logs(engine) == []


def test_a_row_naming_a_log_never_made_is_dropped_by_the_seal_unsigned(engine):
    """A row naming a log with no leaves, no checkpoint and (PostgreSQL) no partition: the
    seal signs no empty tree for it, and removes the row."""
    sealed_logs(engine)
    with engine.begin() as conn:
        conn.execute(log_unsealed.insert().values(family="sat", month="2024-07"))
        conn.execute(log_unsealed.insert().values(family="access", month="2024-07"))
    assert seal_store(engine) == []
    assert listed(engine) == []


def test_a_row_of_a_family_retention_holds_stays_for_the_next_seal(pg_engine):
    """The access log's retention holds its family's lock while it retires months: a seal
    then leaves that family's logs alone (not waited for), its rows with them, and the next
    seal after it reads them as they are then (here: a log that never was, dropped)."""
    engine = pg_engine
    sealed_logs(engine)
    with engine.begin() as conn:
        conn.execute(log_unsealed.insert().values(family="access", month="2024-07"))
    with engine.connect() as retention:
        retention.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(hashtext('servicetrail.logs.' || %s))", ("access",)
        )
        assert seal_store(engine) == []
        assert listed(engine) == [("access", "2024-07")]
        retention.rollback()
    assert seal_store(engine) == []
    assert listed(engine) == []
