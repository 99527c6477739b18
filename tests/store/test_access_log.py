"""The access log's store (SPEC section 8) on both engines: append-only, increasing ids, one
Party's entries apart from another's (by the statement, and on PostgreSQL by row-level
security as well), bounded device lists."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from servicetrail.domain import merkle
from servicetrail.domain.access_log import MAX_DEVICE_IDS, Reader, Tally, leaf_data
from servicetrail.store.access_log import (
    EntryFilter,
    append_entries,
    append_entry,
    entries_after,
    entries_page,
    iter_entries,
)
from servicetrail.store import access_partitions, access_writer
from servicetrail.store.access_partitions import partition_name
from servicetrail.store.read_transaction import read_as
from servicetrail.store.logged_reads import logged_read
from servicetrail.domain.search import Search
from servicetrail.domain.visibility import Viewer
from tests import personas as P

NP = Reader(P.NORTHPOWER, "np.analyst", "api")
WS = Reader(P.WIRESCO, "ws.analyst", "web")


def append(engine, reader: Reader, items=(), action: str = "search"):
    tally = Tally()
    tally.count(items)
    with engine.connect() as conn:
        return append_entry(conn, reader, action, {"asked": "x"}, tally)


def test_entries_are_append_only(engine):
    entry = append(engine, NP)
    for statement in (
        "UPDATE access_log SET records_returned = 0",
        "DELETE FROM access_log",
    ):
        with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with engine.connect() as conn:
        assert [e.records_returned for e in iter_entries(conn, EntryFilter())] == [
            entry.records_returned
        ]


def test_ids_increase_in_the_order_entries_are_written_and_read_back_whole(engine):
    written = [append(engine, NP), append(engine, WS), append(engine, NP)]
    with engine.connect() as conn:
        back = entries_after(conn, 0, 10)
    assert [e.id for e in back] == sorted({e.id for e in back}) and len(back) == 3
    assert [replace(e, id=0) for e in back] == written
    assert len({leaf_data(e) for e in back}) == 3  # the id and the time tell them apart


def test_concurrent_entries_are_each_committed_once(engine):
    """Group commit: many readers at once, each returning only once its entry is stored."""
    readers = [Reader(P.NORTHPOWER, f"reader-{n}", "api") for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda reader: append(engine, reader), readers))
    with engine.connect() as conn:
        back = entries_after(conn, 0, 100)
    assert sorted(e.actor for e in back) == sorted(r.actor for r in readers)


def test_a_party_reads_its_own_entries_and_an_auditor_everyones(engine):
    append(engine, NP)
    append(engine, WS)
    with engine.connect() as conn:
        mine, _ = entries_page(conn, EntryFilter(party_id=P.WIRESCO), 100)
        everyone, _ = entries_page(conn, EntryFilter(), 100)
    assert [e.party_id for e in mine] == [P.WIRESCO]
    assert {e.party_id for e in everyone} == {P.NORTHPOWER, P.WIRESCO}


@P.starts_with_personas
def test_reads_narrowed_to_mp141_titles_an_action_or_an_actor(engine):
    """The Who looked page's questions: which of our reads returned other Users' titles, of
    what kind, and by whom; never widening past the reader's own Party."""
    from servicetrail.store.access_log import readable_page

    P.load_personas(engine)
    titles = [{"access": "mp141", "device_id": P.ESME_1}]
    own = [{"access": "own", "device_id": P.ESME_1}]
    append(engine, NP, titles, action="record")
    append(engine, NP, own, action="record")
    append(engine, replace(NP, actor="np.other"), titles)
    append(engine, Reader(P.WIRESCO, "np.analyst", "api"), titles, action="record")

    def actors(reader_party, **narrower):
        with engine.connect() as conn:
            entries, _ = readable_page(conn, reader_party, EntryFilter(**narrower), 100)
        return sorted((e.party_id, e.actor, e.action, e.mp141_records_returned) for e in entries)

    assert actors(P.NORTHPOWER, only_mp141=True) == [
        (P.NORTHPOWER, "np.analyst", "record", 1),
        (P.NORTHPOWER, "np.other", "search", 1),
    ]
    assert actors(P.NORTHPOWER, action="record", actor="np.analyst") == [
        (P.NORTHPOWER, "np.analyst", "record", 0),
        (P.NORTHPOWER, "np.analyst", "record", 1),
    ]
    assert actors(P.NORTHPOWER, actor="np.other", action="record") == []
    assert [party for party, *_ in actors(None, only_mp141=True, action="record")] == [
        P.NORTHPOWER,
        P.WIRESCO,
    ]


@P.starts_with_personas
def test_what_an_account_may_read_is_decided_in_the_store(engine):
    """One rule for the API and the screen: a Party's account reads its own Party's entries
    whatever Party it asks for; an auditor's every Party's, or the one it asks for, which must
    be a Party of the store."""
    from servicetrail.store.access_log import NoSuchParty, readable_page

    P.load_personas(engine)
    append(engine, NP)
    append(engine, WS)
    with engine.connect() as conn:
        asked_other, _ = readable_page(conn, P.WIRESCO, EntryFilter(P.NORTHPOWER), 100)
        everyone, _ = readable_page(conn, None, EntryFilter(), 100)
        one, _ = readable_page(conn, None, EntryFilter(P.NORTHPOWER), 100)
        with pytest.raises(NoSuchParty):
            readable_page(conn, None, EntryFilter("NOBODY"), 100)
    assert [e.party_id for e in asked_other] == [P.WIRESCO]
    assert {e.party_id for e in everyone} == {P.NORTHPOWER, P.WIRESCO}
    assert [e.party_id for e in one] == [P.NORTHPOWER]


def test_device_ids_are_capped_at_100(engine):
    items = [
        {"id": n, "access": "mp141", "device_id": f"00-DB-00-00-00-00-{n // 256:02X}-{n % 256:02X}"}
        for n in range(MAX_DEVICE_IDS * 2)
    ]
    entry = append(engine, NP, items)
    with engine.connect() as conn:
        (stored,) = entries_after(conn, entry.id - 1, 1)
    assert stored.records_returned == stored.mp141_records_returned == 2 * MAX_DEVICE_IDS
    assert len(stored.device_ids) == MAX_DEVICE_IDS == len(set(stored.device_ids))


@P.starts_with_personas
def test_a_logged_read_writes_its_entry_only_when_it_ends_well(engine):
    viewer = P.load_personas(engine).viewer(P.WIRESCO)
    with engine.connect() as conn:
        with logged_read(conn, viewer, WS, "search", {"device_id": P.ESME_1}) as read:
            items, _ = read.search_page(Search(device_id=P.ESME_1), 100)
        with pytest.raises(RuntimeError):
            with logged_read(conn, viewer, WS, "search", {}) as read:
                read.search_page(Search(device_id=P.ESME_1), 100)
                raise RuntimeError("the answer failed")
        stored = entries_after(conn, 0, 10)
    assert len(stored) == 1
    mp141 = [i for i in items if i["access"] == "mp141"]
    assert (stored[0].records_returned, stored[0].mp141_records_returned) == (
        len(items),
        len(mp141),
    )
    assert list(stored[0].device_ids) == sorted({i["device_id"] for i in mp141})


@P.starts_with_personas
def test_a_logged_reads_entry_is_queued_as_the_leaf_of_the_stored_entry(engine):
    """The leaf queued for sealing is the one `log verify` recomputes from the stored row (on
    PostgreSQL the store hashes it around the id it draws, in the read's own transaction),
    and the same connection serves the next logged read."""
    viewer = P.load_personas(engine).viewer(P.WIRESCO)
    asked = {"device_id": P.ESME_1, "note": 'a "quote", é and \\ "id":1,'}
    with engine.connect() as conn:
        for _ in range(2):
            with logged_read(conn, viewer, WS, "search", asked) as read:
                read.search_page(Search(device_id=P.ESME_1), 100)
        stored = entries_after(conn, 0, 10)
        queued = conn.execute(
            text("SELECT entry_id, leaf_hash FROM log_pending WHERE family = 'access'")
        ).all()
        conn.commit()
    assert read.entry is not None and read.entry.id in (0, stored[-1].id)
    assert sorted((e, bytes(h)) for e, h in queued) == [
        (e.id, merkle.leaf_hash(leaf_data(e))) for e in stored
    ]
    assert stored[0].filters == asked and len(stored) == 2


def test_row_level_security_keeps_a_partys_reader_to_its_entries(pg_engine):
    engine = pg_engine
    append(engine, NP)
    append(engine, WS)
    with engine.connect() as conn:
        with read_as(conn, Viewer(P.WIRESCO, frozenset())):
            seen = conn.execute(text("SELECT party_id FROM access_log")).scalars().all()
    assert seen == [P.WIRESCO]


@P.starts_with_personas
def test_an_entry_the_store_refuses_after_a_read_leaves_its_connection_usable(engine):
    """On PostgreSQL the entry and its COMMIT go in one pipeline: when the entry fails, the
    error is raised, and the pooled connection still serves the next read (a failed COMMIT
    used to leave it in an aborted transaction that the pool did not roll back)."""
    viewer = P.load_personas(engine).viewer(P.WIRESCO)
    refused = Tally(records_returned=None)  # type: ignore[arg-type]  # NOT NULL in the store
    for _ in range(3):  # the pool hands the same connection back each time
        # SQLite's group commit raises the driver's error; PostgreSQL's COMMIT, SQLAlchemy's
        with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
            with engine.connect() as conn:
                with logged_read(conn, viewer, WS, "search", {}) as read:
                    read.search_page(Search(device_id=P.ESME_1), 100)
                    read.tally = refused
    with engine.connect() as conn:
        assert entries_after(conn, 0, 10) == []
        with logged_read(conn, viewer, WS, "search", {}) as read:
            read.search_page(Search(device_id=P.ESME_1), 100)
        assert len(entries_after(conn, 0, 10)) == 1


def _drop_this_months_partition(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {partition_name(datetime.now(UTC).strftime('%Y-%m'))}"))


@P.starts_with_personas
def test_a_month_whose_partition_went_under_a_warm_cache_is_made_again_by_the_next_entry(
    pg_engine,
):
    """A store restored from a backup older than the months a running server knows: the
    next logged read, and the next entry alone, make the month's partition again (once each,
    the months forgotten) and are stored; they failed until a restart."""
    viewer = P.load_personas(pg_engine).viewer(P.WIRESCO)
    for alone in (False, True):
        _drop_this_months_partition(pg_engine)  # the cache is warm: open_store made the months
        if alone:
            append(pg_engine, WS)
        else:
            with pg_engine.connect() as conn:
                with logged_read(conn, viewer, WS, "search", {}) as read:
                    read.search_page(Search(device_id=P.ESME_1), 100)
        with pg_engine.connect() as conn:  # (the first entry went with its partition)
            assert len(entries_after(conn, 0, 10)) == 1


@P.starts_with_personas
def test_entries_in_the_callers_transaction_make_a_month_gone_under_a_warm_cache_next_time(
    pg_engine,
):
    """A webhook lease's entries (`append_entries`): the caller's transaction is aborted, so
    it fails, but its next try is stored, not refused until a restart."""
    P.load_personas(pg_engine)
    _drop_this_months_partition(pg_engine)
    reads = [(NP, "search", {}, Tally())] * 2
    with pytest.raises(psycopg.errors.CheckViolation), pg_engine.begin() as conn:
        append_entries(conn, reads)  # (the driver's error: insert_in_transaction uses it alone)
    with pg_engine.begin() as conn:
        append_entries(conn, reads)
    with pg_engine.connect() as conn:
        assert len(entries_after(conn, 0, 10)) == 2


@P.starts_with_personas
def test_an_entry_is_tried_again_once_and_only_for_want_of_its_partition(pg_engine, monkeypatch):
    """A month that cannot be made again (one retention retired) is not tried for ever, and
    an entry the store refuses for another reason is not tried twice."""
    viewer = P.load_personas(pg_engine).viewer(P.WIRESCO)
    tries = []
    partitioned = access_writer._partitioned
    monkeypatch.setattr(
        access_writer, "_partitioned", lambda *a: [tries.append(1), partitioned(*a)]
    )

    def read(tally: Tally | None = None) -> None:
        with pg_engine.connect() as conn:
            with logged_read(conn, viewer, WS, "search", {}) as read:
                read.search_page(Search(device_id=P.ESME_1), 100)
                read.tally = tally or read.tally

    with pytest.raises(IntegrityError, match="null value"):
        read(Tally(records_returned=None))  # type: ignore[arg-type]  # NOT NULL in the store
    assert len(tries) == 1
    monkeypatch.setattr(access_partitions, "attach_month", lambda *a: None)  # cannot be made
    _drop_this_months_partition(pg_engine)
    with pytest.raises(IntegrityError, match="no partition"):
        read()
    assert len(tries) == 3


@P.starts_with_personas
def test_an_entry_id_drawn_by_a_read_that_failed_serves_its_connections_next_entry(pg_engine):
    """On PostgreSQL a read draws its entry's id in its first round trip (the entry then needs
    no round trip of its own). A read that fails keeps the id on its connection for the next
    entry written there, which may then be committed after a higher id: the seal takes it at
    its turn, and `log verify` still finds nothing wrong."""
    from servicetrail.store.log_audit import audit
    from servicetrail.store.merkle_log import seal_store

    viewer = P.load_personas(pg_engine).viewer(P.WIRESCO)
    with pg_engine.connect() as first, pg_engine.connect() as second:
        with pytest.raises(RuntimeError):
            with logged_read(first, viewer, WS, "search", {}) as read:
                read.search_page(Search(device_id=P.ESME_1), 100)
                raise RuntimeError("the answer failed")
        with logged_read(second, viewer, WS, "search", {"n": "second"}) as read:
            read.search_page(Search(device_id=P.ESME_1), 100)
        assert [s.size for s in seal_store(pg_engine) if "/access/" in s.origin] == [1]
        with logged_read(first, viewer, WS, "search", {"n": "first"}) as read:
            read.search_page(Search(device_id=P.ESME_1), 100)
        stored = {e.filters["n"]: e.id for e in entries_after(first, 0, 10)}
    assert stored["first"] < stored["second"]  # the id drawn before the second read's
    assert [s.size for s in seal_store(pg_engine) if "/access/" in s.origin] == [2]
    assert audit(pg_engine, "servicetrail/access").findings == []


@P.starts_with_personas
def test_an_entry_id_left_unused_goes_with_its_connection_back_to_the_pool(pg_engine):
    """Kept on the pooled connection, an id a failed read drew (or a count that is not
    logged) went to that connection's next entry minutes later, and the ids ran out of time
    order (audit 38a: id 476 between 615 and 617). Dropped at checkin, the entries written
    after a checkin have ids in the order they were written."""
    viewer = P.load_personas(pg_engine).viewer(P.WIRESCO)
    failing, other = pg_engine.connect(), pg_engine.connect()
    with pytest.raises(RuntimeError):
        with logged_read(failing, viewer, WS, "search", {}) as read:
            read.search_page(Search(device_id=P.ESME_1), 100)
            raise RuntimeError("the answer failed")
    failing.close()  # back to the pool, its id unused
    with logged_read(other, viewer, WS, "search", {"n": "1"}) as read:
        read.search_page(Search(device_id=P.ESME_1), 100)
    other.close()
    with pg_engine.connect() as one, pg_engine.connect() as two:  # the failed read's is one
        for n, conn in (("2", one), ("3", two)):
            with logged_read(conn, viewer, WS, "search", {"n": n}) as read:
                read.search_page(Search(device_id=P.ESME_1), 100)
        written = [e.filters["n"] for e in entries_after(one, 0, 10)]
    assert written == ["1", "2", "3"]


# --- found missing by mutation testing (audit 30b) ----------------------------------------


@P.starts_with_personas
def test_a_follower_poll_that_found_nothing_leaves_no_entry_and_one_that_found_some_does(
    engine,
):
    """lr9: `watch events --follow` polls every few seconds; a poll that returned no record
    is left out of the access log (or the log grew by an entry a poll, for nothing), one that
    returned records is logged as any read."""
    viewer = P.load_personas(engine).viewer(P.WIRESCO)
    with engine.connect() as conn:
        with logged_read(conn, viewer, WS, "search", {"device_id": P.UNKNOWN_DEVICE}) as read:
            empty, _ = read.search_page(Search(device_id=P.UNKNOWN_DEVICE), 100)
            read.leave_out_if_empty()
        with logged_read(conn, viewer, WS, "search", {"device_id": P.ESME_1}) as read:
            items, _ = read.search_page(Search(device_id=P.ESME_1), 100)
            read.leave_out_if_empty()
        stored = entries_after(conn, 0, 10)
    assert empty == [] and items
    assert [(e.filters, e.records_returned) for e in stored] == [
        ({"device_id": P.ESME_1}, len(items))
    ]
