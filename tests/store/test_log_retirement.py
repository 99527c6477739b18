"""Retirements signed after the fact (store.log_retirement): `db upgrade --sign-retirements`
signs only a month that retention dropped before it signed retirements, never one an
intruder's row names that is still whole. Retention's retirement of a month is PostgreSQL's:
a SQLite store's is refused.

The trail and the intruder's wipe are tests/store/retired_trail.py's; `db upgrade`'s own
words about them are tested in test_log_lifecycle."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from servicetrail.signing import log_prefix
from servicetrail.store.engine import open_store
from servicetrail.store.log_audit import audit
from servicetrail.store.log_retirement import retire_month
from servicetrail.store.log_tables import log_leaf, log_retirement
from servicetrail.store.log_tree import latest_checkpoint, latest_checkpoints
from servicetrail.store.partitions import drop_older_than
from tests.store.log_fixtures import SEALED_MONTHS, sealed_logs, store_key, this_month
from tests.store.retired_trail import (
    OLD_MONTHS,
    kept_of,
    sealed_trail,
    unsigned,
    wiped_as_retention_wipes,
)
from tests.intruder import intrude


def test_db_upgrade_signs_no_retirement_of_a_month_retention_has_not_dropped(pg_engine):
    """Audit 46j: a row with no note, which anyone with the database can add, had `db upgrade`
    sign the retirement of a month still whole (the current one too) at its last checkpoint;
    the months wiped later then passed `log verify`, even against kept checkpoints."""
    from servicetrail.store.log_retirement import (
        retirements_unsigned,
        sign_earlier_retirements,
    )

    sealed_trail(pg_engine)
    with pg_engine.connect() as conn:
        kept = [c.note for c in latest_checkpoints(conn)]
    intrude(
        pg_engine,
        *(
            (
                "INSERT INTO log_retirement (origin, family, month, note, created_at) "
                "VALUES ('', 'sat', :m, NULL, now())",
                {"m": month},
            )
            for month in (*OLD_MONTHS, this_month())
        ),
    )
    with pg_engine.begin() as conn:
        assert retirements_unsigned(conn) == []
        assert (
            sign_earlier_retirements(
                conn, store_key(pg_engine), log_prefix(), (*OLD_MONTHS, this_month())
            )
            == []
        )
    wiped_as_retention_wipes(pg_engine)
    wanted = [unsigned(month) for month in OLD_MONTHS]
    assert audit(pg_engine, "servicetrail/sat", kept=kept_of(pg_engine, kept)).findings == wanted


def test_retiring_a_month_of_a_sqlite_store_is_refused_plainly(sqlite_url):
    """Retention is PostgreSQL's (the CLI refuses it on SQLite, which keeps its trail and its
    logs whole). retire_month went on to delete a SQLite month's leaves and tiles, which its
    append-only triggers refuse: it now refuses SQLite itself, signing and removing nothing."""
    engine = open_store(sqlite_url)
    try:
        sealed_logs(engine)
        month = SEALED_MONTHS[0]
        with engine.begin() as conn, pytest.raises(ValueError, match="PostgreSQL's only"):
            retire_month(conn, "sat", month, store_key(engine), log_prefix(), False)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(log_retirement)).scalar() == 0
            leaves = select(func.count()).select_from(log_leaf).where(log_leaf.c.month == month)
            assert conn.execute(leaves).scalar() == 3
            assert latest_checkpoint(conn, "sat", month).size == 3
    finally:
        engine.dispose()


def test_dropping_months_of_a_sqlite_store_is_refused_plainly(sqlite_url):
    """drop_older_than read PostgreSQL's catalogue first and failed on SQLite as "no such
    table: pg_inherits"; the CLI refuses retention on SQLite before, so only a caller of the
    store saw it: now a plain refusal, as retire_month's and the access log's."""
    engine = open_store(sqlite_url)
    try:
        sealed_logs(engine)
        with engine.begin() as conn, pytest.raises(ValueError, match="PostgreSQL's only"):
            drop_older_than(conn, keep_months=0, signer=store_key(engine))
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(log_retirement)).scalar() == 0
    finally:
        engine.dispose()
