"""The logs' own statements on PostgreSQL read a few pages whatever the planner's statistics
say. Statistics lag behind an append-only table: a month's leaves are newer than the last
ANALYZE until autovacuum's next one, which by default waits for a tenth of the table to change
(at the DCC's rate, weeks of leaves). A statement planned on such statistics must still not
read the month's leaves one by one: the ingest asks for a log's size and tiles every batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from servicetrail.store.merkle_log import add_leaves
from tests.store.log_fixtures import leaves, logs_made, records_in

STALE_MONTH, NEW_MONTH = "2025-01", "2025-02"
NEW_LEAVES = 20_000


def sent_by_next_batch(engine: Engine) -> list[tuple[str, Any]]:
    """The statements the next batch of the new month's leaves sends, as sent."""
    sent: list[tuple[str, Any]] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with engine.begin() as conn:
            add_leaves(conn, "sat", leaves(2_000 + NEW_LEAVES, 16, NEW_MONTH))
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return sent


def pages_read(engine: Engine, statement: str, parameters: Any) -> int:
    """The buffers PostgreSQL touched to run `statement`, by its own EXPLAIN ANALYZE."""
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        plan = raw.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        top = plan.fetchone()[0]
        top = json.loads(top) if isinstance(top, str) else top
        node = top[0]["Plan"]
        conn.rollback()
    return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"])


def test_a_new_months_size_and_tiles_cost_a_few_pages_on_stale_statistics(pg_engine):
    logs_made(pg_engine, "sat", STALE_MONTH, NEW_MONTH)
    with pg_engine.begin() as conn:
        add_leaves(conn, "sat", leaves(1, 2_000, STALE_MONTH))
    with pg_engine.begin() as conn:
        conn.execute(text("ANALYZE log_leaf"))
        conn.execute(text("ANALYZE log_node"))
    # the new month, unseen by those statistics
    with pg_engine.begin() as conn:
        add_leaves(conn, "sat", leaves(2_001, NEW_LEAVES - 1, NEW_MONTH))
    asked = [
        (statement, parameters)
        for statement, parameters in sent_by_next_batch(pg_engine)
        if "FROM log_leaf" in statement or "FROM log_node" in statement
    ]
    assert any("log_leaf" in s for s, _ in asked) and any("log_node" in s for s, _ in asked)
    for statement, parameters in asked:
        # a read of the month's 20,000 leaves (or 1,250 tiles) one by one is hundreds of pages
        assert pages_read(pg_engine, statement, parameters) < 20, statement


def test_the_logs_tables_get_fresh_statistics_every_few_thousand_rows(pg_engine):
    """The rest of the lag, which no statement's form avoids: with statistics from before a
    family's first leaves, a read by (family, month, leaf_index) was planned on the (family,
    entry_id) index and filtered the whole family (60 ms a statement at 360,000 access-log
    entries on the 10M store). Autovacuum analyzes the logs' tables after a bounded number of
    rows, not after a tenth of the table, so such a plan reads at most about that many."""
    logs_made(pg_engine, "sat", STALE_MONTH)
    with pg_engine.connect() as conn:
        # a partitioned table takes no such settings: each log's partition has them (0029)
        options = dict(
            conn.execute(
                text("SELECT relname, reloptions FROM pg_class WHERE relname IN (:a, :b)"),
                {"a": "log_leaf_sat_p2025_01", "b": "log_node_sat_p2025_01"},
            ).all()
        )
    assert "autovacuum_analyze_scale_factor=0" in options["log_leaf_sat_p2025_01"]
    assert "autovacuum_analyze_threshold=50000" in options["log_leaf_sat_p2025_01"]
    assert "autovacuum_analyze_threshold=5000" in options["log_node_sat_p2025_01"]


def test_a_record_proofs_read_of_its_leaf_plans_one_months_partition(pg_engine):
    """The leaves are a partition a log (0029), found by entry id through each one's index:
    the proof's read names the record's month, so one partition is asked, not every month's
    kept (a year's: twelve index probes for one)."""
    from servicetrail.store.log_records import _SEALED_LEAF_IN_MONTH

    from servicetrail.store.partitions import ensure_months

    at = datetime(2025, 2, 3, 4, 5, 6, tzinfo=UTC)
    ensure_months(pg_engine, [at.replace(month=month) for month in (1, 2, 3)])
    with pg_engine.connect() as conn:
        plan = conn.connection.driver_connection.execute(
            "EXPLAIN " + _SEALED_LEAF_IN_MONTH,
            (1, at, "2025-02")[: _SEALED_LEAF_IN_MONTH.count("%s")],
        ).fetchall()
    scanned = [line for (line,) in plan if "log_leaf_sat_p" in line]
    assert len(scanned) == 1 and "log_leaf_sat_p2025_02" in scanned[0], plan


def test_log_verifys_read_of_the_records_probes_each_ones_leaf(pg_engine):
    """The leaves' partitions (0029) have no statistics until 50,000 rows: planned as nearly
    empty, they were read whole and filtered again for every record, and `log verify` of
    20,000 records took 22 s instead of 0.6. Each record's leaf is an index probe."""
    from servicetrail.store.log_records import _POSTGRES_LEAVES, probes_each
    from servicetrail.store.writer import append_records

    # a year's months kept, each with its records and leaves, as an ingest stores them
    months = tuple(f"2024-{month:02d}" for month in range(1, 13))
    with pg_engine.begin() as conn:
        append_records(conn, records_in(months, each=200))
    with pg_engine.begin() as conn:  # the trail's statistics taken, the new leaves' not yet
        conn.execute(text("ANALYZE sat_record, sat_payload"))
    with pg_engine.begin() as conn:
        probes_each(conn)
        plan = conn.connection.driver_connection.execute(
            "EXPLAIN DECLARE leaves NO SCROLL CURSOR FOR " + _POSTGRES_LEAVES, (1, 20_001)
        ).fetchall()
    lines = [line for (line,) in plan]
    assert any("Index Cond" in line and "entry_id = r.id" in line for line in lines), lines


def test_a_seal_reads_each_queued_leaf_a_few_times_on_an_empty_queues_statistics(
    pg_engine, monkeypatch
):
    """The queue fills and empties between autovacuum's visits, so the seal plans on the
    statistics of an empty table. A chunk a statement was then a scan and sort of every
    queued row left, each chunk again, and the unqueue's ids were searched one by one for
    each queued row of the family (a seal of 1M leaves: 5.5 s reading the queue; of 40,000:
    2.6 s unqueueing). The rows the seal's transaction fetched from the queue, by its own
    statistics: a few per leaf, not a chunk's worth per leaf."""
    from servicetrail import signing
    from servicetrail.signing import log_prefix
    from servicetrail.store import merkle_log
    from servicetrail.store.merkle_log import queue_leaves, seal

    monkeypatch.setattr(merkle_log, "_SEAL_CHUNK", 100)
    queued = 2_000
    logs_made(pg_engine, "access", NEW_MONTH)
    with pg_engine.begin() as conn:
        queue_leaves(
            conn,
            "access",
            [(i, NEW_MONTH, i.to_bytes(32, "big"), None) for i in range(1, queued + 1)],
        )
    signer = signing.signer_for(str(pg_engine.url))
    with pg_engine.begin() as conn:
        assert seal(conn, signer, log_prefix())[0].size == queued
        fetched = conn.execute(
            text(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = 'log_pending'"
            )
        ).scalar_one()
    # chunk a statement on those statistics: over 40,000 (each chunk read all rows left)
    assert fetched <= 5 * queued, fetched


def test_a_seal_opens_the_logs_it_seals_alone_and_the_walk_of_them_all_plans_each_once(
    pg_engine,
):
    """A seal (every CLI read's, and the server's) looked at every log first: on a fresh
    connection that opened every month's partition of the leaves, so each CLI read's seal
    grew with the store's age (63j). It looks at the logs appended to (log_unsealed) and the
    queued ones alone now: the relations it locks, each one it opened, are those logs'
    partitions alone, and the checkpoints it signs are those of the logs that grew, at their
    sizes. The walk of every log (log_sizes.all_log_sizes; migration 0031 fills log_unsealed
    by a copy of its SQLite walk) was planned over every partition of the leaves at each step,
    a log being named by a join: each partition is planned once, and the sizes and
    checkpoints read are those stored."""
    from servicetrail import signing
    from servicetrail.signing import log_prefix
    from servicetrail.store.log_partitions import TABLES
    from servicetrail.store.log_sizes import all_log_sizes
    from servicetrail.store.merkle_log import seal

    months = [f"2025-{month:02d}" for month in range(1, 7)]
    logs_made(pg_engine, "sat", *months)
    logs_made(pg_engine, "access", "2025-06")  # a partition with no leaf: no log yet
    with pg_engine.begin() as conn:
        for number, month in enumerate(months[:5]):
            add_leaves(conn, "sat", leaves(100 * number + 1, number + 1, month))
    signer = signing.signer_for(str(pg_engine.url))
    with pg_engine.begin() as conn:
        seal(conn, signer, log_prefix())
    with pg_engine.begin() as conn:  # past the checkpoints, for one log
        add_leaves(conn, "sat", leaves(1_000, 2, months[0]))
    sent: list[tuple[str, Any]] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "log_leaf" in statement:
            sent.append((statement, parameters))

    event.listen(pg_engine, "before_cursor_execute", remember)
    try:
        with pg_engine.connect() as conn:
            found = all_log_sizes(conn)
    finally:
        event.remove(pg_engine, "before_cursor_execute", remember)
    assert found == {
        ("sat", month): (number + 1 + (2 if number == 0 else 0), number + 1)
        for number, month in enumerate(months[:5])
    }
    planned = 0
    with pg_engine.connect() as conn:
        partitions = conn.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'log_leaf'::regclass")
        ).scalar_one()
        for statement, parameters in sent:
            plan = conn.connection.driver_connection.execute("EXPLAIN " + statement, parameters)
            planned += sum(" on log_leaf_" in line for (line,) in plan)
    # the walk planned every partition at each of its steps: 119 scans of these 11
    assert 0 < planned <= partitions, (planned, partitions)
    pg_engine.dispose()  # a fresh connection, as a CLI command's
    with pg_engine.begin() as conn:
        sealed = seal(conn, signer, log_prefix())
        opened = conn.execute(
            text(
                "SELECT c.relname FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'log_%'"
            )
        ).scalars()
        # the look at every log opened each partition of the leaves and tiles: 18 more here
        assert sorted(name for name in opened if "_p2025_" in name) == sorted(
            [f"{table}_sat_p2025_01{index}" for table in TABLES for index in ("", "_pkey")]
            + ["log_leaf_sat_p2025_01_family_entry_id_idx"]
        )
    assert [(s.origin.rsplit("/", 1)[1], s.size) for s in sealed] == [(months[0], 3)]
