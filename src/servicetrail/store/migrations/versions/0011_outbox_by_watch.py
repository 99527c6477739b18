"""The webhook outbox by watch: `(watch_id, next_attempt_at)`, so that a lease takes each
receiver's due deliveries by an index probe of its own watches, however many deliveries of
other, busy receivers are due before them (issue 13: a lease walked the whole due backlog,
0.23 s at 370k due, when every due watch's receiver was busy).

An index on the outbox only, which is empty or small (pending deliveries): cheap on any store.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_index(
        "ix_webhook_outbox_watch_id_next_attempt_at",
        "webhook_outbox",
        ["watch_id", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_watch_id_next_attempt_at", table_name="webhook_outbox")
