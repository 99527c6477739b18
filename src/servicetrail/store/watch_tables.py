"""The tables of watches (SPEC section 6), in SQLAlchemy Core; migration 0008 builds them.

Registered on `schema.metadata` (schema.py imports this module), so `db check` compares them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)

from .schema import RecordId, UtcDateTime, metadata

WatchId = BigInteger().with_variant(Integer, "sqlite")

# A Party's standing filter. Lists are JSON text: they are read whole, never searched.
# `after_record_id`: the newest record when the watch was made; only later ones match.
# `last_event_id`: the event ids handed out so far (the matcher is the only writer).
watch = Table(
    "watch",
    metadata,
    Column("id", WatchId, primary_key=True, autoincrement=True),
    Column("party_id", String(32), ForeignKey("party.party_id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("devices", Text, nullable=False),
    Column("srvs", Text, nullable=False),
    Column("kinds", Text, nullable=False),
    Column("senders", String(8), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("after_record_id", RecordId, nullable=False),
    Column("last_event_id", BigInteger, nullable=False, server_default="0"),
    # the newest event the Party has seen on the Watches page: later ones count as unread
    Column("read_event_id", BigInteger, nullable=False, server_default="0"),
    Column("webhook_url", String(2000), nullable=True),
    # the signing key: the receiver's copy was shown once; this one signs every delivery
    Column("webhook_secret", String(100), nullable=True),
    Column("webhook_disabled_at", UtcDateTime, nullable=True),
    Column("webhook_disabled_reason", String(200), nullable=True),
    Index("ix_watch_party_id", "party_id"),
    # ids never come back after a delete: the matcher's cache of watches is keyed on them
    sqlite_autoincrement=True,
)


def watch_event_table(on: MetaData, keyed_to_watch: bool) -> Table:
    """One record matched by one watch. The record's time and Device ride along so that
    reading it back is a primary-key probe of the (partitioned) trail. `keyed_to_watch`: with
    a foreign key to its watch, as on SQLite (0020 dropped it on PostgreSQL, where the
    matcher's row locks keep events to live watches)."""
    watch_key = [ForeignKey("watch.id", ondelete="CASCADE")] if keyed_to_watch else []
    return Table(
        "watch_event",
        on,
        Column("watch_id", WatchId, *watch_key, nullable=False),
        Column("event_id", BigInteger, nullable=False),
        Column("record_id", RecordId, nullable=False),
        Column("record_logged_at", UtcDateTime, nullable=False),
        Column("record_device_id", String(23), nullable=False),
        Column("matched_at", UtcDateTime, nullable=False),
        PrimaryKeyConstraint("watch_id", "event_id"),
        # a record is one event of a watch, however often the matcher reads it (after a crash)
        UniqueConstraint("watch_id", "record_id", name="uq_watch_event_watch_id_record_id"),
        Index("ix_watch_event_record_id", "record_id"),
    )


watch_event = watch_event_table(metadata, keyed_to_watch=True)

# How far the matcher has read the trail, by record id (one row, name "watches").
# `record_id`: every record up to it is matched. `seen_id`: the newest record read, past a
# gap in the ids (a loader's transaction still open on PostgreSQL); `gap_since`: when the
# gap at `record_id + 1` was first seen, after which it is taken as never to be filled.
watch_cursor = Table(
    "watch_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("record_id", RecordId, nullable=False),
    Column("seen_id", RecordId, nullable=False),
    Column("gap_since", UtcDateTime, nullable=True),
)
MATCHER_CURSOR = "watches"  # its one row's name

# The webhook deliveries still to make: a row leaves when its event is delivered (2xx), the
# webhook is disabled (410) or the record is no longer visible to the watch's Party.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("watch_id", WatchId, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("attempts", SmallInteger, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", String(200), nullable=True),
    PrimaryKeyConstraint("watch_id", "event_id"),
    ForeignKeyConstraint(
        ["watch_id", "event_id"],
        ["watch_event.watch_id", "watch_event.event_id"],
        ondelete="CASCADE",
        name="fk_webhook_outbox_watch_event",
    ),
    Index("ix_webhook_outbox_next_attempt_at", "next_attempt_at"),
    # 0011: a lease takes each watch's due rows by this, never walking other watches' rows
    Index("ix_webhook_outbox_watch_id_next_attempt_at", "watch_id", "next_attempt_at"),
)

# 0030: the failed deliveries alone by watch, for the Watches page (watches._failing), read
# by statements that name its predicate. A delivery that failed and waits for a retry, its 0
# written in the statement: SQLite plans a statement before its parameters are bound, as
# PostgreSQL does a generic plan, and a bound 0 proves no row is in a partial index.
FAILED_DELIVERY = webhook_outbox.c.attempts > literal_column("0")
Index(
    "ix_webhook_outbox_failed",
    webhook_outbox.c.watch_id,
    webhook_outbox.c.next_attempt_at,
    sqlite_where=FAILED_DELIVERY,
)


def outbox_on_postgresql(meta: MetaData) -> None:
    """The failed ones' predicate on PostgreSQL's copy of the outbox (schema.metadata_for):
    named on the table every statement names, it had SQLAlchemy import its PostgreSQL dialect
    on SQLite too (tests/test_start.py; schema._partial)."""
    [failed] = [
        ix for ix in meta.tables["webhook_outbox"].indexes if ix.name == "ix_webhook_outbox_failed"
    ]
    failed.dialect_kwargs["postgresql_where"] = FAILED_DELIVERY


# Watches whose receivers answered 410 and whose webhooks are not turned off yet (0021): a
# registry change at work kept the turning off from taking their rows. No worker leases
# anything of theirs meanwhile; the first round after the change turns them off and forgets
# them. No foreign key: its check would lock the watch's row, the very wait put off here.
webhook_gone = Table(
    "webhook_gone",
    metadata,
    Column("watch_id", WatchId, primary_key=True, autoincrement=False),
    Column("reported_at", UtcDateTime, nullable=False),
)

__all__ = [
    "FAILED_DELIVERY",
    "MATCHER_CURSOR",
    "outbox_on_postgresql",
    "watch",
    "watch_cursor",
    "watch_event",
    "webhook_gone",
    "webhook_outbox",
]
