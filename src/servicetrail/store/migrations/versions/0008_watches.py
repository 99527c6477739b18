"""Watches, their events, the matcher's cursor and the webhook outbox (SPEC section 6).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0008"
down_revision = "0007"

READER = "servicetrail_reader"
WatchId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
RecordId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "watch",
        sa.Column("id", WatchId, primary_key=True, autoincrement=True),
        sa.Column(
            "party_id",
            sa.String(32),
            sa.ForeignKey("party.party_id", name="fk_watch_party_id_party"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("devices", sa.Text, nullable=False),
        sa.Column("srvs", sa.Text, nullable=False),
        sa.Column("kinds", sa.Text, nullable=False),
        sa.Column("senders", sa.String(8), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("after_record_id", RecordId, nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("read_event_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("webhook_url", sa.String(2000), nullable=True),
        sa.Column("webhook_secret", sa.String(100), nullable=True),
        sa.Column("webhook_disabled_at", UtcDateTime, nullable=True),
        sa.Column("webhook_disabled_reason", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_watch"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_watch_party_id", "watch", ["party_id"])
    op.create_table(
        "watch_event",
        sa.Column(
            "watch_id",
            WatchId,
            sa.ForeignKey("watch.id", ondelete="CASCADE", name="fk_watch_event_watch_id_watch"),
            nullable=False,
        ),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("record_id", RecordId, nullable=False),
        sa.Column("record_logged_at", UtcDateTime, nullable=False),
        sa.Column("record_device_id", sa.String(23), nullable=False),
        sa.Column("matched_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("watch_id", "event_id", name="pk_watch_event"),
        sa.UniqueConstraint("watch_id", "record_id", name="uq_watch_event_watch_id_record_id"),
    )
    op.create_index("ix_watch_event_record_id", "watch_event", ["record_id"])
    op.create_table(
        "watch_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("record_id", RecordId, nullable=False),
        sa.Column("seen_id", RecordId, nullable=False),
        sa.Column("gap_since", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_watch_cursor"),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("watch_id", WatchId, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("watch_id", "event_id", name="pk_webhook_outbox"),
        sa.ForeignKeyConstraint(
            ["watch_id", "event_id"],
            ["watch_event.watch_id", "watch_event.event_id"],
            ondelete="CASCADE",
            name="fk_webhook_outbox_watch_event",
        ),
    )
    op.create_index("ix_webhook_outbox_next_attempt_at", "webhook_outbox", ["next_attempt_at"])
    if op.get_bind().dialect.name == "postgresql":
        # the events page is read as the viewer, under row-level security (store.queries)
        op.execute(f"GRANT SELECT ON watch, watch_event TO {READER}")


def downgrade() -> None:
    op.drop_table("webhook_outbox")
    op.drop_table("watch_cursor")
    op.drop_index("ix_watch_event_record_id", table_name="watch_event")
    op.drop_table("watch_event")
    op.drop_index("ix_watch_party_id", table_name="watch")
    op.drop_table("watch")
