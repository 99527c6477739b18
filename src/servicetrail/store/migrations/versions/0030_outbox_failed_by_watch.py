"""The webhook outbox's failed deliveries by watch: `(watch_id, next_attempt_at)` of the rows
with `attempts > 0` alone, so that the Watches page's look for the watches with a failed
delivery, and its windows of them, read a watch's failures and never its healthy backlog.
By 0011's index, the look walked every healthy delivery of each hooked watch before it
found none failed (50 watches of 4,000 due: 108-483 ms), or, analysed while one watch held
the outbox, read the table by a Seq Scan up to its first failed row (10-38 ms; audit 62g,
63c).

Partial on both engines (SQLite has partial indexes too); the statements name its predicate
as written here, the 0 a literal: a bound parameter is no proof that a row is in the index.
An index on the outbox only, which is empty or small (pending deliveries): cheap on any store.

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"


def upgrade() -> None:
    failed = sa.text("attempts > 0")
    op.create_index(
        "ix_webhook_outbox_failed",
        "webhook_outbox",
        ["watch_id", "next_attempt_at"],
        postgresql_where=failed,
        sqlite_where=failed,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_failed", table_name="webhook_outbox")
