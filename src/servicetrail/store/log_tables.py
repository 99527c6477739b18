"""The tables of the verifiable logs (SPEC section 7), in SQLAlchemy Core; migration 0009
builds them.

A log is one (family, month): `sat` (SAT records) or a family registered later (the access
log). Leaves, tiles, checkpoints and verifier keys are append-only like the trail; only
retention removes a month's leaves and tiles (its checkpoints stay). `log_pending` is the
queue of entries written but not yet sealed into a log: a writer adds to it in the same
transaction as the entries, and sealing empties it under a lock, so leaves are appended in
the order entries became visible, whatever the order of concurrent writers' ids.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .schema import UtcDateTime, metadata

EntryId = BigInteger().with_variant(Integer, "sqlite")

# entry_id: the record's (or access-log entry's) id; salt: the record's secret 16 bytes
log_leaf = Table(
    "log_leaf",
    metadata,
    Column("family", String(16), nullable=False),
    Column("month", String(7), nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("entry_id", EntryId, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("salt", LargeBinary(16), nullable=True),
    PrimaryKeyConstraint("family", "month", "leaf_index", name="pk_log_leaf"),
    UniqueConstraint("family", "entry_id", name="uq_log_leaf_family_entry_id"),
    sqlite_with_rowid=False,  # one B-tree fewer to write per leaf
)

# Tiles: the roots of the complete, aligned subtrees of 2**level leaves at levels 4, 8, 12
# ..., so any subtree hash a proof needs folds from at most 15 stored hashes of one level.
log_node = Table(
    "log_node",
    metadata,
    Column("family", String(16), nullable=False),
    Column("month", String(7), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("node_index", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("family", "month", "level", "node_index", name="pk_log_node"),
    sqlite_with_rowid=False,
)

log_pending = Table(
    "log_pending",
    metadata,
    Column("family", String(16), nullable=False),
    Column("entry_id", EntryId, nullable=False),
    Column("month", String(7), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("salt", LargeBinary(16), nullable=True),
    PrimaryKeyConstraint("family", "entry_id", name="pk_log_pending"),
    sqlite_with_rowid=False,
)

# The logs a writer other than the seal appended leaves to (add_leaves: a batch's), which a
# seal checkpoints and then removes from here; the queued logs are log_pending's. The seal
# looks at these logs alone: looking at every log, it opened every month's partitions of
# the leaves on a fresh connection (every CLI read's seal), a cost that grew with the store's
# age (63j). Where to look, never a size: the seal reads each log's size from its leaves,
# under the locks that keep writers out (store.merkle_log). Migration 0031.
log_unsealed = Table(
    "log_unsealed",
    metadata,
    Column("family", String(16), nullable=False),
    Column("month", String(7), nullable=False),
    PrimaryKeyConstraint("family", "month", name="pk_log_unsealed"),
    sqlite_with_rowid=False,
)

log_checkpoint = Table(
    "log_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(200), nullable=False),
    Column("family", String(16), nullable=False),
    Column("month", String(7), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("verifier_key", String(300), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("origin", "tree_size", name="uq_log_checkpoint_origin_tree_size"),
    Index("ix_log_checkpoint_family_month", "family", "month", "tree_size"),
)

log_verifier_key = Table(
    "log_verifier_key",
    metadata,
    Column("verifier_key", String(300), primary_key=True),
    Column("first_used_at", UtcDateTime, nullable=False),
)

# What retention signed as it dropped a month's log (migration 0022): a C2SP signed note of
# the log's last size and root, and since 62d how its records went (by that retention, or
# dropped by hand before it: domain.checkpoint.retirement_body), by the checkpoints' key.
# Partitions gone and checkpoints left are what an intruder leaves too; the note is what
# they cannot make (audit 46d). `note` is NULL only in the rows 0022 wrote for the months
# retention dropped before it: `db upgrade --sign-retirements` signs those the operator names
# (a row of its own).
log_retirement = Table(
    "log_retirement",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(200), nullable=False),
    Column("family", String(16), nullable=False),
    Column("month", String(7), nullable=False),
    Column("note", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_log_retirement_family_month", "family", "month"),
)


def on_postgresql(meta: MetaData) -> None:
    """PostgreSQL's copies of the leaves and tiles (schema.metadata_for): partitioned by log
    (migration 0029, store.log_partitions), where a unique key must hold the partition key,
    so a leaf is found by entry id through a plain index."""
    for name in ("log_leaf", "log_node"):
        meta.tables[name].dialect_kwargs["postgresql_partition_by"] = "RANGE (family, month)"
    leaf = meta.tables["log_leaf"]
    [unique] = [c for c in leaf.constraints if c.name == "uq_log_leaf_family_entry_id"]
    leaf.constraints.discard(unique)
    Index("ix_log_leaf_family_entry_id", leaf.c.family, leaf.c.entry_id)


APPEND_ONLY = ("log_leaf", "log_node", "log_checkpoint", "log_verifier_key", "log_retirement")
