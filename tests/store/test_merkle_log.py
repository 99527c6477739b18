"""The logs in the store (SPEC section 7), on both engines: every record is a leaf of its
month's log, sealing signs checkpoints, and the proofs built from stored leaves and tiles
satisfy the independent verifier (tests/rfc9162.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import func, select

from servicetrail import signing
from servicetrail.signing import log_prefix
from servicetrail.domain import merkle
from servicetrail.store.engine import open_store
from servicetrail.store.log_tables import log_leaf, log_node, log_pending, log_unsealed
from servicetrail.store.log_tree import (
    TILE,
    StoredTree,
    checkpoint_at,
)
from servicetrail.store.merkle_log import add_leaves, seal, seal_store
from tests import rfc9162
from tests.personas import load_personas, starts_with_personas, NORTHPOWER
from tests.store.log_fixtures import append, check_every_leaf, records, verifier_key, logs_made


@starts_with_personas
def test_every_persona_record_is_sealed_into_its_months_log_and_proves(engine):
    world = load_personas(engine)
    sealed = seal_store(engine)
    assert {s.origin for s in sealed} >= {"servicetrail/sat/2025-02", "servicetrail/sat/2025-03"}
    assert sum(s.size for s in sealed) == len(world.ids)
    assert check_every_leaf(engine) == len(world.ids)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_pending)).scalar() == 0
    assert seal_store(engine) == []  # nothing new: no new checkpoint


def test_tiles_across_several_seals_give_the_same_roots_and_proofs(engine):
    sizes = []
    written = 0
    for count in (200, 100, 300, 1):  # February's log crosses 256 and 512 in different seals
        append(engine, records(count, written))
        written += count
        sizes += [s.size for s in seal_store(engine) if s.origin.endswith("2025-02")]
    with engine.connect() as conn:
        leaves = (
            conn.execute(
                select(log_leaf.c.leaf_hash)
                .where(log_leaf.c.month == "2025-02")
                .order_by(log_leaf.c.leaf_index)
            )
            .scalars()
            .all()
        )
        tiles = conn.execute(
            select(log_node.c.level, log_node.c.node_index).where(log_node.c.month == "2025-02")
        ).all()
        expected = [
            (level, i) for level in range(TILE, 12, TILE) for i in range(len(leaves) >> level)
        ]
        assert sorted(tiles) == expected and (8, 1) in tiles
        tree = StoredTree(conn, "sat", "2025-02")
        for size in sizes:
            note = checkpoint_at(conn, "servicetrail/sat/2025-02", size).note
            _, _, root = rfc9162.check_checkpoint(note, verifier_key(engine))
            assert root == merkle.root_of(leaves[:size]) == tree.root(size)
        for old in sizes:
            for new in sizes:
                if old <= new:
                    roots = [tree.root(old), tree.root(new)]
                    proof = StoredTree(conn, "sat", "2025-02").consistency(old, new)
                    assert rfc9162.rfc_consistency_ok(old, new, *roots, proof)
    assert check_every_leaf(engine) == written


def test_leaves_follow_the_order_records_were_stored_in_when_older_ones_wait_in_the_queue(engine):
    """Records stored without leaves and salted later (migration 0009's backfill) wait in the
    queue; records appended after them wait behind them, so the log keeps the stored order."""
    from servicetrail.store.log_records import queue_stored_records
    from servicetrail.store.partitions import ensure_months
    from servicetrail.store.schema import sat_record

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            ensure_months(engine, [r.logged_at for r in records(20)])
        for i, record in enumerate(records(20)):
            conn.execute(
                sat_record.insert().values(
                    id=i + 1,
                    logged_at=record.logged_at,
                    kind=record.kind,
                    request_id=record.request_id,
                    srv=record.srv,
                    user_id=record.user_id,
                    device_id=record.device_id,
                    identity_key="",
                )
            )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval('sat_record_id_seq', 20)")
        queue_stored_records(conn)
    append(engine, records(30, first=20))
    seal_store(engine)
    append(engine, records(5, first=50))  # the queue is empty again
    seal_store(engine)
    with engine.connect() as conn:
        order = conn.execute(
            select(log_leaf.c.month, log_leaf.c.entry_id).order_by(
                log_leaf.c.month, log_leaf.c.leaf_index
            )
        ).all()
    assert [entry for _, entry in order] == sorted(entry for _, entry in order)
    assert len(order) == 55
    assert check_every_leaf(engine) == 55


def stored_tiles(engine, month: str) -> dict[tuple[int, int], bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(log_node.c.level, log_node.c.node_index, log_node.c.hash).where(
                log_node.c.month == month
            )
        ).all()
    return {(level, index): bytes(h) for level, index, h in rows}


def expected_tiles(engine, month: str) -> dict[tuple[int, int], bytes]:
    """Every complete tile of the month's stored leaves, folded here from the leaves."""
    with engine.connect() as conn:
        level_hashes = [
            bytes(h)
            for h in conn.execute(
                select(log_leaf.c.leaf_hash)
                .where(log_leaf.c.month == month)
                .order_by(log_leaf.c.leaf_index)
            ).scalars()
        ]
    tiles = {}
    level = 0
    while len(level_hashes) >= 1 << TILE:
        width = 1 << TILE
        level_hashes = [
            merkle.perfect_from(level_hashes[i * width : (i + 1) * width])
            for i in range(len(level_hashes) // width)
        ]
        level += TILE
        tiles.update({(level, i): h for i, h in enumerate(level_hashes)})
    return tiles


def test_a_batch_stores_the_tiles_its_leaves_complete_before_any_seal(engine):
    for first, count in ((0, 20), (20, 250), (270, 30)):  # February's log passes 256
        append(engine, records(count, first))
        assert stored_tiles(engine, "2025-02") == expected_tiles(engine, "2025-02")
    assert (8, 0) in stored_tiles(engine, "2025-02")
    seal_store(engine)
    assert check_every_leaf(engine) == 300


def test_leaves_an_older_writer_left_without_tiles_are_tiled_by_the_next_batch(engine):
    """A store whose leaves were appended by a version that left the tiling to the seal, and
    not sealed since (its ingest was killed): the next batch tiles them before its own."""
    append(engine, records(100))
    with engine.begin() as conn:  # take the tiles away: what the older writer left
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql("DELETE FROM log_node WHERE month = '2025-02'")
        else:
            conn.exec_driver_sql("DROP TRIGGER log_node_no_delete")
            conn.exec_driver_sql("DELETE FROM log_node WHERE month = '2025-02'")
            conn.exec_driver_sql(
                "CREATE TRIGGER log_node_no_delete BEFORE DELETE ON log_node "
                "BEGIN SELECT RAISE(ABORT, 'log_node is append-only'); END"
            )
    assert stored_tiles(engine, "2025-02") == {}
    append(engine, records(200, 100))
    assert stored_tiles(engine, "2025-02") == expected_tiles(engine, "2025-02")
    seal_store(engine)
    assert check_every_leaf(engine) == 300


def test_a_seal_finds_the_logs_by_seeks_not_by_reading_their_leaves(sqlite_url):
    """Every server worker seals once a minute holding SQLite's write lock: finding which logs
    grew must read a few rows a log. A row-value seek `(family, month) > (?, ?)` stepped
    through every leaf of each month (a second at 10M records; access-log writes waiting
    behind it ran past busy_timeout into a 500). SQLite's VM steps are counted, since
    PostgreSQL planned that seek well."""
    sqlite_engine = open_store(sqlite_url)
    months = ["2025-01", "2025-02", "2025-03"]
    with sqlite_engine.begin() as conn:
        for m, month in enumerate(months):
            rows = [(m * 10_000 + i + 1, month, bytes(32), None) for i in range(10_000)]
            add_leaves(conn, "sat", rows)
    seal_store(sqlite_engine)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with sqlite_engine.begin() as conn:
        driver = conn.connection.driver_connection
        driver.set_progress_handler(count, 100)
        try:
            assert seal(conn, signing.signer_for(str(sqlite_engine.url)), log_prefix()) == []
        finally:
            driver.set_progress_handler(None, 0)
    # 30,000 leaves: stepping through them took 270,000 VM steps, the seeks take hundreds
    assert steps * 100 < 5_000, steps


@contextmanager
def driver_statements(conn) -> Iterator[list[str]]:
    """Every statement the driver under `conn` is handed in the block, SQLAlchemy's and the
    store's own alike: SQLite's trace callback; psycopg's cursors' execute, executemany and
    COPY (a pipeline's statements too)."""
    sent: list[str] = []
    driver = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        driver.set_trace_callback(sent.append)
        try:
            yield sent
        finally:
            driver.set_trace_callback(None)
        return

    def counting(run):  # noqa: ANN001, ANN202
        def counted(self, query, *args, **kwargs):  # noqa: ANN001, ANN202
            sent.append(str(query))
            return run(self, query, *args, **kwargs)

        return counted

    with pytest.MonkeyPatch.context() as patch:
        for cls, names in (
            (psycopg.Cursor, ("execute", "executemany", "copy")),
            (psycopg.ServerCursor, ("execute",)),
        ):
            for name in names:
                patch.setattr(cls, name, counting(getattr(cls, name)))
        yield sent


def test_a_reads_seal_reads_each_log_once(engine):
    """A read's seal of its one access-log entry, on a store with months of record logs: it
    read each log's size, newest checkpoint and successor by three statements, then the
    sealed log's size and checkpoint again (56 statements on SQLite for a year's logs;
    session 62); then one statement a log. It looks at the queued log and those listed in
    log_unsealed alone now, whatever the store's months: a listed log its checkpoint covers
    already (as a row left would be) is unlisted, and signs no checkpoint again."""
    from servicetrail.domain.access_log import Reader, Tally
    from servicetrail.store.access_log import append_entry

    months = [f"2025-{m:02d}" for m in range(1, 7)]
    logs_made(engine, "sat", *months)
    with engine.begin() as conn:
        add_leaves(conn, "sat", [(i + 1, month, bytes(32), None) for i, month in enumerate(months)])
    seal_store(engine)
    with engine.connect() as conn:
        append_entry(conn, Reader(NORTHPOWER, "np.analyst", "api"), "search", {}, Tally())
    with engine.begin() as conn:
        conn.execute(log_unsealed.insert().values(family="sat", month=months[0]))
    with engine.begin() as conn, driver_statements(conn) as sent:
        sealed = seal(conn, signing.signer_for(str(engine.url)), log_prefix())
    assert [(s.origin.split("/")[-2], s.size) for s in sealed] == [("access", 1)]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_unsealed)).scalar() == 0
    # 33 on SQLite and 34 on PostgreSQL before, 20 and 22 after session 62; 15 and 17 now,
    # 3 of them the listed log's: a ceiling with a little room
    assert len(sent) <= 18, "\n".join(sent)
