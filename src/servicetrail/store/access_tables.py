"""The access log's table (SPEC section 8), in SQLAlchemy Core; migration 0010 builds it.

Registered on `schema.metadata` (schema.py imports this module), so `db check` compares it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
)

from .schema import UtcDateTime, metadata

EntryId = BigInteger().with_variant(Integer, "sqlite")

# One read of SAT records. Append-only (a trigger refuses UPDATE and DELETE); ids increase
# in the order entries are committed on SQLite, and are drawn from a sequence on PostgreSQL.
# `filters` and `device_ids` are JSON text: read whole, never searched.
access_log = Table(
    "access_log",
    metadata,
    Column("id", EntryId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("party_id", String(32), nullable=True),  # NULL: no Party (an auditor, a system)
    Column("actor", String(64), nullable=False),
    Column("interface", String(8), nullable=False),
    Column("action", String(16), nullable=False),
    Column("filters", Text, nullable=False),
    Column("records_returned", BigInteger, nullable=False),
    Column("mp141_records_returned", BigInteger, nullable=False),
    Column("device_ids", Text, nullable=False),
    # a Party's entries by time, newest first (its page of the log); everyone's below
    Index("ix_access_log_party_id", "party_id", "at", "id"),
    sqlite_autoincrement=True,  # an id is never handed out twice, even after the newest goes
)

# Every entry meets it (ids are drawn from 1); only the auditor's statement writes it, so the
# index of everyone's entries by time serves no Party's read: through it, a Party's page over
# a window read and dropped each other Party's entry in it, its time counting their reads
# (audit 50e; migration 0026). A literal 0, not a parameter, which no index predicate matches.
EVERY_PARTYS_ENTRIES = access_log.c.id > literal_column("0")
Index("ix_access_log_at", access_log.c.at, access_log.c.id, sqlite_where=EVERY_PARTYS_ENTRIES)


def on_postgresql(meta: MetaData) -> None:
    """The predicate on PostgreSQL's copy of the table (schema.metadata_for): named here, on
    the table every statement names, it had SQLAlchemy import its PostgreSQL dialect on
    SQLite too (schema._partial). There the table is partitioned by month of `at` and keyed
    by (id, at) (migration 0028, store.access_partitions)."""
    table = meta.tables["access_log"]
    [every] = [ix for ix in table.indexes if ix.name == "ix_access_log_at"]
    every.dialect_kwargs["postgresql_where"] = EVERY_PARTYS_ENTRIES
    table.dialect_kwargs["postgresql_partition_by"] = "RANGE (at)"


__all__ = ["EVERY_PARTYS_ENTRIES", "access_log", "on_postgresql"]
