"""Webhooks whose receivers answered 410 and that are not turned off yet, kept in the store.

While a registry change is at work, a 410's webhook cannot be turned off at once (its row lock
could close a cycle with the change's steps: store.outbox_gone.disable_gone). The deliverer that
saw the 410 kept the watch in its memory and leased nothing of it; another worker, or the same
one restarted, knew nothing of it and sent the receiver more (session 35's note). Kept here,
every worker leases nothing of such a watch, and whichever round comes first after the change
turns it off.

No foreign key to the watch: its check would lock the watch's row, the wait this avoids. A
watch deleted meanwhile leaves a row that the next turning off forgets.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0021"
down_revision = "0020"

WatchId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_gone",
        sa.Column("watch_id", WatchId, nullable=False, autoincrement=False),
        sa.Column("reported_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("watch_id", name="pk_webhook_gone"),
    )


def downgrade() -> None:
    op.drop_table("webhook_gone")
