"""Retention of the access log (audit 49d): whole months of entries go with their logs'
leaves, each month's checkpoints stay with a signed retirement, and `log verify` still passes,
while an entry or a month deleted by hand is still named."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from servicetrail.store import access_partitions, access_retention
from servicetrail.store import partitions
from servicetrail.store.access_partitions import existing_access_months
from servicetrail.store.access_retention import (
    UnsealedAccessMonths,
    drop_access_months,
    drop_access_older_than,
)
from servicetrail.store.access_tables import access_log
from servicetrail.store.access_writer import ACCESS_FAMILY
from servicetrail.store.log_audit import audit
from servicetrail.store.limits import StoreBusy
from servicetrail.store.log_tables import log_checkpoint, log_leaf, log_retirement
from servicetrail.store.merkle_log import seal_store
from tests.conftest import Cli
from tests.intruder import intrude
from tests.store.log_fixtures import OLD, PREFIX, access_entries, store_key, this_month


def _count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _access_log_of(month: str) -> str:
    return f"{PREFIX}/access/{month}"


def test_retention_drops_old_months_of_the_access_log_and_log_verify_passes(pg_engine, monkeypatch):
    """A month goes as its partition, dropped whole (migration 0028): deleted row by row, a
    month at 700 reads a second took some 5 hours (audit 51e)."""
    access_entries(pg_engine, monkeypatch, (*OLD, this_month()))
    seal_store(pg_engine)
    with pg_engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(access_log.delete())  # no month named: the trigger refuses as before
    with pg_engine.connect() as conn:
        assert set(OLD) <= existing_access_months(conn)
    dropped = drop_access_months(pg_engine, keep_months=1, signer=store_key(pg_engine))
    assert [(d.month, d.entries) for d in dropped] == [(m, 3) for m in OLD]
    with pg_engine.connect() as conn:
        assert not set(OLD) & existing_access_months(conn)
    assert _count(pg_engine, access_log) == 3
    assert _count(pg_engine, log_leaf, log_leaf.c.family == ACCESS_FAMILY) == 3
    assert _count(pg_engine, log_checkpoint, log_checkpoint.c.family == ACCESS_FAMILY) == 3
    with pg_engine.connect() as conn:
        retired = conn.execute(
            select(log_retirement.c.month).where(log_retirement.c.family == ACCESS_FAMILY)
        ).scalars()
        assert sorted(retired) == list(OLD)
    assert audit(pg_engine, PREFIX).findings == []
    with pg_engine.begin() as conn:  # again: nothing left to drop, nothing signed twice
        assert drop_access_older_than(conn, keep_months=1, signer=store_key(pg_engine)) == []
    # an entry deleted by hand after it is still named, not taken for retention's
    with pg_engine.connect() as conn:
        kept = conn.execute(select(func.min(access_log.c.id))).scalar_one()
    intrude(pg_engine, ("DELETE FROM access_log WHERE id = :id", {"id": kept}))
    assert audit(pg_engine, PREFIX).findings == [f"access-entry {kept} removed"]


def test_an_access_month_wiped_by_hand_as_retention_wipes_is_named(engine, monkeypatch):
    """Both engines: an intruder who deletes a month's entries with its leaves and tiles, its
    checkpoints left, passes for retention only with a signed retirement; a month wiped while
    an earlier one still has entries is not even taken for retention's."""
    access_entries(engine, monkeypatch, OLD, each=2)
    seal_store(engine)
    later, earlier = _access_log_of(OLD[1]), _access_log_of(OLD[0])
    _wipe(engine, OLD[1])
    assert audit(engine, PREFIX).findings == [
        f"log {later} has no leaves, but checkpoints up to size 2"
    ]
    _wipe(engine, OLD[0])
    assert audit(engine, PREFIX).findings == [
        f"log {earlier} has no leaves, but checkpoints up to size 2, and no signed retirement",
        f"log {later} has no leaves, but checkpoints up to size 2, and no signed retirement",
    ]


def test_an_access_month_whose_partition_was_dropped_by_hand_is_made_again(pg_engine, monkeypatch):
    """The month's partition dropped by hand, its log kept: taken for retired (checkpoints,
    no partition), no read made it again, and every read's entry failed, each API and web
    read a 500 and each CLI read PostgreSQL's words (61b). A retired log is one with
    checkpoints and no leaves, as for the trail and the seal: the month is made again, reads
    go on, their leaves follow the log's, and `log verify` names each entry that went. Until
    then, `log verify` names the month, as it does a month of the trail's."""
    month = this_month()
    access_entries(pg_engine, monkeypatch, (month,), each=2)
    seal_store(pg_engine)
    with pg_engine.connect() as conn:
        gone = conn.execute(select(access_log.c.id).order_by(access_log.c.id)).scalars().all()
    with pg_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE access_log_p{month[:4]}_{month[5:]}"))
    named = f"log {_access_log_of(month)}: the access log's partition of {month} "
    assert audit(pg_engine, PREFIX).findings[0].startswith(named)
    access_partitions._known.pop(str(pg_engine.url), None)  # a read of another process
    access_entries(pg_engine, monkeypatch, (month,), each=1)
    seal_store(pg_engine)
    assert audit(pg_engine, PREFIX).findings == [f"access-entry {i} removed" for i in gone]


def _wipe(engine, month: str) -> None:
    """The month's entries, leaves, tiles and queue deleted, its checkpoints left."""
    after = f"{month[:5]}{int(month[5:]) + 1:02d}-01T00:00:00Z"  # (months before December)
    intrude(
        engine,
        (
            "DELETE FROM access_log WHERE at >= :start AND at < :after",
            {"start": f"{month}-01T00:00:00Z", "after": after},
        ),
        *(
            (f"DELETE FROM {table} WHERE family = 'access' AND month = :m", {"m": month})
            for table in ("log_leaf", "log_node", "log_pending")
        ),
    )


def test_a_month_with_entries_in_no_signed_checkpoint_is_kept_whole(pg_engine, monkeypatch):
    access_entries(pg_engine, monkeypatch, OLD, each=1)
    with pg_engine.begin() as conn, pytest.raises(UnsealedAccessMonths, match="2025-01"):
        drop_access_older_than(conn, keep_months=1, signer=store_key(pg_engine))
    assert _count(pg_engine, access_log) == 2
    with pg_engine.connect() as conn:  # the dry run lists them, with no size yet
        said = drop_access_older_than(conn, keep_months=1, dry_run=True)
        assert [(d.month, d.entries) for d in said] == [(m, 0) for m in OLD]
        assert conn.execute(text("SELECT count(*) FROM log_retirement")).scalar_one() == 0


def test_retention_waits_for_a_seal_under_way(pg_engine, monkeypatch):
    """A seal under way may be appending to an old month's log what retention would not see:
    its leaves then outlived the month's retirement. Retention waits for it (here, a seal
    holding the lock it appends the family's leaves under, and retention allowed 100 ms
    before it gives up)."""
    from servicetrail.store.merkle_log import lock_family

    access_entries(pg_engine, monkeypatch, OLD, each=1)
    seal_store(pg_engine)
    with pg_engine.connect() as sealing:
        with sealing.begin():
            lock_family(sealing, ACCESS_FAMILY)
            with pg_engine.begin() as conn, pytest.raises(DBAPIError, match="lock timeout"):
                conn.execute(text("SET LOCAL lock_timeout = '100ms'"))
                drop_access_older_than(conn, keep_months=1, signer=store_key(pg_engine))
    assert _count(pg_engine, access_log) == 2


def test_retention_lets_go_of_the_log_while_a_read_holds_it(pg_engine, monkeypatch):
    """Dropping a partition locks the whole log, which every read appends to: retention waits
    a moment for the lock, lets go and tries again, and gives up (nothing dropped) rather
    than queue every read behind a long one (here allowed 0.2 s, 50 ms a try). Each try in
    a savepoint: the leaves deleted before it are not deleted again on the next."""
    monkeypatch.setattr(partitions, "RETENTION_PATIENCE_SECONDS", 0.2)
    monkeypatch.setattr(access_retention, "RETENTION_LOCK_WAIT", "50ms")
    access_entries(pg_engine, monkeypatch, OLD, each=1)
    seal_store(pg_engine)
    with pg_engine.connect() as reading, reading.begin():
        reading.execute(select(func.count()).select_from(access_log))
        with pytest.raises(StoreBusy, match="access log"):
            drop_access_months(pg_engine, keep_months=1, signer=store_key(pg_engine))
    assert _count(pg_engine, access_log) == 2
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM log_retirement")).scalar_one() == 0


def test_seals_go_on_while_retention_retires_access_months(pg_engine, monkeypatch):
    """Retention holds the access family's lock while it waits for the log's (a read in the
    way: a minute at most), and every seal, of every family, waited for it (audit 51e). A
    seal meanwhile leaves the access log's queue for the next one (here, a seal as
    retention asks for the log, allowed a second of lock waits)."""
    access_entries(pg_engine, monkeypatch, OLD, each=1)
    seal_store(pg_engine)
    access_entries(pg_engine, monkeypatch, (this_month(),), each=1)
    sealed = []
    lock_log = access_retention._lock_log

    def sealed_first(conn):
        sealed.append(seal_store(pg_engine, lock_wait=1.0))
        lock_log(conn)

    monkeypatch.setattr(access_retention, "_lock_log", sealed_first)
    drop_access_months(pg_engine, keep_months=1, signer=store_key(pg_engine))
    assert sealed == [[]]
    assert [sealed.origin for sealed in seal_store(pg_engine)] == [_access_log_of(this_month())]


def test_a_try_for_the_log_that_a_read_is_in_the_way_of_retires_no_month_twice(
    pg_engine, monkeypatch
):
    """A try for the log's lock that fails must not retire a month again (here a read holds
    the log for 0.3 s, and retention tries 50 ms at a time)."""
    monkeypatch.setattr(access_retention, "RETENTION_LOCK_WAIT", "50ms")
    retired: list[str] = []
    real = access_retention.retire_month

    def counted(conn, family, month, *rest):
        retired.append(month)
        real(conn, family, month, *rest)

    monkeypatch.setattr(access_retention, "retire_month", counted)
    access_entries(pg_engine, monkeypatch, OLD, each=1)
    seal_store(pg_engine)
    with pg_engine.connect() as reading:
        reading.begin()
        reading.execute(select(func.count()).select_from(access_log))
        threading.Timer(0.3, reading.rollback).start()
        dropped = drop_access_months(pg_engine, keep_months=1, signer=store_key(pg_engine))
    assert [d.month for d in dropped] == retired == list(OLD)


def test_an_access_month_dropped_by_hand_before_its_first_seal_is_named_and_retired_so(
    pg_engine, pg_url, monkeypatch, tmp_path
):
    """Its entries only queued (no seal yet), its partition dropped by hand: `log verify`
    named each entry removed and never the month (62d), where one with leaves is named. Named
    now; retention past it seals and retires its log, and the signed retirement says its
    entries were dropped by hand before, as `log verify` tells ever after."""
    access_entries(pg_engine, monkeypatch, OLD, each=1)
    with pg_engine.begin() as conn:
        conn.execute(text("DROP TABLE access_log_p2025_02"))
    said = f"log {_access_log_of('2025-02')}: the access log's partition of 2025-02 "
    assert audit(pg_engine, PREFIX).findings[0].startswith(said)
    done = Cli(pg_url, tmp_path)("retention", "--keep-months", "1", "--access-log-keep-months", "1")
    assert done.exit_code == 0, done.output
    assert "dropped 2 month(s) of the access log (2 entries)" in done.stderr
    assert (
        "retired the access log of 2025-02, whose partition was dropped by hand before this run"
        in done.stderr
    )
    verified = audit(pg_engine, PREFIX)
    assert verified.findings == [] and verified.notes == [
        f"log {_access_log_of('2025-02')} was retired after its entries had been dropped by "
        "hand: their partition was gone before the retention that retired it ran, which did "
        "not remove them (its signed retirement says so)"
    ]
