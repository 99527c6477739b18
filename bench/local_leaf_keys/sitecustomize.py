"""A prototype of issue 14's cheaper leaf row on PostgreSQL (session 55), for
bench/ingest_ab.py's A/B only: log_leaf's keys through the parent, (family, month,
leaf_index) and (family, entry_id), are replaced by each partition's own, (leaf_index) and
(entry_id) (family and month are one value a partition). Put this folder, with a link to
the code under test beside it, as a --code arm:

    mkdir /tmp/local && cp bench/local_leaf_keys/sitecustomize.py /tmp/local/
    ln -s $PWD/src/servicetrail /tmp/local/
    .venv/bin/python bench/ingest_ab.py --engines postgresql --arms shipped,without_logs \
        --code local_keys=/tmp/local

The store is converted after each migration run (the registry's load builds it); a month's
partition made later gets its keys before it is attached, so nothing locks the parent
while an ingest holds it. The seal finds the logs from the catalog: its seek on the parent's
(family, month) order has no index to use here. The product has no such switch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

import servicetrail.store.log_partitions as log_partitions
import servicetrail.store.merkle_log as merkle_log
import servicetrail.store.migrate as migrate
import servicetrail.store.partitions as partitions
from servicetrail.store.log_partitions import existing_log_months, partition_name

FAMILIES = ("access", "sat")


def _keys(conn: Any, name: str) -> None:
    conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pk PRIMARY KEY (leaf_index)"))
    conn.execute(text(f"CREATE INDEX {name}_entry ON {name} (entry_id)"))


def _localise(conn: Any) -> None:
    if conn.execute(text("SELECT 1 FROM pg_constraint WHERE conname = 'pk_log_leaf'")).first():
        conn.execute(text("ALTER TABLE log_leaf DROP CONSTRAINT pk_log_leaf"))
        conn.execute(text("DROP INDEX IF EXISTS ix_log_leaf_family_entry_id"))
    for family in FAMILIES:
        for month in existing_log_months(conn, family):
            name = partition_name("log_leaf", family, month)
            if not conn.execute(text(f"SELECT to_regclass('{name}_pk')")).scalar():
                _keys(conn, name)


def attach(conn: Any, family: str, months: set[str]) -> None:
    """log_partitions.attach_log_months, the leaves' keys made on the empty table first."""
    if not months or not log_partitions.logs_partitioned(conn):
        return
    for month in sorted(months - existing_log_months(conn, family)):
        for table in log_partitions.TABLES:
            name = partition_name(table, family, month)
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING ALL "
                    "EXCLUDING INDEXES) WITH (autovacuum_analyze_scale_factor = 0, "
                    f"autovacuum_analyze_threshold = {log_partitions.STATISTICS[table]})"
                )
            )
            if table == "log_leaf":
                _keys(conn, name)
            conn.execute(
                text(
                    f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES "
                    f"{log_partitions.bounds(family, month)}"
                )
            )


def migrated(engine: Any, *args: Any, **kwargs: Any) -> None:
    _migrated(engine, *args, **kwargs)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            _localise(conn)


def grown(conn: Any) -> dict[tuple[str, str], int]:
    if conn.dialect.name != "postgresql":
        return _grown(conn)
    logs: dict[tuple[str, str], int] = {}
    for family in FAMILIES:
        for month in sorted(existing_log_months(conn, family)):
            size = merkle_log._size(conn, family, month)
            last = merkle_log.latest_checkpoint(conn, family, month)
            if size and (last is None or last.size < size):
                logs[(family, month)] = size
    return logs


_migrated, _grown = migrate._migrated, merkle_log._grown_logs
migrate._migrated = migrated
partitions.attach_log_months = attach
merkle_log._grown_logs = grown
