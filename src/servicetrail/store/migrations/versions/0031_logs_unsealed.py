"""The logs with leaves past their newest checkpoint, listed (log_unsealed), so that a seal
looks at those and the queued ones alone. It looked at every log: on PostgreSQL a fresh
connection (every CLI command's; each read seals its access-log entry) opened every month's
partitions of the leaves for it, a cost that grew with the store's age (63j's finding).

add_leaves lists the logs it appends to, in its transaction, under the family's lock; the
seal takes that lock, reads the list, and removes each log it looks at. Filled here from the
leaves and checkpoints stored: every log whose leaves a checkpoint does not cover yet (on a
store a seal has just reached, none), by the walk the seal made until now. A server or
ingest of before 0031 left running on the store appends leaves unlisted: its own seal signs
them, but no seal of today sees them until a batch of today appends to the same log (`db
upgrade` says to restart them).

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.merkle_log import all_log_sizes

revision = "0031"
down_revision = "0030"


def upgrade() -> None:
    listed = op.create_table(
        "log_unsealed",
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.PrimaryKeyConstraint("family", "month", name="pk_log_unsealed"),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # no leaf appended between the look and the commit (SQLite: the upgrade holds its
        # write lock): a writer of before 0031 lists nothing. It waits for writes under way,
        # UPGRADE_LOCK_WAIT at most (store.migrate)
        op.execute("LOCK TABLE log_leaf IN SHARE MODE")
    sizes = all_log_sizes(bind)
    rows = [
        {"family": family, "month": month}
        for (family, month), (size, newest) in sorted(sizes.items())
        if newest is None or newest < size
    ]
    if rows:
        op.bulk_insert(listed, rows)


def downgrade() -> None:
    op.drop_table("log_unsealed")
