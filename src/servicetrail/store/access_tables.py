"""The access log's table (SPEC section 8), in SQLAlchemy Core; migration 0010 builds it.

Registered on `schema.metadata` (schema.py imports this module), so `db check` compares it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

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
    # a Party's entries by time, newest first (its page of the log), and everyone's by time
    Index("ix_access_log_party_id", "party_id", "at", "id"),
    Index("ix_access_log_at", "at", "id"),
    sqlite_autoincrement=True,  # an id is never handed out twice, even after the newest goes
)

__all__ = ["access_log"]
