"""`log verify`'s audit cut into tasks for worker processes (store.log_audit), on both
engines: the workers find what one process finds, in the same order, and every kind of
tampering still names its record."""

from __future__ import annotations

from sqlalchemy import text

from servicetrail.store.log_audit import audit
from servicetrail.store.merkle_log import seal_store
from tests import personas as P
from tests.intruder import intrude
from tests.store.log_fixtures import append, records

PREFIX = "servicetrail/sat"


@P.starts_with_personas
def test_worker_processes_find_each_change_removal_and_addition_as_one_process_does(engine):
    world = P.load_personas(engine)
    seal_store(engine)
    append(engine, records(40))  # past the checkpoint: queued or appended, not yet sealed
    with engine.connect() as conn:
        unsealed = conn.execute(text("SELECT max(id) FROM sat_record")).scalar()
    changed, payload_changed, removed = (
        world.ids["sx_req"],
        world.ids["se_req"],
        world.ids["np_device_alert"],
    )
    intrude(
        engine,
        ("UPDATE sat_record SET srv = '11.2' WHERE id IN (:a, :b)", {"a": changed, "b": unsealed}),
        (
            "UPDATE sat_payload SET payload = 'forged' WHERE record_id = :id",
            {"id": payload_changed},
        ),
        ("DELETE FROM sat_payload WHERE record_id = :id", {"id": removed}),
        ("DELETE FROM sat_record WHERE id = :id", {"id": removed}),
    )
    alone = audit(engine, PREFIX, workers=1)
    shared = audit(engine, PREFIX, workers=2)
    assert shared.findings == alone.findings
    assert shared.entries == alone.entries == len(world.ids) + 40 - 1
    assert sorted(alone.findings) == sorted(
        [
            f"record {changed} changed",
            f"record {payload_changed} changed",
            f"record {unsealed} changed",
            f"record {removed} removed",
        ]
    )


@P.starts_with_personas
def test_an_untouched_store_has_no_findings_however_many_workers(engine):
    P.load_personas(engine)
    append(engine, records(300))
    seal_store(engine)
    append(engine, records(37, first=300))
    for workers in (1, 2):
        result = audit(engine, PREFIX, workers=workers)
        assert result.findings == [] and result.checkpoints >= 2


@P.starts_with_personas
def test_the_audit_reads_through_a_small_page_cache_and_gives_the_searches_theirs_back(
    sqlite_url,
):
    """A pass reads each page once: through the searches' 64 MB page cache, two connections a
    process kept what they read, and `log verify` of 1M records held 490 MB (audit 24c)."""
    from sqlalchemy import event

    from servicetrail.store.engine import open_store

    engine = open_store(sqlite_url)
    P.load_personas(engine)
    append(engine, records(50))
    seal_store(engine)
    caches: list[int] = []

    def cache_while_reading(conn, cursor, statement, *_):
        if "FROM sat_record r LEFT JOIN" in statement or "SELECT entry_id, leaf_hash" in statement:
            caches.append(
                conn.connection.dbapi_connection.execute("PRAGMA cache_size").fetchone()[0]
            )

    event.listen(engine, "after_cursor_execute", cache_while_reading)
    assert audit(engine, PREFIX, workers=1).findings == []
    event.remove(engine, "after_cursor_execute", cache_while_reading)
    assert len(caches) >= 2 and all(-8192 <= kib < 0 for kib in caches), caches
    with engine.connect() as conn:  # the pool's connection is as the searches want it
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -65536
    engine.dispose()
