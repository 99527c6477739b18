"""Pass 2 of `log verify` (store.log_roots) on logs left without leaves, on PostgreSQL, where
retention drops months: a month gone as retention drops one passes as retired only under a
retirement the store's key signed (a month dropped by hand, the current month, an intruder's
wipe of every old one are named), and a retired month's checkpoints deleted, or the month
brought back and added to, are named by its signed retirement.

The trail and the retention they start from are tests/store/retired_trail.py's."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text

from servicetrail.store.log_audit import audit
from servicetrail.store.log_partitions import drop_log_month
from servicetrail.store.log_tables import log_checkpoint, log_leaf, log_pending
from servicetrail.store.log_tree import latest_checkpoints
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.partitions import drop_older_than, existing_months
from servicetrail.store.writer import append_records
from tests.personas import load_personas, starts_with_personas
from tests.store.log_fixtures import records_in, store_key
from tests.store.retired_trail import (
    OLD_MONTHS,
    kept_of,
    sealed_trail,
    unsigned,
    wiped_as_retention_wipes,
)
from tests.intruder import intrude


@starts_with_personas
def test_a_month_dropped_by_hand_between_kept_ones_is_not_taken_for_retention(pg_engine):
    """An intruder with the owner's rights can do what retention does, for any month: drop
    the month's partitions, its logs' too. Retention drops every
    month before a cutoff, so a month gone while an older one stays was not its doing; it
    passed `log verify` as retired, even against the checkpoints an auditor kept (audit 20a)."""
    load_personas(pg_engine)
    seal_store(pg_engine)
    with pg_engine.connect() as conn:
        months = sorted(conn.execute(select(log_leaf.c.month).distinct()).scalars())
    assert len(months) >= 2
    newest = months[-1]
    with pg_engine.begin() as conn:
        drop_log_month(conn, "sat", newest)
        conn.execute(log_pending.delete().where(log_pending.c.month == newest))
        suffix = newest.replace("-", "_")
        for table in ("sat_record", "sat_payload", "sat_visibility"):
            conn.execute(text(f"DROP TABLE {table}_p{suffix}"))
    findings = audit(pg_engine, "servicetrail/sat").findings
    assert any(f"servicetrail/sat/{newest} has no leaves, but checkpoints" in f for f in findings)
    # retention itself, dropping every month before a cutoff, passes, and the month dropped
    # by hand is still named: retention signed no retirement of it (it passed: audit 46d)
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
    [finding] = audit(pg_engine, "servicetrail/sat").findings
    assert finding.startswith(f"log servicetrail/sat/{newest} has no leaves, but checkpoints")
    assert finding.endswith(", and no signed retirement")


def test_the_current_month_dropped_whole_is_never_taken_for_retention(pg_engine):
    """Retention drops only months before the current one. An intruder who dropped every
    month's partitions and leaves, the current month's too, and left the checkpoints, made
    each month look retired: `log verify` said nothing, even against kept checkpoints, for a
    trail wiped whole (audit 46d)."""
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    batch = records_in((month,))
    with pg_engine.begin() as conn:
        append_records(conn, batch)
    seal_store(pg_engine)
    with pg_engine.begin() as conn:
        drop_log_month(conn, "sat", month)
        conn.execute(log_pending.delete().where(log_pending.c.month == month))
        for year, number in sorted(existing_months(conn)):
            for table in ("sat_record", "sat_payload", "sat_visibility"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}_p{year:04d}_{number:02d}"))
    findings = audit(pg_engine, "servicetrail/sat").findings
    assert f"log servicetrail/sat/{month} has no leaves, but checkpoints up to size 3" in findings


def test_an_intruders_wipe_of_the_months_before_the_current_one_is_named(pg_engine):
    """Audit 46d: leaves, tiles and partitions of every month before the current one dropped,
    checkpoints left, passed `log verify` as retention's, even against kept checkpoints."""
    sealed_trail(pg_engine)
    with pg_engine.connect() as conn:
        kept = [c.note for c in latest_checkpoints(conn)]
    wiped_as_retention_wipes(pg_engine)
    wanted = [unsigned(month) for month in OLD_MONTHS]
    assert audit(pg_engine, "servicetrail/sat").findings == wanted
    found = audit(pg_engine, "servicetrail/sat", kept=kept_of(pg_engine, kept)).findings
    assert found == wanted


def test_checkpoints_deleted_after_retention_are_named_by_its_signed_retirement(pg_engine):
    """Audit 46j: a retired month's checkpoints deleted (triggers out of the way) went unseen
    without --checkpoints, though the signed retirement says the log reached size 3."""

    sealed_trail(pg_engine)
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
    intrude(pg_engine, ("DELETE FROM log_checkpoint WHERE month = '2025-02'", {}))
    assert audit(pg_engine, "servicetrail/sat").findings == [
        "log servicetrail/sat/2025-02 was retired at size 3, but has no checkpoint"
    ]


def test_a_kept_checkpoint_deleted_below_a_retired_months_last_is_named(pg_engine):
    """Audit 46l: a retired month's checkpoint of size 2 deleted, its last (3) and its signed
    retirement left, passed `log verify` even against the kept checkpoint of size 2, which a
    month with leaves has named as deleted."""

    for record in records_in(OLD_MONTHS):  # one seal a record: checkpoints 1, 2, 3
        with pg_engine.begin() as conn:
            append_records(conn, [record])
        seal_store(pg_engine)
    with pg_engine.connect() as conn:
        kept = kept_of(
            pg_engine,
            list(
                conn.execute(
                    select(log_checkpoint.c.note).where(log_checkpoint.c.month == "2025-02")
                ).scalars()
            ),
        )
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
    intrude(pg_engine, ("DELETE FROM log_checkpoint WHERE month = '2025-02' AND tree_size = 2", {}))
    assert audit(pg_engine, "servicetrail/sat", kept=kept).findings == [
        "log servicetrail/sat/2025-02 checkpoint 2, kept, is no longer in the store (deleted)"
    ]


def test_a_retired_month_brought_back_and_added_to_is_named(pg_engine):
    """Audit 46l: the newest retired month's partitions, records and log put back from a
    copy taken before retention, a record added and sealed (checkpoint 4, past the signed
    retirement at 3): `log verify` found nothing."""

    sealed_trail(pg_engine)
    tables = ("sat_record", "sat_payload", "sat_visibility", "log_leaf", "log_node")
    copied = [
        (f"CREATE TABLE copy_{t} AS SELECT * FROM {t} WHERE {w}", {})
        for t, w in zip(
            tables,
            ["logged_at >= '2025-03-01' AND logged_at < '2025-04-01'"] * 3
            + ["month = '2025-03'"] * 2,
            strict=True,
        )
    ]
    intrude(pg_engine, *copied)
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
    intrude(
        pg_engine,
        *(
            (
                f"CREATE TABLE {t}_p2025_03 PARTITION OF {t} "
                "FOR VALUES FROM ('2025-03-01') TO ('2025-04-01')",
                {},
            )
            for t in tables[:3]
        ),
        *(
            (
                f"CREATE TABLE {t}_sat_p2025_03 PARTITION OF {t} "
                "FOR VALUES FROM ('sat', '2025-03') TO ('sat', '2025-04')",
                {},
            )
            for t in tables[3:]
        ),
        *((f"INSERT INTO {t} SELECT * FROM copy_{t}", {}) for t in tables),
    )
    with pg_engine.begin() as conn:
        append_records(conn, records_in(("2025-03",), each=4)[3:])
    seal_store(pg_engine)
    assert audit(pg_engine, "servicetrail/sat").findings == [
        "log servicetrail/sat/2025-03 was retired at size 3, but has 4 leaves"
    ]
